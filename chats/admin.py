"""The Django admin for chats. Creating and deleting go through the mediator like any API write, so the
admin's changes reach the outbox too; nothing here saves a Chat row directly."""

from django import forms
from django.contrib import admin
from django.db.models import Count

from chats import models
from chats.adapters import participant_of
from chats.api.login_forms import LimitedAdminAuthenticationForm
from chats.bootstrap import mediator
from messaging_domain.commands import CreateChatCommand, DeleteChatCommand
from messaging_domain.exceptions import InvalidTitle
from messaging_domain.values import Title


class ChatCreationForm(forms.ModelForm):
    class Meta:
        model = models.Chat
        fields = ["title"]

    def clean_title(self) -> str:
        # Tell the staff member about a bad or taken title on the form, not as a server error.
        try:
            title = Title(self.cleaned_data["title"])
        except InvalidTitle as error:
            raise forms.ValidationError(error.message) from None
        if models.Chat.objects.filter(title_key=title.key).exists():
            raise forms.ValidationError(f"A chat titled {title.value!r} already exists.")
        return title.value

    def _post_clean(self) -> None:
        """Skip model validation: the command decides, and title_key is not on the form."""


admin.site.login_form = LimitedAdminAuthenticationForm


class MessageInline(admin.TabularInline):
    model = models.Message
    fields = ["seq", "author", "text", "created_at"]
    readonly_fields = fields
    ordering = ["-seq"]
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(models.Chat)
class ChatAdmin(admin.ModelAdmin):
    list_display = ["title", "owner", "message_count", "created_at"]
    list_select_related = ["owner"]
    search_fields = ["title", "owner__username"]
    ordering = ["-created_at"]
    readonly_fields = ["id", "title", "owner", "created_at", "last_seq"]
    inlines = [MessageInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(message_count=Count("messages"))

    @admin.display(description="messages", ordering="message_count")
    def message_count(self, chat: models.Chat) -> int:
        return chat.message_count

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ChatCreationForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def get_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ["title"]

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # chats are not edited; titles are fixed once created

    def save_model(self, request, obj, form, change) -> None:
        chat = mediator.handle_command(
            CreateChatCommand(title=form.cleaned_data["title"], owner=participant_of(request.user))
        )
        # The admin goes on to log, name and link the object it believes it saved: make it the real row.
        # (The form never filled it in: _post_clean is skipped, so its title is still empty.)
        obj.pk = chat.id
        obj.title = chat.title.value
        obj._state.adding = False

    def response_delete(self, request, obj_display, obj_id):
        response = super().response_delete(request, obj_display, obj_id)
        # Django returns to the chat list only those who may change chats, and nobody may here (titles are
        # fixed): staff who may view the list go back to it, as after adding, instead of to /admin/.
        if response.status_code == 302 and self.has_view_permission(request):
            return self._response_post_save(request, None)
        return response

    def delete_model(self, request, obj) -> None:
        mediator.handle_command(DeleteChatCommand(chat_id=obj.pk, requested_by=participant_of(request.user)))

    def delete_queryset(self, request, queryset) -> None:
        for chat_id in queryset.values_list("pk", flat=True):
            mediator.handle_command(DeleteChatCommand(chat_id=chat_id, requested_by=participant_of(request.user)))

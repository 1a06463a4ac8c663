"""The Django admin for chats. Every write goes through the mediator like any API write, so the admin's
changes reach the outbox too: nothing here saves a Chat or Membership row directly.

Staff act here as moderators (`as_moderator=True`): they manage and delete every chat, private chats they
are not members of included. A command the domain refuses (removing the owner, adding an inactive user)
changes nothing: the admin's transaction is rolled back and the page comes back with the error as a message.
"""

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.forms.models import BaseInlineFormSet
from django.http import HttpResponseRedirect

from chats import models
from chats.adapters import participant_of
from chats.api.login_forms import LimitedAdminAuthenticationForm
from chats.bootstrap import mediator
from messaging_domain.commands import (
    AddMemberCommand,
    CreateChatCommand,
    DeleteChatCommand,
    RemoveMemberCommand,
)
from messaging_domain.exceptions import DomainError, InvalidTitle
from messaging_domain.values import Title

# The change page posts every row it shows (two hidden fields each), and Django refuses a form of more than
# DATA_UPLOAD_MAX_NUMBER_FIELDS (1,000) fields: so the inlines show at most this many rows.
MESSAGES_SHOWN = 100
MEMBERS_SHOWN = 300


class ChatCreationForm(forms.ModelForm):
    class Meta:
        model = models.Chat
        fields = ["title", "visibility"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["visibility"].required = False  # left out: public, as through the API

    def clean_title(self) -> str:
        # Tell the staff member about a bad or taken title on the form, not as a server error.
        try:
            title = Title(self.cleaned_data["title"])
        except InvalidTitle as error:
            raise forms.ValidationError(error.message) from None
        if models.Chat.objects.filter(title_key=title.key).exists():
            raise forms.ValidationError(f"A chat titled {title.value!r} already exists.")
        return title.value

    def clean_visibility(self) -> str:
        return self.cleaned_data["visibility"] or "public"

    def _post_clean(self) -> None:
        """Skip model validation: the command decides, and title_key is not on the form."""


admin.site.login_form = LimitedAdminAuthenticationForm


class Refused(Exception):
    """A command the domain refused during the admin's save: `ChatAdmin.changeform_view` rolls back and says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FirstRowsFormSet(BaseInlineFormSet):
    """An inline formset of at most `shown` rows (in the inline's ordering)."""

    shown: int

    def get_queryset(self):
        if not hasattr(self, "_first_rows"):
            self._first_rows = super().get_queryset()[: self.shown]
        return self._first_rows


class MessageInline(admin.TabularInline):
    model = models.Message
    formset = type("NewestMessagesFormSet", (FirstRowsFormSet,), {"shown": MESSAGES_SHOWN})
    verbose_name_plural = f"messages (the newest {MESSAGES_SHOWN})"
    fields = ["seq", "author", "text", "created_at", "edited_at", "deleted", "version"]
    readonly_fields = fields
    ordering = ["-seq"]
    extra = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("author")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # messages are never edited

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # nor deleted one by one: they go with their chat


class MembershipForm(forms.ModelForm):
    """A new member's row: the user to add. Existing rows are read-only (they only have the delete box)."""

    class Meta:
        model = models.Membership
        fields = ["user"]
        labels = {"user": "Username"}

    def _post_clean(self) -> None:
        """Skip model validation: the command decides (adding a member twice is no error, and does nothing)."""


class MembershipFormSet(FirstRowsFormSet):
    shown = MEMBERS_SHOWN

    def validate_unique(self) -> None:
        """The command decides: adding someone who is already a member does nothing."""


class MembershipInline(admin.TabularInline):
    """The chat's members. Adding and removing are AddMemberCommand and RemoveMemberCommand, in `save_formset`."""

    model = models.Membership
    form = MembershipForm
    formset = MembershipFormSet
    verbose_name = "member"
    verbose_name_plural = f"members (the first {MEMBERS_SHOWN} to join)"
    fields = ["user", "role", "joined_at", "last_read_seq"]
    readonly_fields = ["role", "joined_at", "last_read_seq"]
    raw_id_fields = ["user"]
    ordering = ["joined_at", "id"]  # the owner first, as GET /members/
    extra = 0
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a member's row is never edited: staff add members and remove them


@admin.register(models.Chat)
class ChatAdmin(admin.ModelAdmin):
    list_display = ["title", "owner", "visibility", "member_count", "message_count", "created_at"]
    list_select_related = ["owner"]
    list_filter = ["visibility"]
    radio_fields = {"visibility": admin.HORIZONTAL}
    search_fields = ["title", "owner__username"]
    ordering = ["-created_at"]
    readonly_fields = ["id", "title", "owner", "visibility", "member_count", "created_at", "last_seq"]
    inlines = [MembershipInline, MessageInline]

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
        # Once created, a chat's own fields never change here: the change page changes its members only.
        return self.readonly_fields if obj is not None else []

    def get_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ["title", "visibility"]

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            # The admin saves a form in one transaction: leaving it with `Refused` rolls back every command
            # the form had already run, so a refused form changes nothing.
            return super().changeform_view(request, object_id, form_url, extra_context)
        except Refused as refused:
            self.message_user(request, f"{refused.message} Nothing was changed.", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def _handle(self, command, what: str):
        try:
            return mediator.handle_command(command)
        except DomainError as error:
            raise Refused(f"{what}: {error.message}") from error

    def save_model(self, request, obj, form, change) -> None:
        if change:
            return  # the chat's fields are read-only; its members are saved in save_formset
        chat = self._handle(
            CreateChatCommand(
                title=form.cleaned_data["title"],
                owner=participant_of(request.user),
                visibility=form.cleaned_data["visibility"],
            ),
            "The chat could not be created",
        )
        # The admin goes on to log, name and link the object it believes it saved: make it the real row.
        # (The form never filled it in: _post_clean is skipped, so its title is still empty.)
        obj.pk = chat.id
        obj.title = chat.title.value
        obj.visibility = chat.visibility.value
        obj._state.adding = False

    def save_related(self, request, form, formsets, change) -> None:
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def save_formset(self, request, form, formset, change) -> None:
        # What the change message (and the admin log) lists; nothing is saved through the formset itself.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        if formset.model is models.Membership:
            self._save_members(request, form.instance, formset)

    def _save_members(self, request, chat: models.Chat, formset) -> None:
        staff = participant_of(request.user)
        for row in formset.deleted_forms:
            membership = row.instance
            if membership.pk is None:
                continue  # a new row, deleted before it was saved
            username = membership.user.get_username()
            self._handle(
                RemoveMemberCommand(chat_id=chat.pk, username=username, requested_by=staff, as_moderator=True),
                f"{username} could not be removed",
            )
            formset.deleted_objects.append(membership)
        for row in formset.extra_forms:
            user = row.cleaned_data.get("user") if row.has_changed() else None
            if user is None or row.cleaned_data.get("DELETE"):
                continue
            username = user.get_username()
            added = self._handle(
                AddMemberCommand(chat_id=chat.pk, username=username, requested_by=staff, as_moderator=True),
                f"{username} could not be added",
            )
            if added.changed:
                formset.new_objects.append(models.Membership.objects.get(chat_id=chat.pk, user_id=user.pk))

    def response_delete(self, request, obj_display, obj_id):
        response = super().response_delete(request, obj_display, obj_id)
        # Django returns to the chat list only those who may change chats: staff who may only view the list
        # go back to it too, as after adding, instead of to /admin/.
        if response.status_code == 302 and self.has_view_permission(request):
            return self._response_post_save(request, None)
        return response

    def delete_model(self, request, obj) -> None:
        mediator.handle_command(
            DeleteChatCommand(chat_id=obj.pk, requested_by=participant_of(request.user), as_moderator=True)
        )

    def delete_queryset(self, request, queryset) -> None:
        for chat_id in queryset.values_list("pk", flat=True):
            mediator.handle_command(
                DeleteChatCommand(chat_id=chat_id, requested_by=participant_of(request.user), as_moderator=True)
            )

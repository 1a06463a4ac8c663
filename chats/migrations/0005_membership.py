"""Membership (issue 11): chats gain a visibility and a member count, and every existing chat its members.

Existing chats stay public. Their owners become members with the role `owner`, and everyone who wrote in
one becomes a member (posting in a public chat makes the author a member from now on), with the chat read
up to its last message, so nobody starts with a backlog of unread history.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def add_existing_members(apps, schema_editor):
    Chat = apps.get_model("chats", "Chat")
    Membership = apps.get_model("chats", "Membership")
    Message = apps.get_model("chats", "Message")
    for chat in Chat.objects.all().iterator():
        authors = (
            Message.objects.filter(chat_id=chat.id).exclude(author_id=chat.owner_id)
            .values_list("author_id", flat=True).distinct()
        )
        rows = [Membership(chat_id=chat.id, user_id=chat.owner_id, role="owner", joined_at=chat.created_at,
                           last_read_seq=chat.last_seq)]
        rows += [Membership(chat_id=chat.id, user_id=author_id, role="member", joined_at=chat.created_at,
                            last_read_seq=chat.last_seq) for author_id in authors]
        Membership.objects.bulk_create(rows)
        Chat.objects.filter(pk=chat.id).update(member_count=len(rows))


class Migration(migrations.Migration):

    dependencies = [
        ('chats', '0004_username_unique_in_any_case'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='chat',
            name='member_count',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='chat',
            name='visibility',
            field=models.CharField(choices=[('public', 'public'), ('private', 'private')], default='public', max_length=8),
        ),
        migrations.CreateModel(
            name='Membership',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('role', models.CharField(choices=[('owner', 'owner'), ('member', 'member')], default='member', max_length=8)),
                ('joined_at', models.DateTimeField()),
                ('last_read_seq', models.PositiveIntegerField(default=0)),
                ('chat', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to='chats.chat')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'indexes': [models.Index(fields=['user', 'chat'], name='membership_by_user')],
                'constraints': [models.UniqueConstraint(fields=('chat', 'user'), name='membership_unique_per_chat')],
            },
        ),
        migrations.RunPython(add_existing_members, migrations.RunPython.noop),
    ]

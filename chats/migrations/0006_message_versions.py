"""Issue 12: a chat version raised by every change of content; messages that are edited and deleted
(tombstones); the latest membership change per user for replays; Idempotency-Keys of edits.

Existing history gets versions as if each message had been one change: a message's version (and creation
version) is its seq, a chat's version its last_seq. Existing memberships predate versions (0).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def number_existing_history(apps, schema_editor):
    Chat = apps.get_model("chats", "Chat")
    Message = apps.get_model("chats", "Message")
    Message.objects.update(version=models.F("seq"), created_version=models.F("seq"))
    Chat.objects.update(version=models.F("last_seq"))


class Migration(migrations.Migration):

    dependencies = [
        ('chats', '0005_membership'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='MemberChange',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('user_id', models.BigIntegerField()),
                ('username', models.CharField(max_length=150)),
                ('role', models.CharField(max_length=8)),
                ('joined_at', models.DateTimeField()),
                ('last_read_seq', models.PositiveIntegerField(default=0)),
                ('version', models.PositiveIntegerField()),
                ('left', models.BooleanField(default=False)),
            ],
        ),
        migrations.CreateModel(
            name='MessageEditKey',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('key', models.CharField(max_length=255)),
                ('chat_id', models.UUIDField()),
                ('seq', models.PositiveIntegerField()),
                ('text', models.TextField()),
            ],
        ),
        migrations.AddField(
            model_name='chat',
            name='version',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='membership',
            name='version',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='message',
            name='created_version',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='message',
            name='deleted',
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name='message',
            name='edited_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='message',
            name='version',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddIndex(
            model_name='message',
            index=models.Index(fields=['chat', 'version'], name='message_by_version'),
        ),
        migrations.AddField(
            model_name='memberchange',
            name='chat',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='member_changes', to='chats.chat'),
        ),
        migrations.AddField(
            model_name='messageeditkey',
            name='editor',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddIndex(
            model_name='memberchange',
            index=models.Index(fields=['chat', 'version'], name='member_change_by_version'),
        ),
        migrations.AddConstraint(
            model_name='memberchange',
            constraint=models.UniqueConstraint(fields=('chat', 'user_id'), name='member_change_unique_per_chat'),
        ),
        migrations.AddConstraint(
            model_name='messageeditkey',
            constraint=models.UniqueConstraint(fields=('editor', 'key'), name='edit_key_unique_per_editor'),
        ),
        migrations.RunPython(number_existing_history, migrations.RunPython.noop),
    ]

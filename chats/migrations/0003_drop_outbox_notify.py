"""The relay now wakes on a Redis message that writers publish after commit, on every database.

PostgreSQL's NOTIFY takes a database-wide lock while a notifying transaction commits, so posts' commits
queue behind each other; and one mechanism for every database is simpler than two.
"""

import importlib

from django.db import migrations

notify = importlib.import_module("chats.migrations.0002_outbox_notify")


class Migration(migrations.Migration):
    dependencies = [("chats", "0002_outbox_notify")]
    operations = [migrations.RunPython(notify.on_postgresql(notify.DROP), notify.on_postgresql(notify.CREATE))]

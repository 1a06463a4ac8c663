"""On PostgreSQL, every insert into the outbox NOTIFYs the relay, so it wakes on commit instead of polling.

NOTIFY is transactional: it is delivered when the inserting transaction commits, never for a rollback, and
several in one transaction arrive as one.
"""

from django.db import migrations

CHANNEL = "chat_outbox"

CREATE = f"""
CREATE OR REPLACE FUNCTION chats_outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER chats_outbox_notify AFTER INSERT ON chats_outboxevent
    FOR EACH STATEMENT EXECUTE FUNCTION chats_outbox_notify();
"""

DROP = """
DROP TRIGGER IF EXISTS chats_outbox_notify ON chats_outboxevent;
DROP FUNCTION IF EXISTS chats_outbox_notify();
"""


def on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("chats", "0001_initial")]
    operations = [migrations.RunPython(on_postgresql(CREATE), on_postgresql(DROP))]

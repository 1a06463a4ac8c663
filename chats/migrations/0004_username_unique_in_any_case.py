"""Usernames are unique in any case, in the database: a unique index on lower(username) of auth_user.

RegisterApi checks for a taken name first, but two registrations of "Ann" and "ann" can both pass that
check before either inserts; the index makes the second insert fail (and RegisterApi answers 400). An
expression index, which SQLite and PostgreSQL both have. Applying it fails if the table already holds two
names that differ only in case: rename one first. (SQLite's lower() folds ASCII letters only.)
"""

from django.db import migrations

INDEX = "auth_user_username_lower_uniq"


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("chats", "0003_drop_outbox_notify"),
    ]
    operations = [
        migrations.RunSQL(
            f"CREATE UNIQUE INDEX {INDEX} ON auth_user (lower(username))",
            f"DROP INDEX {INDEX}",
        )
    ]

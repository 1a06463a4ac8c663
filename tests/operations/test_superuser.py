"""`make superuser`: a staff superuser without prompts, from DJANGO_SUPERUSER_* environment variables."""

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from django.contrib.auth.hashers import check_password

ROOT = Path(__file__).resolve().parents[2]


def make_superuser(tmp_path: Path, **variables: str) -> tuple[subprocess.CompletedProcess, Path]:
    database = tmp_path / "db.sqlite3"
    env = {name: value for name, value in os.environ.items() if not name.startswith("DJANGO_SUPERUSER_")}
    env.update(DATABASE_URL=f"sqlite:///{database}", **variables)
    # -o: take the installed .venv as it is (no pip run from a test).
    result = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "superuser"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    return result, database


def superusers(database: Path) -> list[tuple[str, str, str]]:
    if not database.exists():
        return []
    with sqlite3.connect(database) as connection:
        return connection.execute(
            "SELECT username, email, password FROM auth_user WHERE is_superuser AND is_staff"
        ).fetchall()


@pytest.mark.parametrize("email", ["admin@example.com", ""])
def test_make_superuser_creates_a_staff_superuser_from_the_environment(tmp_path, email):
    result, database = make_superuser(
        tmp_path, DJANGO_SUPERUSER_USERNAME="admin", DJANGO_SUPERUSER_PASSWORD="a long passphrase 7",
        **({"DJANGO_SUPERUSER_EMAIL": email} if email else {}),
    )

    assert result.returncode == 0, result.stdout + result.stderr
    ((username, saved_email, password),) = superusers(database)
    assert (username, saved_email) == ("admin", email)
    assert check_password("a long passphrase 7", password)


def test_make_superuser_without_a_password_refuses_instead_of_creating_one_who_cannot_log_in(tmp_path):
    result, database = make_superuser(tmp_path, DJANGO_SUPERUSER_USERNAME="admin")

    assert result.returncode != 0
    assert "DJANGO_SUPERUSER_PASSWORD" in result.stderr
    assert superusers(database) == []

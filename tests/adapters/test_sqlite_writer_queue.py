"""On SQLite (chats/runtime/sqlite/base.py), write transactions queue on a file lock held from BEGIN to COMMIT, and
closed connections wait for the next request instead of being opened again."""

import fcntl
import os
import sqlite3
import threading

import pytest
from django.db import connection, transaction

from chats import models
from chats.runtime.sqlite.base import idle_connections

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="the writer lock is SQLite's; PostgreSQL locks rows"),
]


def writer_lock_is_free() -> bool:
    """Whether another open file could take the lock now (as another thread or process would)."""
    descriptor = os.open(f"{connection.settings_dict['NAME']}.writer-lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)
    return True


def test_a_write_transaction_holds_the_lock_until_it_commits():
    assert writer_lock_is_free()
    with transaction.atomic():
        models.OutboxEvent.objects.create(event_id="00000000-0000-4000-8000-000000000001",
                                          event_type="chat.created", chat_id="00000000-0000-4000-8000-000000000002",
                                          envelope={})
        assert not writer_lock_is_free()
    assert writer_lock_is_free()


def test_a_failed_transaction_releases_the_lock_on_rollback():
    with pytest.raises(RuntimeError), transaction.atomic():
        assert not writer_lock_is_free()
        raise RuntimeError("the handler failed")
    assert writer_lock_is_free()


def test_a_second_writer_waits_for_the_first_and_then_writes():
    first_in, second_done = threading.Event(), threading.Event()
    order = []

    def second() -> None:
        first_in.wait()
        with transaction.atomic():  # blocks here until the first commits
            order.append("second")
        connection.close()
        second_done.set()

    thread = threading.Thread(target=second)
    thread.start()
    with transaction.atomic():
        first_in.set()
        assert not second_done.wait(0.5)  # still queued behind this transaction
        order.append("first")
    thread.join(timeout=30)
    assert order == ["first", "second"]


def sqlite_handle():
    """The sqlite3 connection under Django's, opened if need be."""
    connection.ensure_connection()
    return connection.connection


def test_a_closed_connection_is_kept_for_the_next_request_even_in_another_thread():
    """Under ASGI each request's view runs in a thread of its own: without this, every request opened SQLite anew."""
    first = sqlite_handle()
    connection.close()
    taken = []

    def next_request() -> None:
        taken.append(sqlite_handle())
        assert models.OutboxEvent.objects.count() == 0  # and it works
        connection.close()

    thread = threading.Thread(target=next_request)
    thread.start()
    thread.join()
    assert taken == [first]


def test_a_connection_closed_inside_a_transaction_is_not_kept():
    with transaction.atomic():
        inside = sqlite_handle()
        connection.close()  # Django marks the block to roll back; this connection must not serve anyone else
    assert sqlite_handle() is not inside
    assert writer_lock_is_free()


def test_a_database_created_again_at_the_same_path_gets_connections_of_its_own(tmp_path):
    path = str(tmp_path / "chat.sqlite3")
    sqlite3.connect(path).close()
    old = sqlite3.connect(path)
    assert idle_connections.give_back(path, old)
    os.remove(path)
    sqlite3.connect(path).close()  # a new file, a new inode

    assert idle_connections.take(path) is None
    with pytest.raises(sqlite3.ProgrammingError):
        old.execute("SELECT 1")  # the old file's idle connection was closed, not handed out

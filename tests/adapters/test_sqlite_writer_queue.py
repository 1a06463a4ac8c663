"""On SQLite, write transactions queue on a file lock (chats/runtime/sqlite/base.py) held from BEGIN to COMMIT."""

import fcntl
import os
import threading

import pytest
from django.db import connection, transaction

from chats import models

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

"""Django's SQLite backend, with write transactions queued on a file lock instead of SQLite's busy handler.

SQLite takes one writer at a time. The others wait in its busy handler, which sleeps in growing steps
(1, 2, 5, 10 ... 100 ms) between tries, so under contention a writer sleeps on long after the lock is free:
with two web processes and the relay writing, `make bench` measured seconds of p99 on ingest. Here every
write transaction (they are all BEGIN IMMEDIATE, see settings) first takes an exclusive flock on
`<database file>.writer-lock`, across threads and processes; the kernel hands it to the next waiter the
moment it is released. Statements outside a transaction still rely on the busy handler.

Connections are kept for the next request. Under ASGI every request runs its view in a thread of its own, and
Django's connections belong to threads, so each request opened a new SQLite connection (connect, thirty-odd
SQL functions registered, the PRAGMAs) and closed it: about a seventh of a web process's time at 50 posts/s.
Here a closed connection with no transaction open goes back to a per-process stack of idle ones, and the next
request takes it; Django's thread-sharing checks still apply to whoever holds it.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading

from django.db.backends.sqlite3 import base

IDLE_CONNECTIONS = 32  # per process and database file; more than that are closed when given back


class IdleConnections:
    """Open connections waiting for the next request, per database file. A file is known by its inode too: a
    database deleted and created again at the same path (tests do) must not get the old file's connections."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[sqlite3.Connection]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(path: str) -> tuple[str, int] | None:
        try:
            return path, os.stat(path).st_ino
        except OSError:
            return None

    def take(self, path: str) -> sqlite3.Connection | None:
        key = self._key(path)
        with self._lock:
            stale = [k for k in self._idle if k[0] == path and k != key]
            for old in stale:
                for connection in self._idle.pop(old):
                    connection.close()
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def give_back(self, path: str, connection: sqlite3.Connection) -> bool:
        """Keep `connection` for the next taker; False if it was not kept (the caller closes it)."""
        key = self._key(path)
        if key is None or connection.in_transaction:
            return False
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) >= IDLE_CONNECTIONS:
                return False
            idle.append(connection)
            return True


idle_connections = IdleConnections()


class DatabaseWrapper(base.DatabaseWrapper):
    _writer_lock: int | None = None  # the lock file's descriptor while this connection holds the lock

    def get_new_connection(self, conn_params):
        if not self.is_in_memory_db():
            connection = idle_connections.take(str(self.settings_dict["NAME"]))
            if connection is not None:
                return connection
        return super().get_new_connection(conn_params)

    def _start_transaction_under_autocommit(self):
        self._take_writer_lock()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_writer_lock()
            raise

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._release_writer_lock()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._release_writer_lock()

    def _close(self):
        try:
            if (
                self.connection is not None
                and not self.in_atomic_block
                and not self.is_in_memory_db()
                and idle_connections.give_back(str(self.settings_dict["NAME"]), self.connection)
            ):
                return None
            return super()._close()
        finally:
            self._release_writer_lock()

    def _take_writer_lock(self) -> None:
        if self._writer_lock is not None or self.is_in_memory_db():
            return
        descriptor = os.open(f"{self.settings_dict['NAME']}.writer-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)  # one open file per connection: threads queue too
        except BaseException:
            os.close(descriptor)
            raise
        self._writer_lock = descriptor

    def _release_writer_lock(self) -> None:
        if self._writer_lock is not None:
            descriptor, self._writer_lock = self._writer_lock, None
            os.close(descriptor)  # closing the only descriptor of the open file releases its flock

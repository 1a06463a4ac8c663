"""Concurrent writers on the real database: the row lock and the unique constraint hold under contention."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from chats import models
from chats.adapters import participant_of
from chats.bootstrap import mediator
from messaging_domain.commands import CreateChatCommand, CreateMessageCommand
from messaging_domain.exceptions import ChatTitleTaken

pytestmark = pytest.mark.django_db(transaction=True)

WRITERS = 8


def run_at_once(calls):
    """Run the calls in threads released together; return each call's result or exception."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        try:
            barrier.wait()
            return call()
        except Exception as error:  # collected and asserted on by the test
            return error
        finally:
            connection.close()  # each thread has its own connection; don't leak it past the test

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def test_concurrent_creates_of_one_title_let_exactly_one_win(make_user):
    owners = [participant_of(make_user(f"user{n}")) for n in range(WRITERS)]
    titles = ["Lunch", "lunch", "LUNCH", " Lunch ", "lUnCh", "Lunch", "LUNCH ", "lunch"]

    results = run_at_once(
        [lambda o=o, t=t: mediator.handle_command(CreateChatCommand(title=t, owner=o)) for o, t in zip(owners, titles)]
    )

    failures = [r for r in results if isinstance(r, Exception)]
    assert len(results) - len(failures) == 1
    assert all(isinstance(f, ChatTitleTaken) for f in failures), failures
    assert models.Chat.objects.count() == 1
    assert list(models.OutboxEvent.objects.values_list("event_type", flat=True)) == ["chat.created"]


def test_concurrent_posts_to_one_chat_get_every_seq_once_in_commit_order(make_user):
    authors = [participant_of(make_user(f"user{n}")) for n in range(WRITERS)]
    chat = mediator.handle_command(CreateChatCommand(title="Busy", owner=authors[0]))
    per_writer = 10

    def post_many(author):
        return [
            mediator.handle_command(CreateMessageCommand(chat_id=chat.id, text=f"{author.username} {n}", author=author))
            for n in range(per_writer)
        ]

    results = run_at_once([lambda a=a: post_many(a) for a in authors])

    assert not [r for r in results if isinstance(r, Exception)], results
    total = WRITERS * per_writer
    seqs = sorted(models.Message.objects.filter(chat_id=chat.id).values_list("seq", flat=True))
    assert seqs == list(range(1, total + 1))
    assert models.Chat.objects.get(pk=chat.id).last_seq == total
    # The outbox, read in id (commit) order, carries the seqs in order: what the relay will send.
    outbox_seqs = [
        envelope["payload"]["seq"]
        for envelope in models.OutboxEvent.objects.filter(event_type="message.created")
        .order_by("id")
        .values_list("envelope", flat=True)
    ]
    assert outbox_seqs == list(range(1, total + 1))
    # Each writer's own messages kept the order the writer posted them in.
    for author in authors:
        texts = models.Message.objects.filter(author_id=author.id).order_by("seq").values_list("text", flat=True)
        assert list(texts) == [f"{author.username} {n}" for n in range(per_writer)]

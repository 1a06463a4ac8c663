"""The Django unit of work on the real database: rows and outbox rows commit together or not at all."""

import uuid

import pytest
from django.db import transaction

from chats import models
from chats.adapters import DjangoUnitOfWork, participant_of
from chats.bootstrap import mediator
from messaging_domain.commands import (
    CreateChatCommand,
    CreateMessageCommand,
    DeleteChatCommand,
)
from messaging_domain.entities import Chat
from messaging_domain.exceptions import ChatNotFound, ChatTitleTaken
from messaging_domain.values import Title

pytestmark = pytest.mark.django_db


def test_every_command_writes_one_outbox_row_per_event_with_the_envelope(ann, outbox):
    owner = participant_of(ann)
    chat = mediator.handle_command(CreateChatCommand(title="Lunch", owner=owner))
    posted = mediator.handle_command(CreateMessageCommand(chat_id=chat.id, text="hi", author=owner))
    mediator.handle_command(DeleteChatCommand(chat_id=chat.id, requested_by=owner))

    envelopes = outbox()
    assert [e["event_type"] for e in envelopes] == ["chat.created", "message.created", "chat.deleted"]
    assert {e["chat_id"] for e in envelopes} == {str(chat.id)}
    assert len({e["event_id"] for e in envelopes}) == 3
    assert envelopes[1]["payload"] == {
        "id": str(posted.message.id),
        "chat_id": str(chat.id),
        "seq": 1,
        "text": "hi",
        "author": "ann",
        "created_at": posted.message.created_at.isoformat().replace("+00:00", "Z"),
        "edited_at": None,
        "deleted": False,
        "version": 1,
    }
    assert [e["version"] for e in envelopes] == [0, 1, 1]  # chat.deleted carries the chat's last version
    assert envelopes[2]["payload"]["last_seq"] == 1
    assert all(e["occurred_at"].endswith("Z") for e in envelopes)
    rows = models.OutboxEvent.objects.order_by("id")
    assert [str(row.event_id) for row in rows] == [e["event_id"] for e in envelopes]
    assert all(row.published_at is None for row in rows)


def test_leaving_the_unit_of_work_without_commit_writes_nothing(ann):
    with DjangoUnitOfWork() as uow:
        uow.chats.add(Chat.create(Title("Lunch"), participant_of(ann)))
    assert models.Chat.objects.count() == 0
    assert models.OutboxEvent.objects.count() == 0


def test_an_error_after_the_rows_were_written_rolls_back_rows_and_events(ann):
    with pytest.raises(RuntimeError), DjangoUnitOfWork() as uow:
        uow.chats.add(Chat.create(Title("Lunch"), participant_of(ann)))
        raise RuntimeError("crash before commit")
    assert models.Chat.objects.count() == 0
    assert models.OutboxEvent.objects.count() == 0


def test_a_failed_command_inside_an_outer_transaction_leaves_it_usable(ann):
    owner = participant_of(ann)
    with transaction.atomic():
        mediator.handle_command(CreateChatCommand(title="Lunch", owner=owner))
        with pytest.raises(ChatTitleTaken):
            mediator.handle_command(CreateChatCommand(title="LUNCH", owner=owner))
        with pytest.raises(ChatNotFound):
            mediator.handle_command(CreateMessageCommand(chat_id=uuid.uuid4(), text="hi", author=owner))
        assert models.Chat.objects.count() == 1
    assert models.OutboxEvent.objects.count() == 1


def test_the_database_refuses_a_title_that_differs_only_in_case(ann):
    # Bypass the domain's check to prove the constraint itself holds (the guard against races).
    owner = participant_of(ann)
    with DjangoUnitOfWork() as uow:
        uow.chats.add(Chat.create(Title("Straße"), owner))
        uow.commit()
    with pytest.raises(ChatTitleTaken), DjangoUnitOfWork() as uow:
        uow.chats.add(Chat.create(Title("STRASSE"), owner))
    assert list(models.Chat.objects.values_list("title", flat=True)) == ["Straße"]
    assert models.OutboxEvent.objects.count() == 1

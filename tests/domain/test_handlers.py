import uuid

import pytest

from messaging_domain.commands import (
    CreateChatCommand,
    CreateMessageCommand,
    DeleteChatCommand,
)
from messaging_domain.events import (
    ChatDeletedEvent,
    NewChatCreatedEvent,
    NewMessageReceivedEvent,
)
from messaging_domain.exceptions import (
    ChatNotFound,
    ChatTitleTaken,
    IdempotencyKeyReused,
    InvalidText,
    InvalidTitle,
    NotAllowed,
)


def test_creating_a_chat_stores_it_and_records_one_event(mediator, database, ann, published):
    chat = mediator.handle_command(CreateChatCommand(title=" Lunch ", owner=ann))

    assert database.chats[chat.id].title.value == "Lunch"
    assert database.chats[chat.id].owner == ann
    assert [type(event) for event in database.outbox] == [NewChatCreatedEvent]
    assert database.outbox[0].chat.id == chat.id
    assert published == database.outbox


def test_a_title_taken_in_another_case_is_refused_and_nothing_is_recorded(mediator, database, ann, bob):
    mediator.handle_command(CreateChatCommand(title="Lunch", owner=ann))

    with pytest.raises(ChatTitleTaken):
        mediator.handle_command(CreateChatCommand(title="LUNCH", owner=bob))

    assert len(database.chats) == 1
    assert len(database.outbox) == 1


def test_an_invalid_title_is_refused_before_anything_is_stored(mediator, database, ann):
    with pytest.raises(InvalidTitle):
        mediator.handle_command(CreateChatCommand(title="   ", owner=ann))
    assert database.chats == {} and database.outbox == []


def test_messages_get_consecutive_seqs_and_one_event_each(mediator, database, ann, bob):
    chat = mediator.handle_command(CreateChatCommand(title="Lunch", owner=ann))

    posted = [
        mediator.handle_command(CreateMessageCommand(chat_id=chat.id, text=f"hi {n}", author=author))
        for n, author in enumerate([ann, bob, ann])
    ]

    assert [p.message.seq for p in posted] == [1, 2, 3]
    assert all(p.created for p in posted)
    assert database.chats[chat.id].last_seq == 3
    message_events = [e for e in database.outbox if isinstance(e, NewMessageReceivedEvent)]
    assert [e.message.seq for e in message_events] == [1, 2, 3]
    assert len({e.event_id for e in database.outbox}) == len(database.outbox)


def test_posting_to_an_unknown_chat_is_refused(mediator, database, ann):
    with pytest.raises(ChatNotFound):
        mediator.handle_command(CreateMessageCommand(chat_id=uuid.uuid4(), text="hi", author=ann))
    assert database.messages == {} and database.outbox == []


def test_an_invalid_text_changes_nothing(mediator, database, ann):
    chat = mediator.handle_command(CreateChatCommand(title="Lunch", owner=ann))
    with pytest.raises(InvalidText):
        mediator.handle_command(CreateMessageCommand(chat_id=chat.id, text=" ", author=ann))
    assert database.chats[chat.id].last_seq == 0
    assert len(database.outbox) == 1


def test_a_repeated_idempotency_key_returns_the_first_message_without_a_second_event(mediator, database, ann):
    chat = mediator.handle_command(CreateChatCommand(title="Lunch", owner=ann))
    command = CreateMessageCommand(chat_id=chat.id, text="hi", author=ann, idempotency_key="k-1")

    first = mediator.handle_command(command)
    again = mediator.handle_command(command)

    assert first.created and not again.created
    assert again.message == first.message
    assert len(database.messages) == 1
    assert database.chats[chat.id].last_seq == 1
    assert len(database.outbox) == 2  # chat.created + one message.created


def test_the_same_idempotency_key_from_another_user_is_a_new_message(mediator, database, ann, bob):
    chat = mediator.handle_command(CreateChatCommand(title="Lunch", owner=ann))
    mediator.handle_command(CreateMessageCommand(chat_id=chat.id, text="hi", author=ann, idempotency_key="k"))
    other = mediator.handle_command(CreateMessageCommand(chat_id=chat.id, text="hi", author=bob, idempotency_key="k"))
    assert other.created and other.message.seq == 2


def test_reusing_an_idempotency_key_for_a_different_text_is_refused(mediator, database, ann):
    chat = mediator.handle_command(CreateChatCommand(title="Lunch", owner=ann))
    mediator.handle_command(CreateMessageCommand(chat_id=chat.id, text="hi", author=ann, idempotency_key="k"))
    with pytest.raises(IdempotencyKeyReused):
        mediator.handle_command(CreateMessageCommand(chat_id=chat.id, text="bye", author=ann, idempotency_key="k"))
    assert len(database.messages) == 1


def test_the_owner_deletes_a_chat_and_its_messages(mediator, database, ann):
    chat = mediator.handle_command(CreateChatCommand(title="Lunch", owner=ann))
    mediator.handle_command(CreateMessageCommand(chat_id=chat.id, text="hi", author=ann))

    mediator.handle_command(DeleteChatCommand(chat_id=chat.id, requested_by=ann))

    assert database.chats == {} and database.messages == {}
    deleted = database.outbox[-1]
    assert isinstance(deleted, ChatDeletedEvent)
    assert deleted.chat.last_seq == 1 and deleted.deleted_by == "ann"


def test_staff_may_delete_a_chat_they_do_not_own(mediator, database, ann, moderator):
    chat = mediator.handle_command(CreateChatCommand(title="Lunch", owner=ann))
    mediator.handle_command(DeleteChatCommand(chat_id=chat.id, requested_by=moderator))
    assert database.chats == {}


def test_another_user_may_not_delete_a_chat(mediator, database, ann, bob):
    chat = mediator.handle_command(CreateChatCommand(title="Lunch", owner=ann))
    with pytest.raises(NotAllowed):
        mediator.handle_command(DeleteChatCommand(chat_id=chat.id, requested_by=bob))
    assert chat.id in database.chats
    assert len(database.outbox) == 1


def test_an_event_keeps_the_chat_as_it_was_when_it_happened(mediator, database, ann):
    chat = mediator.handle_command(CreateChatCommand(title="Lunch", owner=ann))
    mediator.handle_command(CreateMessageCommand(chat_id=chat.id, text="hi", author=ann))
    created = database.outbox[0]
    assert created.chat.last_seq == 0

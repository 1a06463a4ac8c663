from dataclasses import dataclass

import pytest

from messaging_domain.commands import Command, CreateChatCommand
from messaging_domain.events import ChatDeletedEvent, NewChatCreatedEvent
from messaging_domain.exceptions import (
    ChatTitleTaken,
    CommandHandlersNotRegisteredException,
    EventHandlersNotRegisteredException,
)
from messaging_domain.handlers import create_chat
from messaging_domain.mediator import Mediator
from tests.domain.fakes import FakeUnitOfWork


@dataclass(frozen=True)
class UnknownCommand(Command):
    pass


def test_a_command_without_a_handler_raises(mediator):
    with pytest.raises(CommandHandlersNotRegisteredException):
        mediator.handle_command(UnknownCommand())


def test_an_event_without_a_handler_raises(database):
    mediator = Mediator(uow_factory=lambda: FakeUnitOfWork(database))
    chat_event = NewChatCreatedEvent(chat=None)  # the payload is irrelevant to routing
    with pytest.raises(EventHandlersNotRegisteredException):
        mediator.publish_event(chat_event)


def test_the_maps_hold_what_was_registered(database):
    mediator = Mediator(uow_factory=lambda: FakeUnitOfWork(database))
    handler = object()
    mediator.register_command(CreateChatCommand, handler)
    mediator.register_event(ChatDeletedEvent, [print])
    mediator.register_event(ChatDeletedEvent, [repr])
    assert mediator.commands_map == {CreateChatCommand: handler}
    assert mediator.events_map[ChatDeletedEvent] == [print, repr]


def test_committed_events_are_published_after_the_command(mediator, published, ann):
    chat = mediator.handle_command(CreateChatCommand(title="Lunch", owner=ann))
    assert [(type(e), e.chat_id) for e in published] == [(NewChatCreatedEvent, chat.id)]


def test_a_failing_event_handler_is_logged_and_the_others_still_run(database, ann, caplog):
    seen = []

    def broken(event):
        raise RuntimeError("boom")

    mediator = Mediator(uow_factory=lambda: FakeUnitOfWork(database))
    mediator.register_command(CreateChatCommand, create_chat)
    mediator.register_event(NewChatCreatedEvent, [broken, seen.append])

    chat = mediator.handle_command(CreateChatCommand(title="Lunch", owner=ann))

    assert [e.chat_id for e in seen] == [chat.id]
    assert chat.id in database.chats
    assert "boom" in caplog.text


def test_a_refused_command_publishes_nothing(mediator, published, ann):
    mediator.handle_command(CreateChatCommand(title="Lunch", owner=ann))
    published.clear()
    with pytest.raises(ChatTitleTaken):
        mediator.handle_command(CreateChatCommand(title="lunch", owner=ann))
    assert published == []

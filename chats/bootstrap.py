"""The composition root: the only place where the domain's mediator meets the Django adapters."""

import logging

from chats.adapters import DjangoUnitOfWork
from messaging_domain.events import (
    ChatDeletedEvent,
    Event,
    NewChatCreatedEvent,
    NewMessageReceivedEvent,
)
from messaging_domain.mediator import Mediator, create_mediator

logger = logging.getLogger("chats.events")


def log_event(event: Event) -> None:
    """An audit line per committed event: what happened, to which chat, under which event id."""
    logger.info("%s chat=%s event_id=%s", event.event_type, event.chat_id, event.event_id)


def bootstrap() -> Mediator:
    return create_mediator(
        uow_factory=DjangoUnitOfWork,
        event_handlers={
            NewChatCreatedEvent: [log_event],
            NewMessageReceivedEvent: [log_event],
            ChatDeletedEvent: [log_event],
        },
    )


mediator = bootstrap()

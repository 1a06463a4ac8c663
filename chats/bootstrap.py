"""The composition root: the only place where the domain's mediator meets the Django adapters."""

import logging

from chats.adapters import DjangoUnitOfWork
from messaging_domain.events import ALL_EVENTS, Event
from messaging_domain.mediator import Mediator, create_mediator

logger = logging.getLogger("chats.events")


def log_event(event: Event) -> None:
    """An audit line per committed event: what happened, to which chat, under which event id."""
    logger.info("%s chat=%s event_id=%s", event.event_type, event.chat_id, event.event_id)


def bootstrap() -> Mediator:
    return create_mediator(
        uow_factory=DjangoUnitOfWork,
        event_handlers={event_type: [log_event] for event_type in ALL_EVENTS},
    )


mediator = bootstrap()

"""The mediator: routes each command to its handler, then publishes the events the change committed.

Event handlers run after the commit, in process (logging, metrics). They are not the way events leave the
service: the unit of work has already written them to the outbox, which `relay_outbox` sends to Kafka.
A failing event handler is logged and the others still run; the committed change stands.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from messaging_domain.commands import Command
from messaging_domain.events import Event
from messaging_domain.exceptions import (
    CommandHandlersNotRegisteredException,
    EventHandlersNotRegisteredException,
)
from messaging_domain.handlers import COMMAND_HANDLERS
from messaging_domain.ports import UnitOfWork

logger = logging.getLogger(__name__)

CommandHandler = Callable[[Any, UnitOfWork], Any]
EventHandler = Callable[[Any], None]


class Mediator:
    def __init__(self, uow_factory: Callable[[], UnitOfWork]) -> None:
        self.uow_factory = uow_factory
        self.commands_map: dict[type[Command], CommandHandler] = {}
        self.events_map: defaultdict[type[Event], list[EventHandler]] = defaultdict(list)

    def register_command(self, command_type: type[Command], handler: CommandHandler) -> None:
        self.commands_map[command_type] = handler

    def register_event(self, event_type: type[Event], handlers: Iterable[EventHandler]) -> None:
        self.events_map[event_type].extend(handlers)

    def handle_command(self, command: Command) -> Any:
        """Run the command in a fresh unit of work and return what its handler returns."""
        handler = self.commands_map.get(type(command))
        if handler is None:
            raise CommandHandlersNotRegisteredException(f"No handler for {type(command).__name__}.")
        uow = self.uow_factory()
        result = handler(command, uow)
        for event in uow.collect_new_events():
            self.publish_event(event)
        return result

    def publish_event(self, event: Event) -> None:
        handlers = self.events_map.get(type(event))
        if not handlers:
            raise EventHandlersNotRegisteredException(f"No handler for {type(event).__name__}.")
        for handler in handlers:
            try:
                handler(event)
            except Exception:
                logger.exception("event handler %r failed on %s", handler, event.event_id)


def create_mediator(
    uow_factory: Callable[[], UnitOfWork],
    event_handlers: dict[type[Event], list[EventHandler]],
) -> Mediator:
    """The one wiring of the domain's command handlers; adapters and tests differ only in what they pass."""
    mediator = Mediator(uow_factory)
    for command_type, handler in COMMAND_HANDLERS.items():
        mediator.register_command(command_type, handler)
    for event_type, handlers in event_handlers.items():
        mediator.register_event(event_type, handlers)
    return mediator

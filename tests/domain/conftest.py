import pytest

from messaging_domain.events import ALL_EVENTS, Event
from messaging_domain.mediator import Mediator, create_mediator
from messaging_domain.values import Participant
from tests.domain.fakes import FakeDatabase, FakeUnitOfWork


@pytest.fixture
def database() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def published() -> list[Event]:
    return []


@pytest.fixture
def mediator(database, published) -> Mediator:
    """Wired by the same function as production, with fakes and a recording event handler."""
    return create_mediator(
        uow_factory=lambda: FakeUnitOfWork(database),
        event_handlers={
            event_type: [published.append]
            for event_type in ALL_EVENTS
        },
    )


@pytest.fixture
def ann() -> Participant:
    return Participant(id=1, username="ann")


@pytest.fixture
def bob() -> Participant:
    return Participant(id=2, username="bob")


@pytest.fixture
def moderator() -> Participant:
    return Participant(id=3, username="mod", is_staff=True)


@pytest.fixture
def carol() -> Participant:
    return Participant(id=4, username="carol")


@pytest.fixture
def writer() -> Participant:
    """Someone who posts in other people's chats, so that their messages are unread to everyone else."""
    return Participant(id=5, username="writer")


@pytest.fixture
def registered(database, ann, bob, carol, moderator, writer) -> FakeDatabase:
    """The users the directory knows (by username), for commands that name a member: add, remove."""
    for user in (ann, bob, carol, moderator, writer):
        database.users[user.username] = user
    return database

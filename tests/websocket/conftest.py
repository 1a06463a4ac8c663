"""What the websocket tests share: ann, bob and cid with their tokens, a chat ann owns, no position checks."""

import pytest
from rest_framework.authtoken.models import Token

from chats.adapters import participant_of
from chats.bootstrap import mediator
from messaging_domain.commands import CreateChatCommand


@pytest.fixture
def no_position_checks(settings):
    """For tests that follow live frames and their gap fills: the position checks (their own tests set a short
    interval) would otherwise fill a frame a slow test run delivers late. Modules take it with `usefixtures`."""
    settings.CHAT_WS_POSITION_CHECK_SECONDS = 3600


@pytest.fixture
def token(ann):
    return Token.objects.create(user=ann).key


@pytest.fixture
def chat(ann):
    return mediator.handle_command(CreateChatCommand(title="Lunch", owner=participant_of(ann)))


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def bob_token(bob):
    return Token.objects.create(user=bob).key


@pytest.fixture
def cid(make_user):
    return make_user("cid")


@pytest.fixture
def cid_token(cid):
    return Token.objects.create(user=cid).key

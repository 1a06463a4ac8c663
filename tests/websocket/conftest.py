"""What the websocket tests share: ann's token, and a chat she owns."""

import pytest
from rest_framework.authtoken.models import Token

from chats.adapters import participant_of
from chats.bootstrap import mediator
from messaging_domain.commands import CreateChatCommand


@pytest.fixture
def token(ann):
    return Token.objects.create(user=ann).key


@pytest.fixture
def chat(ann):
    return mediator.handle_command(CreateChatCommand(title="Lunch", owner=participant_of(ann)))

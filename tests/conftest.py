"""Fixtures for the tiers that use Django and the database. `tests/domain/` uses none of them."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chats.models import OutboxEvent


@pytest.fixture
def make_user(django_user_model):
    def make(username: str = "ann", *, is_staff: bool = False):
        return django_user_model.objects.create_user(username=username, password="s3cret-pass-word", is_staff=is_staff)

    return make


@pytest.fixture
def make_client():
    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def ann(make_user):
    return make_user("ann")


@pytest.fixture
def client(make_client, ann) -> APIClient:
    """An API client authenticated as ann, by token."""
    return make_client(ann)


@pytest.fixture
def outbox():
    """The outbox's envelopes, oldest first."""

    def read() -> list[dict]:
        return list(OutboxEvent.objects.order_by("id").values_list("envelope", flat=True))

    return read

"""Usernames are unique in any case, in the database: two registrations racing for one name get one 201 and one
400 `invalid_username`, never two users and never a 500."""

import threading

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.db import IntegrityError, connection, transaction
from rest_framework.test import APIClient

from chats.api import auth as views
from tests.api.support import assert_error

PASSWORD = "a long passphrase 7"


def register(username: str, ip: str = "192.0.2.1"):
    return APIClient(raise_request_exception=False).post(
        "/api/auth/register/", {"username": username, "password": PASSWORD}, format="json", REMOTE_ADDR=ip
    )


@pytest.fixture
def both_past_the_check(monkeypatch):
    """Holds each registration after its "is the name free?" check until both have made it: the race, every time.

    RegisterApi checks the password after the name, so a barrier in front of the password check stands
    between the check and the insert."""
    barrier = threading.Barrier(2)

    def validate_after_both_checked(password, user=None, password_validators=None):
        barrier.wait(timeout=30)
        return validate_password(password, user, password_validators)

    monkeypatch.setattr(views, "validate_password", validate_after_both_checked)


def register_concurrently(first: str, second: str) -> list:
    responses: list = [None, None]

    def run(n: int, username: str) -> None:
        try:
            responses[n] = register(username, ip=f"192.0.2.{n + 1}")
        finally:
            connection.close()  # each thread has its own database connection

    threads = [threading.Thread(target=run, args=(n, name)) for n, name in enumerate([first, second])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return responses


@pytest.mark.parametrize("first, second", [("Ann", "ann"), ("ann", "ann")], ids=["case-variants", "identical"])
@pytest.mark.django_db(transaction=True)
def test_two_racing_registrations_of_one_name_give_one_user_and_one_invalid_username(first, second, both_past_the_check):
    responses = register_concurrently(first, second)

    assert sorted(response.status_code for response in responses) == [201, 400], [r.content for r in responses]
    assert_error(next(r for r in responses if r.status_code == 400), 400, "invalid_username")
    assert get_user_model().objects.filter(username__iexact="ann").count() == 1


@pytest.mark.django_db
def test_a_name_taken_in_another_case_is_refused_one_after_the_other():
    assert register("Ann").status_code == 201
    refused = register("ann")
    assert_error(refused, 400, "invalid_username")
    assert refused.json()["error"]["fields"] == {"username": ["This username is taken."]}


@pytest.mark.django_db
def test_the_database_itself_refuses_a_username_differing_only_in_case():
    get_user_model().objects.create_user("Ann", password=PASSWORD)
    with pytest.raises(IntegrityError), transaction.atomic():
        get_user_model().objects.create_user("aNN", password=PASSWORD)

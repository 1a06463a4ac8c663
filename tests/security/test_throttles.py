"""Throttles and the login limit on the real Redis cache: exact under concurrency, keyed by the real client
address, and out of the way (with a warning) while their store is down."""

import logging
import threading
import uuid

import pytest
import redis
from django.core.cache import cache
from django.db import connection
from django.test import Client, RequestFactory
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chats.adapters import participant_of
from chats.api import throttling
from chats.api.addresses import client_ip
from chats.api.throttling import RegisterRateThrottle, WriteRateThrottle
from chats.bootstrap import mediator
from chats.runtime.embedded import free_port, start_redis
from messaging_domain.commands import CreateChatCommand
from tests.api.support import assert_error

PASSWORD = "s3cret-pass-word"  # tests/conftest.py's make_user


def redis_cache_settings(address: str) -> dict:
    # A key prefix per test instead of flushing: the session's Redis also carries the channel layer.
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://{address}/0",
            "KEY_PREFIX": f"test-{uuid.uuid4().hex}",
            "OPTIONS": {"pool_class": "chats.runtime.redis_pool.SharedConnectionPool"},
        }
    }


@pytest.fixture
def redis_cache(redis_server, settings):
    settings.CACHES = redis_cache_settings(redis_server.address)


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    """Counting windows are fixed; a frozen clock keeps a test inside one window, whatever the time of day."""
    monkeypatch.setattr(throttling, "clock", lambda: 1_800_000_000.0)


@pytest.fixture(autouse=True)
def fresh_store_warning(monkeypatch):
    monkeypatch.setattr(throttling, "store_down_warning", throttling.RateLimitedWarning(interval=60))


@pytest.fixture
def rates(monkeypatch):
    def set_rates(**rates: str) -> None:
        for throttle in (WriteRateThrottle, RegisterRateThrottle):
            monkeypatch.setattr(throttle, "THROTTLE_RATES", {**throttle.THROTTLE_RATES, **rates})

    return set_rates


def run_concurrently(count: int, call) -> list:
    """`call(n)` in `count` real threads released together; their results, in order."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[n] = call(n)
        finally:
            connection.close()  # each thread has its own database connection

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def register(username: str, **extra):
    body = {"username": username, "password": "a long passphrase 7"}
    return APIClient().post("/api/auth/register/", body, format="json", **extra)


# --- exact counting ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_forty_concurrent_posts_against_twenty_a_minute_accept_exactly_twenty(redis_cache, rates, ann, make_client, make_user):
    rates(writes="20/minute")
    chat = mediator.handle_command(CreateChatCommand(title="Busy", owner=participant_of(ann)))
    token = Token.objects.create(user=ann).key

    def post(n: int):
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        return api.post(f"/api/chats/{chat.id}/messages/", {"text": f"m{n}"}, format="json")

    responses = run_concurrently(40, post)

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * 20 + [429] * 20
    refused = next(response for response in responses if response.status_code == 429)
    assert_error(refused, 429, "throttled")
    assert 0 < int(refused["Retry-After"]) <= 60
    bob = make_client(make_user("bob"))  # counted on his own
    assert bob.post(f"/api/chats/{chat.id}/messages/", {"text": "hi"}, format="json").status_code == 201


@pytest.mark.django_db(transaction=True)
def test_a_counted_request_costs_one_round_trip_and_its_counter_expires_after_two_windows(redis_cache, rates, ann, redis_server):
    """The counter is made and counted in one MULTI: no EXISTS before INCR, as Django's cache.incr would send."""
    rates(writes="20/minute")
    chat = mediator.handle_command(CreateChatCommand(title="Counted", owner=participant_of(ann)))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ann).key}")
    server = redis.Redis.from_url(f"redis://{redis_server.address}/0")
    before = server.info("commandstats")

    assert api.post(f"/api/chats/{chat.id}/messages/", {"text": "one"}, format="json").status_code == 201

    after = server.info("commandstats")
    calls = {name: after.get(f"cmdstat_{name}", {}).get("calls", 0) - before.get(f"cmdstat_{name}", {}).get("calls", 0)
             for name in ("multi", "exec", "set", "incrby", "exists")}
    assert calls == {"multi": 1, "exec": 1, "set": 1, "incrby": 1, "exists": 0}
    window = throttling.current_window(WriteRateThrottle.cache_format % {"scope": "writes", "ident": ann.pk}, 60)
    assert cache.get(window.key) == 1  # what INCR counted, as the cache reads it
    assert 60 < server.ttl(cache.make_and_validate_key(window.key)) <= 120


# --- the client's address ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_spoofed_forwarded_for_header_does_not_reset_the_registration_throttle(redis_cache, rates):
    rates(register="2/hour")
    for n in range(2):
        assert register(f"user{n}", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code == 201

    refused = register("user2", HTTP_X_FORWARDED_FOR="198.51.100.77")

    assert_error(refused, 429, "throttled")


@pytest.mark.django_db
def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_registration_limit(redis_cache, rates, settings):
    settings.CHAT_TRUSTED_PROXIES = ["10.0.0.0/8"]
    rates(register="1/hour")
    proxy = {"REMOTE_ADDR": "10.0.0.2"}

    assert register("user0", HTTP_X_FORWARDED_FOR="203.0.113.1", **proxy).status_code == 201
    assert register("user1", HTTP_X_FORWARDED_FOR="203.0.113.2", **proxy).status_code == 201
    # The client can prepend anything; the proxy appends the address it saw.
    refused = register("user2", HTTP_X_FORWARDED_FOR="203.0.113.99, 203.0.113.1", **proxy)
    assert_error(refused, 429, "throttled")


@pytest.mark.parametrize(
    "remote_addr, forwarded_for, client",
    [
        pytest.param("192.0.2.7", None, "192.0.2.7", id="no-header"),
        pytest.param("192.0.2.7", "203.0.113.5", "192.0.2.7", id="header-from-a-non-proxy-is-ignored"),
        pytest.param("10.0.0.2", None, "10.0.0.2", id="proxy-without-header"),
        pytest.param("10.0.0.2", "203.0.113.5", "203.0.113.5", id="proxy-forwards-its-client"),
        pytest.param("10.0.0.2", "6.6.6.6, 203.0.113.5", "203.0.113.5", id="right-most-untrusted-wins"),
        pytest.param("10.0.0.2", "203.0.113.5, 10.0.0.9", "203.0.113.5", id="chained-trusted-proxies-skipped"),
        pytest.param("10.0.0.2", "6.6.6.6,203.0.113.5 , 10.0.0.9", "203.0.113.5", id="spacing"),
        pytest.param("10.0.0.2", "10.0.0.8, 10.0.0.9", "10.0.0.8", id="all-trusted-left-most"),
        pytest.param("10.0.0.2", "not-an-address, 10.0.0.9", "10.0.0.9", id="garbage-ends-at-the-hop-that-saw-it"),
        pytest.param("2001:db8::2", "2001:db8:1::5", "2001:db8:1::5", id="ipv6-proxy"),
    ],
)
def test_the_client_address_is_the_right_most_forwarded_address_that_is_not_a_trusted_proxy(
    remote_addr, forwarded_for, client, settings
):
    settings.CHAT_TRUSTED_PROXIES = ["10.0.0.0/8", "2001:db8::2"]
    headers = {} if forwarded_for is None else {"HTTP_X_FORWARDED_FOR": forwarded_for}
    request = RequestFactory().get("/", REMOTE_ADDR=remote_addr, **headers)
    assert client_ip(request) == client


# --- failed logins ----------------------------------------------------------------------------------


def token_login(username: str, password: str, ip: str = "192.0.2.10"):
    body = {"username": username, "password": password}
    return APIClient().post("/api/auth/token/", body, format="json", REMOTE_ADDR=ip)


@pytest.mark.django_db
def test_ten_wrong_passwords_lock_the_account_even_against_the_right_password(redis_cache, make_user):
    make_user("ann")
    make_user("bob")
    for n in range(10):
        assert_error(token_login("ann", f"wrong-{n}", ip=f"192.0.2.{n}"), 400, "invalid_credentials")

    locked = token_login("ANN", PASSWORD, ip="192.0.2.200")

    assert_error(locked, 429, "throttled")
    assert 0 < int(locked["Retry-After"]) <= 15 * 60
    assert token_login("bob", PASSWORD, ip="192.0.2.1").status_code == 200


@pytest.mark.django_db
def test_a_successful_login_starts_the_accounts_count_of_failures_again(redis_cache, make_user):
    make_user("ann")
    for n in range(9):
        token_login("ann", f"wrong-{n}")
    assert token_login("ann", PASSWORD).status_code == 200
    for n in range(10):
        assert_error(token_login("ann", f"again-{n}"), 400, "invalid_credentials")
    assert_error(token_login("ann", PASSWORD), 429, "throttled")


@pytest.mark.django_db
def test_failures_across_accounts_from_one_address_lock_that_address(redis_cache, settings, make_user):
    settings.CHAT_LOGIN_IP_FAILURES = 5
    make_user("ann")
    for n in range(5):
        token_login(f"guess{n}", "wrong", ip="198.51.100.4")

    assert_error(token_login("ann", PASSWORD, ip="198.51.100.4"), 429, "throttled")
    assert token_login("ann", PASSWORD, ip="198.51.100.5").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_concurrent_guesses_get_no_more_password_checks_than_the_limit(redis_cache, make_user):
    make_user("ann")
    responses = run_concurrently(30, lambda n: token_login("ann", f"wrong-{n}", ip=f"192.0.2.{n}"))
    assert sorted(response.status_code for response in responses) == [400] * 10 + [429] * 20


@pytest.mark.parametrize("login", ["/admin/login/", "/api-auth/login/"], ids=["admin", "browsable-api"])
@pytest.mark.django_db
def test_a_login_form_logs_in_below_the_limit_and_refuses_a_locked_account_with_a_clear_message(
    login, redis_cache, make_user
):
    make_user("boss", is_staff=True)
    below = Client()
    below.post(login, {"username": "boss", "password": "wrong"})
    assert below.post(login, {"username": "boss", "password": PASSWORD}).status_code == 302
    assert "_auth_user_id" in below.session

    browser = Client()
    for n in range(10):
        page = browser.post(login, {"username": "boss", "password": f"wrong-{n}"})
        assert page.status_code == 200 and b"Please enter" in page.content and b"correct username" in page.content

    page = browser.post(login, {"username": "Boss", "password": PASSWORD})

    assert page.status_code == 200  # the form again, not a redirect into the admin
    assert b"Too many failed login attempts" in page.content
    assert "_auth_user_id" not in browser.session


# --- the store is down ------------------------------------------------------------------------------


def store_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "chats.api.throttling" and r.levelno == logging.WARNING]


@pytest.mark.django_db
def test_posts_succeed_and_one_warning_is_logged_while_the_throttle_store_is_unreachable(settings, client, caplog):
    settings.CACHES = redis_cache_settings(f"127.0.0.1:{free_port()}")  # nothing listens there
    caplog.set_level(logging.WARNING, logger="chats.api.throttling")

    for n in range(5):
        assert client.post("/api/chats/", {"title": f"chat {n}"}, format="json").status_code == 201
    assert register("newcomer").status_code == 201

    assert len(store_warnings(caplog)) == 1  # rate-limited, not one per request


@pytest.mark.django_db
def test_posts_and_logins_go_on_when_the_throttle_redis_stops(settings, client, make_user, caplog):
    server = start_redis()
    try:
        settings.CACHES = redis_cache_settings(server.address)
        assert client.post("/api/chats/", {"title": "before"}, format="json").status_code == 201
        server.stop()  # the pool now holds connections to a server that has gone
        caplog.set_level(logging.WARNING, logger="chats.api.throttling")

        assert client.post("/api/chats/", {"title": "after"}, format="json").status_code == 201
        make_user("bob")
        assert token_login("bob", PASSWORD).status_code == 200
        assert_error(token_login("bob", "wrong"), 400, "invalid_credentials")
    finally:
        server.stop()
    assert store_warnings(caplog)

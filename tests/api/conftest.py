import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    # Throttle counters live in the cache, which outlives a test's database transaction.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def bob_client(make_client, bob):
    return make_client(bob)


@pytest.fixture
def carol(make_user):
    return make_user("carol")


@pytest.fixture
def carol_client(make_client, carol):
    return make_client(carol)

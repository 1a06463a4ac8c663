"""The throttle cache shares one Redis connection pool per process instead of one per request."""

import uuid

import redis
from django.core.cache.backends.redis import RedisCache

from chats.runtime.redis_pool import SharedConnectionPool


def test_cache_objects_made_per_request_share_one_connection(redis_server, monkeypatch):
    monkeypatch.setattr(SharedConnectionPool, "_pools", {})  # as in a new process: no pool from earlier tests
    url = f"redis://{redis_server.address}/0"
    observer = redis.Redis.from_url(url)
    key = f"throttle-test-{uuid.uuid4().hex}"
    connections_before = len(observer.client_list())
    # Under ASGI Django builds a cache object per request context, as here: twenty requests in flight.
    requests = [RedisCache(url, {"OPTIONS": {"pool_class": "chats.runtime.redis_pool.SharedConnectionPool"}}) for _ in range(20)]
    for cache in requests:
        cache.add(key, 0)
        cache.incr(key)
        cache.close()
    # One new connection served all twenty (the stock pool class would have opened twenty).
    assert len(observer.client_list()) - connections_before == 1
    assert int(observer.get(f":1:{key}")) == 20
    observer.close()


def test_pools_are_shared_per_url_and_options_only(redis_server):
    url = f"redis://{redis_server.address}/0"
    assert SharedConnectionPool.from_url(url) is SharedConnectionPool.from_url(url)
    assert SharedConnectionPool.from_url(url) is not SharedConnectionPool.from_url(url, socket_timeout=3)
    assert SharedConnectionPool.from_url(url) is not SharedConnectionPool.from_url(f"redis://{redis_server.address}/1")

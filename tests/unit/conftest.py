"""The one real service unit tests use: a Redis database of their own, flushed around each test
(TEST_REDIS_UNIT_URL, default db 15 on 127.0.0.1:6379; the integration tests use 14, the demo
and the benchmarks 8; each pytest-xdist process takes databases of its own, see
``tests.redisdb``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.redisdb import redis_url_for

UNIT_REDIS_URL = redis_url_for("TEST_REDIS_UNIT_URL", 15)


@pytest.fixture
def r() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(UNIT_REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()

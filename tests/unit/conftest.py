"""The one real service unit tests use: a Redis database of their own, flushed around each test
(TEST_REDIS_UNIT_URL, default db 15 on 127.0.0.1:6379; the integration tests use 14 and the
benchmarks 12)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

UNIT_REDIS_URL = os.environ.get("TEST_REDIS_UNIT_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def r() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(UNIT_REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()

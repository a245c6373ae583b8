"""The daily budget with a real worker whose limiter clock the test sets (the test-only
CC_RATE_LIMIT_CLOCK_OFFSET) so that 00:00 UTC comes a few seconds after the exports start:
once the day's requests are spent — by our own count or by Constant Contact's 429
``quota_exceeded`` — no request leaves until the reset, and then the exports resume and finish."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import redis
from celery import Celery

from sandbox.testing import SandboxProcess
from tests.integration.conftest import WorkerFactory
from tests.integration.helpers import enqueue, wait_until
from workers.constant_contact.ratelimit import SECONDS_PER_DAY, RateLimiter

pytestmark = pytest.mark.integration

TOKEN = f"quota-{uuid.uuid4().hex}"
#: Seconds from now to the simulated midnight: a worker start, then a few seconds of waiting.
#: Long enough for a worker to start on a loaded machine (three test processes on two cores).
RESET_IN = 10.0
RESULT_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def cc() -> Iterator[SandboxProcess]:
    with SandboxProcess(tokens=[TOKEN], contacts=200, processing_seconds=0.2, rate_limit=4) as sb:
        yield sb


@pytest.fixture
def budget_db(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)

    def forget() -> None:
        for key in client.scan_iter("contact_exports:ratelimit:*"):
            client.delete(key)

    forget()
    yield client
    forget()
    client.close()


def simulated_midnight() -> tuple[float, float]:
    """(real time of the reset, clock offset): the last real 00:00 UTC, replayed RESET_IN s from
    now. The offset is negative, so nothing this leaves in Redis lies in the real future."""
    reset_at = time.time() + RESET_IN
    midnight = (time.time() // SECONDS_PER_DAY) * SECONDS_PER_DAY
    return reset_at, midnight - reset_at


def api_times(cc: SandboxProcess) -> list[tuple[float, dict[str, Any]]]:
    entries = [e for e in cc.requests() if e["endpoint"] != "token"]
    return sorted(
        ((datetime.fromisoformat(str(e["ts"])).timestamp(), e) for e in entries),
        key=lambda pair: pair[0],
    )


def start(start_worker: WorkerFactory, cc: SandboxProcess, offset: float, **env: str) -> Any:
    return start_worker(
        concurrency=2,
        CC_API_BASE_URL=cc.api_base,
        CC_ACCESS_TOKEN=TOKEN,
        CC_RATE_LIMIT_CLOCK_OFFSET=repr(offset),
        RETRY_MAX_ATTEMPTS="100",
        **env,
    )


def test_our_own_count_stops_requests_until_midnight_utc(
    start_worker: WorkerFactory,
    client: Celery,
    cc: SandboxProcess,
    budget_db: redis.Redis,
    s3: Any,
) -> None:
    cc.reset()
    reset_at, offset = simulated_midnight()
    worker = start(start_worker, cc, offset, CC_RATE_LIMIT_PER_DAY="5")
    assert time.time() < reset_at - 3, "the worker took too long to start"
    tag = uuid.uuid4().hex[:6]
    results = [enqueue(client, export={}, job_id=f"quota-{tag}-{n}") for n in range(2)]
    summaries = [r.get(timeout=RESULT_TIMEOUT) for r in results]
    worker.leave()  # both exports are done: nothing more is sent

    assert len({s["activity_id"] for s in summaries}) == 2
    times = api_times(cc)
    before = [t for t, _ in times if t < reset_at]
    after = [t for t, _ in times if t >= reset_at]
    assert len(before) == 5  # the whole day's budget, then nothing until the reset
    assert after and reset_at - before[-1] >= 1.0  # nothing at all while waiting for the reset
    assert not [e for _, e in times if e["status"] == 429]
    usage = RateLimiter(budget_db, clock_offset=offset).usage()
    assert usage.day == int((reset_at + offset) // SECONDS_PER_DAY)  # the new (simulated) day
    assert usage.used == len(after)  # every request was counted, and only once


def test_a_quota_answer_from_the_api_stops_every_worker_until_midnight_utc(
    start_worker: WorkerFactory,
    client: Celery,
    cc: SandboxProcess,
    budget_db: redis.Redis,
    s3: Any,
) -> None:
    cc.reset()
    cc.configure(daily_quota=3)  # Constant Contact counts requests our limiter never saw
    reset_at, offset = simulated_midnight()
    worker = start(start_worker, cc, offset)
    tag = uuid.uuid4().hex[:6]
    results = [enqueue(client, export={}, job_id=f"api-quota-{tag}-{n}") for n in range(2)]
    wait_until(
        lambda: any(e["status"] == 429 for e in cc.requests()), RESULT_TIMEOUT, "a quota 429"
    )
    time.sleep(max(0.0, reset_at - 0.5 - time.time()))  # the server's day ends with ours
    cc.configure(daily_quota=0)
    summaries = [r.get(timeout=RESULT_TIMEOUT) for r in results]
    worker.leave()

    assert len({s["activity_id"] for s in summaries}) == 2
    times = api_times(cc)
    refused = [(t, e) for t, e in times if e["status"] == 429]
    assert refused and all(t < reset_at for t, _ in refused)
    last_refusal = max(t for t, _ in refused)
    quiet = [t for t, _ in times if last_refusal < t < reset_at]
    assert quiet == []  # after the quota answer nobody asked again before the reset
    assert [t for t, _ in times if t >= reset_at]

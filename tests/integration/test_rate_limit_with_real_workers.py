"""The cluster-wide rate limit with 2 real workers x 4 slots and 12 exports queued at once,
against the sandbox enforcing Constant Contact's 4 requests per second: no one-second window
ever holds more than 4 requests, and the sandbox never answers 429."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import redis
from celery import Celery

from sandbox.testing import SandboxProcess
from tests.integration.conftest import WorkerFactory
from tests.integration.helpers import enqueue

pytestmark = pytest.mark.integration

TOKEN = f"rate-{uuid.uuid4().hex}"
#: More than the 8 slots, so that every slot of both workers competes for the budget throughout
#: (about 40 requests: 10 s at 4 a second).
EXPORTS = 12
LIMIT = 4
RESULT_TIMEOUT = 150.0


def forget_budget(url: str) -> None:
    client = redis.Redis.from_url(url)
    for key in client.scan_iter("contact_exports:ratelimit:*"):
        client.delete(key)
    client.close()


@pytest.fixture(scope="module")
def cc() -> Iterator[SandboxProcess]:
    with SandboxProcess(
        tokens=[TOKEN], contacts=200, processing_seconds=0.2, rate_limit=LIMIT
    ) as server:
        yield server


def most_in_one_second(times: list[float]) -> int:
    """The largest number of requests inside any window [t, t + 1s)."""
    best, first = 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


def seconds(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(entry["ts"])).timestamp()


def test_two_workers_never_exceed_the_budget_and_meet_no_429(
    start_worker: WorkerFactory,
    client: Celery,
    cc: SandboxProcess,
    redis_url: str,
    s3: Any,
) -> None:
    forget_budget(redis_url)
    env = {"CC_API_BASE_URL": cc.api_base, "CC_ACCESS_TOKEN": TOKEN, "RETRY_MAX_ATTEMPTS": "50"}
    workers = start_worker.many(2, concurrency=4, **env)
    tag = uuid.uuid4().hex[:6]
    results = [
        enqueue(client, export={"fields": ["email_address"]}, job_id=f"rate-{tag}-{n}")
        for n in range(EXPORTS)
    ]
    summaries = [r.get(timeout=RESULT_TIMEOUT) for r in results]
    for worker in workers:
        worker.leave()
    forget_budget(redis_url)

    assert len({s["activity_id"] for s in summaries}) == EXPORTS
    api = [e for e in cc.requests() if e["endpoint"] != "token"]
    assert [e for e in api if e["status"] == 429] == []
    times = sorted(seconds(e) for e in api)
    assert most_in_one_second(times) <= LIMIT

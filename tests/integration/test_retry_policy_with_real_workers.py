"""The retry policy with a real worker against the sandbox (rate limit on): bursts of 429
``throttled``, 5xx and timeouts on every call of the chain are ridden through, while 400, 403 and
404 fail the export at once with ConstantContactError, after exactly one request."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess
from tests.integration.conftest import WorkerFactory
from tests.integration.helpers import enqueue

pytestmark = pytest.mark.integration

TOKEN = f"retry-{uuid.uuid4().hex}"
RESULT_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def cc() -> Iterator[SandboxProcess]:
    with SandboxProcess(tokens=[TOKEN], contacts=200, processing_seconds=0.2, rate_limit=4) as sb:
        yield sb


@pytest.fixture(scope="module")
def retrying_worker(
    start_worker: WorkerFactory, cc: SandboxProcess, redis_url: str, s3: Any
) -> WorkerProcess:
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("contact_exports:ratelimit:*"):
        client.delete(key)
    client.close()
    return start_worker(
        concurrency=4,
        CC_API_BASE_URL=cc.api_base,
        CC_ACCESS_TOKEN=TOKEN,
        CC_READ_TIMEOUT="1.0",
        RETRY_MAX_ATTEMPTS="10",
    )


def test_bursts_of_429_5xx_and_timeouts_are_ridden_through(
    retrying_worker: WorkerProcess, client: Celery, cc: SandboxProcess
) -> None:
    cc.reset()
    rules = cc.add_faults(
        {"endpoint": "create_export", "status": 503, "times": 3},
        {"endpoint": "create_export", "status": 429, "error_key": "throttled", "times": 2},
        {"endpoint": "get_activity", "status": 429, "error_key": "throttled", "times": 3},
        {"endpoint": "get_activity", "status": 500, "times": 2},
        {"endpoint": "get_activity", "delay_first_byte": 2.5, "times": 1},
        {"endpoint": "get_results", "status": 502, "times": 2},
        {"endpoint": "get_results", "status": 504, "times": 1},
    )
    tag = uuid.uuid4().hex[:6]
    results = [enqueue(client, export={}, job_id=f"burst-{tag}-{n}") for n in range(6)]
    summaries = [r.get(timeout=RESULT_TIMEOUT) for r in results]

    assert len({s["activity_id"] for s in summaries}) == 6
    fired = {rule["id"]: rule["fired"] for rule in cc.faults()}
    assert [fired[rule["id"]] for rule in rules] == [3, 2, 3, 2, 1, 2, 1]
    # The only 429s are the injected ones: the limiter kept every worker within the budget.
    injected_429 = 5
    assert cc.summary()["by_status"].get("429", 0) == injected_429


@pytest.mark.parametrize(
    ("endpoint", "status", "error_key"),
    [
        ("create_export", 400, "json.field.invalid"),
        ("create_export", 403, "forbidden"),
        ("get_activity", 404, "not.found"),
    ],
)
def test_client_errors_fail_at_once(
    retrying_worker: WorkerProcess,
    client: Celery,
    cc: SandboxProcess,
    endpoint: str,
    status: int,
    error_key: str,
) -> None:
    cc.reset()
    cc.add_faults({"endpoint": endpoint, "status": status, "error_key": error_key, "times": 1})
    result = enqueue(client, export={}, job_id=f"final-{uuid.uuid4().hex[:8]}")
    result.get(timeout=RESULT_TIMEOUT, propagate=False)

    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "ConstantContactError"
    assert str(status) in str(result.result) and error_key in str(result.result)
    assert len(cc.requests(endpoint=endpoint)) == 1  # no retry
    assert cc.summary()["by_status"].get(str(status)) == 1

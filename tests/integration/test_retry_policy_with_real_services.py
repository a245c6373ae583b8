"""The retry policy of the export's steps against the sandbox (rate limit on): bursts of 429
``throttled``, 5xx and timeouts on every call of the chain are ridden through, while 400, 403 and
404 fail the export at once with ConstantContactError, after exactly one request.

The steps run in this process, every export in a thread of its own with the services of a worker
process of its own, all sharing the request budget in Redis as workers do. An export waiting out
a countdown holds nothing in a worker either, so all of them run at once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from sandbox.testing import SandboxProcess
from tests.integration.chain import run_export
from tests.integration.conftest import ServicesFactory
from workers.exceptions import ConstantContactError
from workers.services import Services

pytestmark = pytest.mark.integration

TOKEN = f"retry-{uuid.uuid4().hex}"
EXPORTS = 6


@pytest.fixture(scope="module")
def cc() -> Iterator[SandboxProcess]:
    with SandboxProcess(tokens=[TOKEN], contacts=200, processing_seconds=0.2, rate_limit=4) as sb:
        yield sb


@pytest.fixture
def retrying(make_services: ServicesFactory, cc: SandboxProcess, redis_url: str) -> ServicesFactory:
    """Services for one slot each, on this module's sandbox, with a fresh request budget."""
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("contact_exports:ratelimit:*"):
        client.delete(key)
    client.close()

    def make() -> Services:
        return make_services(
            cc_api_base_url=cc.api_base,
            cc_access_token=TOKEN,
            cc_read_timeout=1.0,
            retry_max_attempts=10,
        )

    return make


def test_bursts_of_429_5xx_and_timeouts_are_ridden_through(
    retrying: ServicesFactory, cc: SandboxProcess
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
    requests = [{"export": {}, "job_id": f"burst-{tag}-{n}"} for n in range(EXPORTS)]
    with ThreadPoolExecutor(EXPORTS) as exports:
        summaries = list(exports.map(lambda r: run_export(retrying(), r), requests))

    assert len({s["activity_id"] for s in summaries}) == EXPORTS
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
    retrying: ServicesFactory,
    cc: SandboxProcess,
    endpoint: str,
    status: int,
    error_key: str,
) -> None:
    cc.reset()
    cc.add_faults({"endpoint": endpoint, "status": status, "error_key": error_key, "times": 1})
    with pytest.raises(ConstantContactError) as caught:
        run_export(retrying(), {"export": {}, "job_id": f"final-{uuid.uuid4().hex[:8]}"})

    assert type(caught.value).__name__ == "ConstantContactError"
    assert str(status) in str(caught.value) and error_key in str(caught.value)
    assert len(cc.requests(endpoint=endpoint)) == 1  # no retry
    assert cc.summary()["by_status"].get(str(status)) == 1

"""Constant Contact goes away while exports are in every stage, on a real ``celery worker``:
every API request answers 503, or every connection is refused (and the open ones reset). The
exports wait by the one retry policy — never faster than its backoff — resume when the API comes
back, and each completes once, with one activity and one stored object.

The worker reaches the sandbox through a ``devstack.tcpproxy.TcpProxy``, which plays "connection
refused" without the sandbox forgetting its activities. The outage lasts ``OUTAGE`` seconds
under a retry policy scaled down to match (the arithmetic is the same at the defaults, where a
step survives about 200 s of outage: docs/reliability.md); ``bench/api_outage.py`` runs the full
two minutes at the defaults.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from celery import Celery
from celery.result import AsyncResult

from devstack.tcpproxy import TcpProxy
from sandbox.testing import SandboxProcess
from tests.integration.conftest import WorkerFactory
from tests.integration.helpers import (
    RESULT_TIMEOUT,
    assert_stored_once,
    created_activities,
    enqueue,
    wait_until,
)
from workers.retry import JITTER
from workers.state.jobs import JobStore

pytestmark = pytest.mark.integration

#: Seconds the API is away. The outage is a span of time, so the test waits it out.
OUTAGE = 3.0
INITIAL = 0.5
CAP = 2.0
#: Enough attempts to outlast OUTAGE at the slowest jitter: 0.4 + 0.8 + 1.6 + 1.6 + ... > 3 s.
ATTEMPTS = 8
POLICY = {
    "RETRY_INITIAL_SECONDS": str(INITIAL),
    "RETRY_MAX_SECONDS": str(CAP),
    "RETRY_MAX_ATTEMPTS": str(ATTEMPTS),
    "POLL_INITIAL_SECONDS": "0.3",
    "POLL_MAX_SECONDS": "1.0",
}


@pytest.fixture(scope="module")
def proxy(sandbox: SandboxProcess) -> Iterator[TcpProxy]:
    port = int(sandbox.api_base.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    with TcpProxy(port) as running:
        yield running


@pytest.fixture(scope="module")
def api_base(sandbox: SandboxProcess, proxy: TcpProxy) -> str:
    return proxy.url("/" + sandbox.api_base.split("//", 1)[1].split("/", 1)[1])


@pytest.fixture(scope="module")
def worker(start_worker: WorkerFactory, api_base: str) -> None:
    start_worker(concurrency=3, CC_API_BASE_URL=api_base, **POLICY)


def submit(client: Celery, tag: str, n: int) -> AsyncResult[Any]:
    return enqueue(client, export={"fields": ["email_address"]}, job_id=f"outage-{tag}-{n}")


def through_an_outage(
    client: Celery,
    sandbox: SandboxProcess,
    store: JobStore,
    s3: Any,
    begin: Callable[[], None],
    end: Callable[[], None],
) -> tuple[list[dict[str, Any]], float, float]:
    """Exports downloading, polling and creating when the API goes; their results, and when
    the outage began and ended (the sandbox's clock is this machine's)."""
    tag = uuid.uuid4().hex[:6]
    before = created_activities(sandbox)
    # One export is reading its results when the outage begins: its first byte comes later than
    # the next two exports take to reach polling, even on a slow machine.
    sandbox.add_faults({"endpoint": "get_results", "delay_first_byte": 6.0, "times": 1})
    results = [submit(client, tag, 0)]
    jobs = [f"outage-{tag}-{n}" for n in range(5)]
    wait_until(lambda: store.record(jobs[0]).get("state") == "downloading", what="a download")
    sandbox.set_processing_seconds(3.0)  # finish during the outage, so polls meet it
    results += [submit(client, tag, n) for n in (1, 2)]
    wait_until(
        lambda: all(store.record(job).get("state") == "polling" for job in jobs[1:3]),
        what="two exports polling",
    )
    began = time.time()
    begin()
    results += [submit(client, tag, n) for n in (3, 4)]  # they create during the outage
    time.sleep(OUTAGE)
    ended = time.time()
    end()
    summaries = [r.get(timeout=RESULT_TIMEOUT) for r in results]
    assert [s["job_id"] for s in summaries] == jobs
    created = created_activities(sandbox)[len(before) :]
    assert sorted(created) == sorted(s["activity_id"] for s in summaries)  # one each
    for summary in summaries:
        assert_stored_once(s3, sandbox, summary)
    return summaries, began, ended


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def most_tries(span: float) -> int:
    """The most requests one waiting step can make within ``span`` seconds: its backoff
    doubles from INITIAL to CAP, each wait at least JITTER[0] of it (docs/reliability.md)."""
    tries, waited, wait = 1, 0.0, INITIAL
    while waited + wait * JITTER[0] <= span:
        waited += wait * JITTER[0]
        tries += 1
        wait = min(CAP, wait * 2)
    return tries


def test_exports_wait_out_an_api_that_answers_503(
    worker: None, client: Celery, sandbox: SandboxProcess, store: JobStore, s3: Any
) -> None:
    summaries, began, ended = through_an_outage(
        client,
        sandbox,
        store,
        s3,
        lambda: sandbox.add_faults({"endpoint": "*", "status": 503, "times": None}),
        sandbox.clear_faults,
    )
    refused = [
        e for e in sandbox.requests() if e["status"] == 503 and began <= seconds(e["ts"]) <= ended
    ]
    assert refused, "no request met the outage"
    # Each activity's polls came no faster than the backoff allows...
    polls: dict[str, list[float]] = {}
    for entry in refused:
        if entry["endpoint"] == "get_activity":
            # by path: an answer the fault gave names no activity of its own
            polls.setdefault(entry["path"], []).append(seconds(entry["ts"]))
    assert polls, "no poll met the outage"
    for activity, stamps in polls.items():
        assert len(stamps) <= most_tries(ended - began), (activity, stamps)
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert all(gap >= INITIAL * JITTER[0] - 0.05 for gap in gaps), (activity, gaps)
    # ... and so did the two exports creating theirs: together at most two steps' worth.
    creates = [e for e in refused if e["endpoint"] == "create_export"]
    assert 2 <= len(creates) <= 2 * most_tries(ended - began), creates
    for summary in summaries:
        failures = store.record(summary["job_id"])
        assert all(int(v) <= ATTEMPTS for k, v in failures.items() if "failures:" in k)


def test_exports_wait_out_an_api_that_refuses_connections(
    worker: None,
    client: Celery,
    sandbox: SandboxProcess,
    store: JobStore,
    s3: Any,
    proxy: TcpProxy,
) -> None:
    accepted = proxy.accepted
    summaries, began, ended = through_an_outage(
        client, sandbox, store, s3, proxy.refuse, proxy.accept
    )
    assert proxy.accepted > accepted
    # No request reached the API while it was away.
    assert not [e for e in sandbox.requests() if began + 0.1 < seconds(e["ts"]) < ended - 0.1]
    # The download cut off mid-transfer and a create that found no API was retried. Only one:
    # the two creates share the account's posting lease (one POST at a time per account), so
    # the second may spend the whole outage waiting for it, which counts no failure.
    first = store.record(summaries[0]["job_id"])
    assert int(first.get("attempts:failures:downloading", 0)) >= 1, first
    creating = [store.record(s["job_id"]) for s in summaries[3:]]
    assert any(int(r.get("attempts:failures:creating", 0)) >= 1 for r in creating), creating

"""A Redis that stalls under a real ``celery worker``: paused for 6 s (``CLIENT PAUSE``), and
one whose every answer comes late. Exports downloading and polling through it complete once —
one activity and one object each, one result — and the worker keeps running.

Leases are the part at risk: their TTL here (3 s, then 1 s) is shorter than the pause, and the
heartbeat that renews them waits on the same Redis. A download whose lease lapsed cannot know
that no other delivery took the job meanwhile, so it steps back and a later delivery downloads
again: whether the pause lapses the lease before the stream's last lease check depends on how
far the download got when the pause began (on a loaded machine, not yet to its results GET).
So a download may run again, but only after its lease was lost, and never stores twice. The
module runs a Redis of its own, since a paused Redis would stall every other test sharing one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from devstack.redis_server import RedisServer
from devstack.tcpproxy import TcpProxy
from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess
from tests.integration.conftest import WorkerFactory
from tests.integration.helpers import (
    RESULT_TIMEOUT,
    assert_stored_once,
    created_activities,
    enqueue,
    wait_until,
)
from workers.state.jobs import JobStore

pytestmark = pytest.mark.integration

#: Twice the lease TTL of the test that pauses it.
PAUSE_MS = 6_000
#: Seconds each answer of the slow Redis comes late (a heartbeat renews every TTL / 3).
SLOW = 0.03


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("stalled-redis"), durable=False) as server:
        yield server


def lease_lost(worker: WorkerProcess, job_id: str) -> int:
    """How many times the worker's download of ``job_id`` found its lease lost and stepped back
    (its JSON log line for the retry names the job)."""
    return sum(
        1
        for line in worker.log().splitlines()
        if "download lease lost" in line and f'"job_id": "{job_id}"' in line
    )


def caller(url: str) -> Celery:
    app = Celery(broker=url, backend=url)
    app.conf.update(task_serializer="json", accept_content=["json"])
    return app


def exports_through(
    url: str,
    worker: WorkerProcess,
    sandbox: SandboxProcess,
    s3: Any,
    during: Any,
) -> None:
    """One export downloading and two polling when ``during(jobs)`` runs; all complete once."""
    client = caller(url)
    jobs = JobStore(redis.Redis.from_url(url))
    tag = uuid.uuid4().hex[:6]
    names = [f"stall-{tag}-{n}" for n in range(3)]
    before = created_activities(sandbox)
    sandbox.add_faults({"endpoint": "get_results", "delay_first_byte": 2.0, "times": 1})
    results = [enqueue(client, export={"fields": ["email_address"]}, job_id=names[0])]
    wait_until(lambda: jobs.record(names[0]).get("state") == "downloading", what="a download")
    sandbox.set_processing_seconds(2.0)
    results += [enqueue(client, export={"fields": ["email_address"]}, job_id=n) for n in names[1:]]
    wait_until(
        lambda: all(jobs.record(n).get("state") == "polling" for n in names[1:]), what="polls"
    )
    during()
    summaries = [r.get(timeout=RESULT_TIMEOUT) for r in results]
    client.close()
    created = created_activities(sandbox)[len(before) :]
    assert sorted(created) == sorted(s["activity_id"] for s in summaries)  # one each
    for summary in summaries:
        assert_stored_once(s3, sandbox, summary)
        record = jobs.record(summary["job_id"])
        attempts = int(record.get("attempts:download", "0"))
        stepped_back = lease_lost(worker, summary["job_id"])
        # Downloaded again only after stepping back from a lapsed lease: one more per step back.
        assert attempts == 1 + stepped_back, (attempts, stepped_back, record)
        assert f"stored s3://{summary['bucket']}/{summary['key']}" in worker.log()  # this one's
    assert worker.process is not None and worker.process.poll() is None, worker.log()[-3000:]
    assert "Unrecoverable error" not in worker.log()


def test_exports_ride_out_a_redis_paused_for_twice_the_lease_ttl(
    own_redis: RedisServer,
    start_worker: WorkerFactory,
    sandbox: SandboxProcess,
    s3: Any,
) -> None:
    url = own_redis.url
    worker = start_worker(
        concurrency=3,
        CELERY_BROKER_URL=url,
        CELERY_RESULT_BACKEND=url,
        LEASE_TTL_SECONDS="3",
        POLL_INITIAL_SECONDS="0.3",
        POLL_MAX_SECONDS="1.0",
    )
    admin = own_redis.admin_client(socket_timeout=PAUSE_MS / 1000 * 3)

    def pause() -> None:
        admin.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
        # A fresh connection's PING is held like every other client's: it answers at the end.
        own_redis.admin_client(socket_timeout=PAUSE_MS / 1000 * 3).ping()

    try:
        exports_through(url, worker, sandbox, s3, pause)
    finally:
        admin.close()
        worker.leave()  # the next test's worker alone consumes, whatever this one found


def test_exports_complete_on_a_redis_whose_answers_come_late(
    own_redis: RedisServer,
    start_worker: WorkerFactory,
    sandbox: SandboxProcess,
    s3: Any,
    tmp_path: Path,
) -> None:
    with TcpProxy(own_redis.port, delay=SLOW) as slow:
        url = f"redis://127.0.0.1:{slow.port}/0"
        worker = start_worker(
            concurrency=3,
            CELERY_BROKER_URL=url,
            CELERY_RESULT_BACKEND=url,
            LEASE_TTL_SECONDS="1",
            POLL_INITIAL_SECONDS="0.3",
            POLL_MAX_SECONDS="1.0",
        )
        try:
            exports_through(url, worker, sandbox, s3, lambda: None)
        finally:
            worker.leave()

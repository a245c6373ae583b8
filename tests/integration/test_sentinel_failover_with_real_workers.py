"""A Redis Sentinel failover while exports are in flight, on real processes: a master, a replica
and three Sentinels (``devstack.sentinel``), two ``celery worker`` processes and a caller, all
on ``sentinel://`` URLs with BROKER_MASTER_NAME.

The master is killed (SIGKILL) while exports are being created, polled and downloaded, and more
are submitted while no master answers. The workers (broker, result backend, job records,
limiter), the client helper and the command line follow the promoted replica; every export
completes, with one activity and one stored object each.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from contact_exports_cli.connections import close_app
from contact_exports_cli.main import app as cli
from contact_exports_client import make_app, submit_export, wait
from contact_exports_client.redis_tls import redis_at
from devstack.sentinel import MASTER_NAME, SentinelGroup
from sandbox.testing import SandboxProcess
from tests.integration.conftest import WorkerFactory
from tests.integration.helpers import (
    RESULT_TIMEOUT,
    assert_stored_once,
    created_activities,
    wait_until,
)
from workers.state.jobs import JobStore

pytestmark = pytest.mark.integration

BEFORE = 4
DURING = 2


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    with SentinelGroup(tmp_path / "sentinel") as running:
        yield running


def test_exports_in_every_stage_complete_once_across_a_failover(
    group: SentinelGroup,
    start_worker: WorkerFactory,
    sandbox: SandboxProcess,
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = group.url(0)
    monkeypatch.setenv("BROKER_MASTER_NAME", MASTER_NAME)
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        monkeypatch.setenv(name, url)
    start_worker.many(
        2,
        concurrency=2,
        CELERY_BROKER_URL=url,
        CELERY_RESULT_BACKEND=url,
        BROKER_MASTER_NAME=MASTER_NAME,
        POLL_INITIAL_SECONDS="0.5",
        POLL_MAX_SECONDS="1.0",
        RETRY_MAX_ATTEMPTS="10",
        # What a worker held when the master died (a countdown waiting in its memory, a step
        # whose ack found no master) stays unacknowledged in Redis, and comes back after the
        # visibility timeout; what the failover lost outright, the janitor sends again.
        BROKER_VISIBILITY_TIMEOUT="6",
        BROKER_RESTORE_INTERVAL="1",
        JANITOR_INTERVAL_SECONDS="1",
    )
    caller = make_app(url, url)
    jobs = JobStore(redis_at(url, master=MASTER_NAME))
    sandbox.set_processing_seconds(2.0)
    before = created_activities(sandbox)
    tag = uuid.uuid4().hex[:6]
    request = {"fields": ["email_address"]}
    results = [
        submit_export(request, job_id=f"failover-{tag}-{n}", app=caller) for n in range(BEFORE)
    ]
    wait_until(
        lambda: any(jobs.record(r.id).get("state") == "polling" for r in results),
        what="an export polling its activity",
    )

    old = group.kill_master()
    results += [
        submit_export(request, job_id=f"failover-{tag}-{n}", app=caller)
        for n in range(BEFORE, BEFORE + DURING)
    ]
    new = group.wait_failover(old)
    assert new != old

    try:
        summaries = [wait(result, timeout=RESULT_TIMEOUT) for result in results]
    finally:
        close_app(caller)  # its result subscriptions, before the group goes
    assert [s["job_id"] for s in summaries] == [r.id for r in results]
    created = created_activities(sandbox)[len(before) :]
    assert sorted(created) == sorted(s["activity_id"] for s in summaries)  # one each
    for summary in summaries:
        assert_stored_once(s3, sandbox, summary)
    status = CliRunner().invoke(cli, ["status", results[0].id, "--json"])
    assert status.exit_code == 0, status.output
    assert '"SUCCESS"' in status.stdout


def test_a_connection_reopened_after_a_failover_reaches_the_new_master(
    group: SentinelGroup,
) -> None:
    """What a command's retry does after its connection broke: reopen it (not ``connect()``),
    then send. redis-py's own Sentinel connection reopens at the dead master's address."""
    client = redis_at(group.url(5), master=MASTER_NAME)
    client.set("contact_exports:failover-probe", "kept")
    connection = client.connection_pool.get_connection()
    try:
        old = group.kill_master()
        group.wait_failover(old)
        connection.disconnect()
        connection.send_command("GET", "contact_exports:failover-probe")
        assert connection.read_response() == b"kept"
        assert connection.port != old
    finally:
        client.connection_pool.release(connection)
        client.close()

"""A Redis Sentinel failover while exports are in flight, on real processes: a master, a replica
and three Sentinels (``devstack.sentinel``), two ``celery worker`` processes and a caller, all
on ``sentinel://`` URLs with BROKER_MASTER_NAME.

The master is killed (SIGKILL) while exports are being created, polled and downloaded, and more
are submitted while no master answers. The workers (broker, result backend, job records,
limiter), the client helper and the command line follow the promoted replica; every export
completes, with one activity and one stored object each.

The same holds on a group that speaks TLS only (``REDIS_SENTINEL_TLS``): the Sentinels, the master
and the replica, each verified against the test's CA; without that CA the worker stops at start
saying the certificate is not trusted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from contact_exports_cli.connections import close_app
from contact_exports_cli.main import app as cli
from contact_exports_client import make_app, submit_export, wait
from contact_exports_client.redis_tls import RedisTls, redis_at
from devstack.sentinel import MASTER_NAME, SentinelGroup
from devstack.tls import ServerCertificate, make_certificates
from sandbox.testing import SandboxProcess
from tests.integration.conftest import WorkerFactory
from tests.integration.helpers import (
    RESULT_TIMEOUT,
    assert_stored_once,
    created_activities,
    exits_at_start,
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


@pytest.fixture
def certificates(tmp_path: Path) -> ServerCertificate:
    return make_certificates(tmp_path / "certificates", "devstack sentinel")


@pytest.fixture
def tls_group(tmp_path: Path, certificates: ServerCertificate) -> Iterator[SentinelGroup]:
    with SentinelGroup(tmp_path / "tls-sentinel", tls=certificates) as running:
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


def test_exports_over_a_tls_sentinel_group_complete_across_a_failover(
    tls_group: SentinelGroup,
    certificates: ServerCertificate,
    start_worker: WorkerFactory,
    sandbox: SandboxProcess,
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Broker, result backend, job records, the client helper and the CLI over TLS to the
    Sentinels and the master they name, before and after the master is killed."""
    url = tls_group.url(0)
    env = {
        "CELERY_BROKER_URL": url,
        "CELERY_RESULT_BACKEND": url,
        "BROKER_MASTER_NAME": MASTER_NAME,
        "REDIS_SENTINEL_TLS": "true",
        "REDIS_CA_FILE": str(certificates.ca),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    start_worker(concurrency=2, POLL_INITIAL_SECONDS="0.3", POLL_MAX_SECONDS="1.0", **env)
    caller = make_app(url, url)
    request = {"fields": ["email_address"]}
    tag = uuid.uuid4().hex[:6]
    try:
        first = wait(submit_export(request, job_id=f"tls-{tag}-0", app=caller), RESULT_TIMEOUT)
        tls_group.wait_failover(tls_group.kill_master())
        second = wait(submit_export(request, job_id=f"tls-{tag}-1", app=caller), RESULT_TIMEOUT)
    finally:
        close_app(caller)
    for summary in (first, second):
        assert_stored_once(s3, sandbox, summary)
    jobs = JobStore(redis_at(url, RedisTls.from_env(), master=MASTER_NAME))
    assert jobs.record(second["job_id"])["state"] == "completed"
    # The group speaks nothing but TLS: the same URL without REDIS_SENTINEL_TLS reaches nothing.
    plain = redis_at(url, RedisTls(), master=MASTER_NAME, socket_timeout=2.0)
    with pytest.raises(redis.ConnectionError):
        plain.ping()
    status = CliRunner().invoke(cli, ["status", second["job_id"], "--json"])
    assert status.exit_code == 0, status.output
    assert '"SUCCESS"' in status.stdout


def test_an_untrusted_sentinel_certificate_stops_the_worker_at_start(
    tls_group: SentinelGroup, worker_env: dict[str, str], tmp_path: Path
) -> None:
    url = tls_group.url(0)
    env = {
        **worker_env,
        "CELERY_BROKER_URL": url,
        "CELERY_RESULT_BACKEND": url,
        "BROKER_MASTER_NAME": MASTER_NAME,
        "REDIS_SENTINEL_TLS": "true",
    }
    env.pop("REDIS_CA_FILE", None)
    code, log, seconds = exits_at_start(env, tmp_path, f"untrusted-{uuid.uuid4().hex[:6]}")
    assert code != 0, log
    assert "the server's TLS certificate" in log and "is not trusted" in log, log
    assert "set REDIS_CA_FILE" in log
    print(f"untrusted Sentinel certificate: exit {code} after {seconds:.1f}s")

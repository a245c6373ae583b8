"""Redis over TLS with an ACL user: broker, result backend and job records all on
``rediss://user:password@…`` to a TLS-only Redis whose ``default`` user is off.

The module starts its own Redis (``devstack.redis_server`` with a throwaway CA from
``devstack.tls``), its own S3 server and sandbox, and real ``celery worker`` processes: the
shared Redis and worker of ``conftest`` play no part. The ACL user has exactly the rights
docs/configuration.md documents (``SERVICE_ACL``): one export end to end proves they suffice.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from botocore.config import Config
from celery import Celery
from typer.testing import CliRunner

from contact_exports_cli.connections import close_app
from contact_exports_cli.main import app as cli_app
from contact_exports_client import make_app, submit_export, wait
from contact_exports_client.keys import job_key
from contact_exports_client.redis_tls import RedisTls
from devstack.redis_server import SERVICE_ACL, AclUser, RedisServer
from devstack.s3server import RcloneS3
from devstack.tls import ServerCertificate as TlsFiles
from devstack.tls import make_certificates
from devstack.worker import WorkerProcess, stop_all
from sandbox.testing import SandboxProcess
from tests.integration.helpers import exits_at_start, wait_until

pytestmark = pytest.mark.integration

TOKEN = "tls-acl-test-token"
BUCKET = "tls-exports"
USER = "contact_exports"
RESULT_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certificates(tmp_path_factory.mktemp("redis-tls"), "devstack redis")


@pytest.fixture(scope="module")
def password() -> str:
    return secrets.token_urlsafe(18)


@pytest.fixture(scope="module")
def tls_redis(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles, password: str
) -> Iterator[RedisServer]:
    server = RedisServer(
        tmp_path_factory.mktemp("redis-tls-data"),
        tls=tls_files,
        users=[AclUser(USER, password, SERVICE_ACL)],
    )
    with server:
        yield server


@pytest.fixture(scope="module")
def urls(tls_redis: RedisServer, password: str) -> dict[str, str]:
    """Broker and backend on db 0, job records on db 1: three URLs, two distinct."""
    return {
        "CELERY_BROKER_URL": tls_redis.url_for(USER, password, 0),
        "CELERY_RESULT_BACKEND": tls_redis.url_for(USER, password, 0),
        "JOBS_REDIS_URL": tls_redis.url_for(USER, password, 1),
    }


@pytest.fixture(scope="module")
def tls_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with RcloneS3(tmp_path_factory.mktemp("tls-s3") / "data") as server:
        server.create_bucket(BUCKET)
        yield server.env()


@pytest.fixture(scope="module")
def tls_sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(
        tokens=[TOKEN], contacts=500, processing_seconds=0.3, rate_limit=0
    ) as server:
        yield server


@pytest.fixture(scope="module")
def env(
    urls: dict[str, str],
    tls_files: TlsFiles,
    tls_s3: dict[str, str],
    tls_sandbox: SandboxProcess,
) -> dict[str, str]:
    return {
        **tls_s3,
        **urls,
        "REDIS_CA_FILE": str(tls_files.ca),
        "CC_API_BASE_URL": tls_sandbox.api_base,
        "CC_ACCESS_TOKEN": TOKEN,
        "S3_BUCKET": BUCKET,
        "S3_PART_SIZE_MIB": "5",
        "POLL_INITIAL_SECONDS": "0.3",
        "POLL_MAX_SECONDS": "1.0",
        "RETRY_INITIAL_SECONDS": "0.2",
        "RETRY_MAX_SECONDS": "1.0",
        "RETRY_MAX_ATTEMPTS": "3",
        # Sweep every second, so the janitor's commands run under the ACL too.
        "JANITOR_INTERVAL_SECONDS": "1",
    }


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tls-worker-logs")


@pytest.fixture(scope="module")
def tls_worker(env: dict[str, str], logs: Path) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(env, logs / "tls-worker.log", name=f"tls-{uuid.uuid4().hex[:6]}")
    try:
        yield worker.start()
    finally:
        stop_all([worker])


@pytest.fixture(scope="module")
def caller(urls: dict[str, str], tls_files: TlsFiles) -> Iterator[Celery]:
    app = make_app(
        urls["CELERY_BROKER_URL"],
        urls["CELERY_RESULT_BACKEND"],
        tls=RedisTls(ca_file=str(tls_files.ca)),
    )
    yield app
    close_app(app)


@pytest.fixture(scope="module")
def finished_job(
    tls_worker: WorkerProcess, caller: Celery, urls: dict[str, str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """One export end to end over TLS, submitted with the client helper."""
    job = f"tls-{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as patch:
        # The helper writes the job's first record where the workers keep records.
        patch.setenv("JOBS_REDIS_URL", urls["JOBS_REDIS_URL"])
        result = submit_export(
            {"status": "active", "fields": ["email_address"]},
            job_id=job,
            destination={"key": f"tls/{job}.csv"},
            app=caller,
        )
    summary = wait(result, timeout=RESULT_TIMEOUT)
    yield job, dict(summary)


def test_an_export_runs_end_to_end_over_tls_with_an_acl_user(
    finished_job: tuple[str, dict[str, Any]],
    tls_redis: RedisServer,
    tls_s3: dict[str, str],
    tls_worker: WorkerProcess,
) -> None:
    job, summary = finished_job
    assert (summary["job_id"], summary["bucket"], summary["key"]) == (job, BUCKET, f"tls/{job}.csv")
    assert summary["rows"] > 0 and summary["bytes"] > 0
    admin = tls_redis.admin_client(db=1)
    try:
        record = admin.hgetall(job_key(job))
        assert record[b"state"] == b"completed", record
        assert tls_redis.admin_client(db=0).exists(f"celery-task-meta-{job}")
    finally:
        admin.close()
    s3 = boto3.client(
        "s3",
        endpoint_url=tls_s3["S3_ENDPOINT_URL"],
        aws_access_key_id=tls_s3["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=tls_s3["AWS_SECRET_ACCESS_KEY"],
        region_name=tls_s3["AWS_DEFAULT_REGION"],
        config=Config(s3={"addressing_style": "path"}),
    )
    body = s3.get_object(Bucket=BUCKET, Key=f"tls/{job}.csv")["Body"].read()
    assert len(body) == summary["bytes"]
    time.sleep(2.5)  # two janitor sweeps
    log = tls_worker.log()
    assert "janitor skipped" not in log
    assert "no permissions" not in log and "NOPERM" not in log, log[-3000:]


def test_the_acl_user_cannot_reach_other_keys(
    tls_redis: RedisServer, urls: dict[str, str], tls_files: TlsFiles
) -> None:
    client = redis.Redis.from_url(urls["JOBS_REDIS_URL"], ssl_ca_certs=str(tls_files.ca))
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.get("someone-else:key")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.flushall()
    finally:
        client.close()


def test_a_wrong_password_stops_the_worker_at_start(
    env: dict[str, str], tls_redis: RedisServer, logs: Path
) -> None:
    wrong = f"wrong-{secrets.token_hex(6)}"
    bad = {**env, "CELERY_BROKER_URL": tls_redis.url_for(USER, wrong, 0)}
    code, log, seconds = exits_at_start(bad, logs, "wrong-password")
    assert code != 0, log
    assert "CELERY_BROKER_URL: Redis at" in log and "refused the credentials" in log, log
    assert f"rediss://{USER}:***@127.0.0.1:{tls_redis.port}/0" in log
    assert wrong not in log and env["CELERY_RESULT_BACKEND"].split(":")[2].split("@")[0] not in log
    assert " ready." not in log
    print(f"wrong password: exit {code} after {seconds:.1f}s")


def test_an_untrusted_certificate_stops_the_worker_at_start(
    env: dict[str, str], logs: Path, password: str
) -> None:
    untrusted = {k: v for k, v in env.items() if k != "REDIS_CA_FILE"}
    code, log, seconds = exits_at_start(untrusted, logs, "untrusted-ca")
    assert code != 0, log
    assert "the server's TLS certificate" in log and "is not trusted" in log, log
    assert "set REDIS_CA_FILE" in log
    assert password not in log
    print(f"untrusted certificate: exit {code} after {seconds:.1f}s")


def test_a_redis_that_is_down_is_waited_for(env: dict[str, str], logs: Path) -> None:
    """Only credentials and certificates are fatal: a Redis that is not up yet is retried."""
    down = {
        **env,
        "CELERY_BROKER_URL": "rediss://nobody:secret-down@127.0.0.1:1/0",
        "CELERY_RESULT_BACKEND": "rediss://nobody:secret-down@127.0.0.1:1/0",
        "JOBS_REDIS_URL": "rediss://nobody:secret-down@127.0.0.1:1/1",
    }
    worker = WorkerProcess(down, logs / "down.log", name="down")
    worker.spawn()
    assert worker.process is not None
    try:
        # Past the start-up check, and in Celery's own wait for the broker: it did not stop.
        wait_until(lambda: "Trying again" in worker.log(), timeout=30, what="Celery's retry")
        assert worker.process.poll() is None, worker.log()
        log = worker.log()
        assert "is not reachable yet" in log and "the worker keeps trying" in log, log
        assert "secret-down" not in log
    finally:
        stop_all([worker], timeout=10)


def test_the_cli_reaches_the_tls_redis(
    finished_job: tuple[str, dict[str, Any]], env: dict[str, str], urls: dict[str, str]
) -> None:
    job, _ = finished_job
    cli_env = {name: env[name] for name in (*urls, "REDIS_CA_FILE")}
    status = CliRunner().invoke(cli_app, ["status", job, "--json"], env=cli_env)
    assert status.exit_code == 0, status.output
    view = json.loads(status.stdout)
    assert view["celery"]["state"] == "SUCCESS", view
    assert view["record"]["state"] == "completed", view

    # Without the CA, the CLI says why it cannot connect, and never shows the password.
    no_ca = {**cli_env, "REDIS_CA_FILE": ""}
    refused = CliRunner().invoke(cli_app, ["status", job, "--json"], env=no_ca)
    assert refused.exit_code == 3, refused.output
    assert "not trusted" in refused.output and "REDIS_CA_FILE" in refused.output
    assert env["CELERY_BROKER_URL"].split(":")[2].split("@")[0] not in refused.output


def test_doctor_checks_every_redis_over_tls(tls_worker: WorkerProcess, env: dict[str, str]) -> None:
    """``doctor`` reads the workers' settings (REDIS_CA_FILE among them) and reaches each Redis
    and the accounts in it with the ACL user."""
    checked = CliRunner().invoke(cli_app, ["doctor", "--json"], env=env)
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)
    assert env["CELERY_BROKER_URL"].split(":")[2].split("@")[0] not in checked.output
    text = json.dumps(report)
    assert "Redis (broker, result backend)" in text and "Redis (job records and accounts)" in text

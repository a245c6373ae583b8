"""Signed task messages (``MESSAGE_SIGNING_*``), on a real ``celery worker``: a caller holding a
trusted key starts an export and it completes (the worker signs the chain's own steps); an
unsigned message and one signed by a stranger are refused and logged, never come back, and the
worker goes on serving; nor does the janitor send the stranger's job again from the record its
helper wrote. Without the variables (every other test) messages are plain JSON.

Each signer runs in a process of its own (``tests.integration.signed_caller``): Celery
registers its signing serializer for a whole process, with one key.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from contact_exports_client import QUEUE
from devstack.tls import SigningIdentity, make_signing_identity
from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess
from tests.integration.conftest import WorkerFactory
from tests.integration.helpers import RESULT_TIMEOUT, assert_stored_once, enqueue, wait_until
from workers.state.jobs import JobStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SigningIdentity]:
    home = tmp_path_factory.mktemp("signing")
    return {name: make_signing_identity(home, name) for name in ("worker", "caller", "stranger")}


@pytest.fixture(scope="module")
def signed_worker(
    start_worker: WorkerFactory,
    identities: dict[str, SigningIdentity],
    tmp_path_factory: pytest.TempPathFactory,
) -> WorkerProcess:
    trusted = tmp_path_factory.mktemp("trusted")
    for name in ("worker", "caller"):  # not the stranger
        shutil.copy(identities[name].cert, trusted)
    return start_worker(
        concurrency=2,
        MESSAGE_SIGNING_KEY=str(identities["worker"].key),
        MESSAGE_SIGNING_CERT=str(identities["worker"].cert),
        MESSAGE_SIGNING_TRUSTED=str(trusted),
        # The janitor takes a job untouched for about 5 s for lost, and looks every second.
        BROKER_VISIBILITY_TIMEOUT="2",
        LEASE_TTL_SECONDS="1",
        JANITOR_INTERVAL_SECONDS="1",
    )


def as_signer(identity: SigningIdentity, redis_url: str, job_id: str, *then: str) -> str:
    """Run ``signed_caller`` as an application signing with ``identity``; its output."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.signed_caller", job_id, *then],
        env={
            "PATH": os.environ["PATH"],
            "CELERY_BROKER_URL": redis_url,
            "CELERY_RESULT_BACKEND": redis_url,
            "MESSAGE_SIGNING_KEY": str(identity.key),
            "MESSAGE_SIGNING_CERT": str(identity.cert),
        },
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=False,
        timeout=RESULT_TIMEOUT + 30,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def queued(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.llen(QUEUE))
    finally:
        client.close()


def test_a_trusted_caller_starts_an_export(
    signed_worker: WorkerProcess,
    identities: dict[str, SigningIdentity],
    redis_url: str,
    sandbox: SandboxProcess,
    s3: Any,
) -> None:
    job = f"signed-{uuid.uuid4().hex[:8]}"
    summary = json.loads(as_signer(identities["caller"], redis_url, job, "wait"))
    assert summary["job_id"] == job
    assert_stored_once(s3, sandbox, summary)
    assert "Refusing to deserialize" not in signed_worker.log()


def test_unsigned_and_forged_messages_are_refused_and_the_worker_goes_on(
    signed_worker: WorkerProcess,
    identities: dict[str, SigningIdentity],
    client: Celery,
    redis_url: str,
    sandbox: SandboxProcess,
    s3: Any,
) -> None:
    tag = uuid.uuid4().hex[:8]
    unsigned = enqueue(client, export={}, job_id=f"unsigned-{tag}")  # plain JSON, as before
    wait_until(
        lambda: "Refusing to deserialize untrusted content" in signed_worker.log(),
        what="the unsigned message refused",
    )
    as_signer(identities["stranger"], redis_url, f"forged-{tag}")
    wait_until(
        lambda: "Can't decode message body" in signed_worker.log(),
        what="the stranger's message refused",
    )
    log = signed_worker.log()
    assert "Unable to deserialize" in log, log[-3000:]
    # Neither message started anything, nor waits to be delivered again.
    assert unsigned.state == "PENDING"
    assert f"forged-{tag}" not in sandbox.requests().__repr__()
    wait_until(lambda: queued(redis_url) == 0, what="the queue to drain")

    # The record the stranger's helper wrote (sealed by the stranger) is not sent again.
    wait_until(
        lambda: (
            f"job forged-{tag}: its stored request carries no seal of a trusted key"
            in signed_worker.log()
        ),
        what="the janitor to refuse the stranger's record",
    )
    assert JobStore(redis.Redis.from_url(redis_url)).record(f"forged-{tag}")["state"] == "queued"

    # The worker goes on serving trusted callers.
    job = f"after-{tag}"
    summary = json.loads(as_signer(identities["caller"], redis_url, job, "wait"))
    assert_stored_once(s3, sandbox, summary)
    assert signed_worker.process is not None and signed_worker.process.poll() is None

"""A job whose message was lost is found by the janitor's sweep and sent again under the
caller's id, and finishes once.

The sweep and the steps run in this process on real Redis, the sandbox and each real S3 server
(rclone and SeaweedFS, ``both_stores``); the sweep
sends into an outbox, and the export it sent is run from there.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis

from contact_exports_client import make_app, snapshot, submit_export
from contact_exports_client.client import EXPORT_TASK
from contact_exports_client.keys import NAMESPACE
from sandbox.testing import SandboxProcess
from tests.integration.chain import Outbox, run_export
from tests.integration.conftest import BUCKET
from tests.integration.helpers import assert_stored_once, created_activities
from workers.export.janitor import sweep
from workers.export.job import Job
from workers.services import Services
from workers.state.jobs import JobStore

# What the janitor sends again is the same over http and https (the storage suites prove https).
pytestmark = [pytest.mark.integration, pytest.mark.both_stores("rclone", "seaweedfs")]


def swept_again(services: Services, result_id: str) -> dict[str, Any]:
    """Sweep for every job untouched since now; the export sent under ``result_id``."""
    outbox = services.sender
    assert isinstance(outbox, Outbox)
    sweep(services.jobs, outbox, older_than=0.0)
    [message] = [m for m in outbox.take(EXPORT_TASK) if m.id == result_id]
    return run_export(services, message.kwargs, result_id=message.id)


def test_an_export_whose_first_message_was_lost_is_sent_again_and_completes_once(
    services: Services, sandbox: SandboxProcess, s3: Any, redis_url: str
) -> None:
    """A broker restart can drop a message no worker has seen: the caller's record remains.

    No worker runs while this module does (in-process modules run first), so none can take
    the message before it is dropped."""
    broker = redis.Redis.from_url(redis_url)
    app = make_app(redis_url)
    result = submit_export({"fields": ["email_address"]}, app=app)
    queued = [  # the queue (and any priority lists kombu keeps beside it), not the service's keys
        key
        for key in broker.scan_iter("contact_exports*")
        if broker.type(key) == b"list" and not key.startswith(NAMESPACE.encode())
    ]
    assert [broker.llen(key) for key in queued] == [1]
    broker.delete(*queued)  # what Redis did to soak-655: popped, and never delivered
    broker.close()
    before = created_activities(sandbox)

    summary = swept_again(services, result.id)

    assert summary["job_id"] == result.id
    assert created_activities(sandbox)[len(before) :] == [summary["activity_id"]]
    assert_stored_once(s3, sandbox, summary)
    state, info = snapshot(result)  # the run reported on the caller's id
    assert (state, info["job_id"]) == ("PROGRESS", result.id)


def test_an_orphaned_job_is_sent_again_and_completes_once(
    services: Services, sandbox: SandboxProcess, s3: Any, store: JobStore
) -> None:
    job_id = f"orphan-{uuid.uuid4().hex[:8]}"
    result_id = str(uuid.uuid4())
    # What the export task writes before its chain's first message — which Redis then lost.
    job = Job(
        job_id=job_id,
        result_id=result_id,
        account="default",
        requests=[{"fields": ["email_address"]}],
        bucket=BUCKET,
        key=f"contact-exports/default/{job_id}.csv",
        deadline=time.time() + 300,
        started_at="2026-11-26T00:00:00Z",
    )
    assert store.open(job, {"export": {"fields": ["email_address"]}, "job_id": job_id})
    before = created_activities(sandbox)

    summary = swept_again(services, result_id)

    assert summary["job_id"] == job_id
    assert created_activities(sandbox)[len(before) :] == [summary["activity_id"]]
    assert_stored_once(s3, sandbox, summary)


def test_live_and_finished_jobs_are_not_stale(redis_url: str) -> None:
    store = JobStore(redis.Redis.from_url(redis_url))
    job = Job(
        job_id=f"fresh-{uuid.uuid4().hex[:8]}",
        result_id="r",
        account="default",
        requests=[{}],
        bucket=BUCKET,
        key="k.csv",
        deadline=time.time() + 300,
        started_at="2026-11-26T00:00:00Z",
    )
    store.open(job, {"export": {}, "job_id": job.job_id})
    assert job.job_id not in {r["job_id"] for r in store.stale(60)}
    assert job.job_id in {r["job_id"] for r in store.stale(0)}
    store.save_result(job.job_id, {"rows": 1})
    assert job.job_id not in {r["job_id"] for r in store.stale(0)}

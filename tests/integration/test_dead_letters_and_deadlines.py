"""Jobs that fail for good are kept and can be rerun; deadlines close jobs cleanly.

Real Redis, rclone S3, the sandbox and a celery worker process.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from celery import Celery

from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess
from workers.export.deadletters import list_failed, rerun
from tests.integration.conftest import BUCKET, WorkerFactory
from tests.integration.helpers import (
    RESULT_TIMEOUT,
    assert_stored_once,
    enqueue,
    open_uploads,
    wait_until,
)
from workers.state.jobs import JobStore

pytestmark = pytest.mark.integration


#: Short enough for the deadline test, long enough that a rerun on a busy machine finishes.
DEADLINE_SECONDS = 20


@pytest.fixture(scope="module")
def short_deadline_worker(start_worker: WorkerFactory) -> WorkerProcess:
    return start_worker(concurrency=1, EXPORT_DEADLINE_SECONDS=str(DEADLINE_SECONDS))


def test_failed_job_is_listed_and_rerun_to_completion(
    short_deadline_worker: WorkerProcess,
    client: Celery,
    sandbox: SandboxProcess,
    store: JobStore,
    s3: Any,
) -> None:
    sandbox.add_faults({"endpoint": "create_export", "activity_outcome": "cancelled", "times": 1})
    job_id = f"dead-{uuid.uuid4().hex[:8]}"
    with pytest.raises(Exception) as caught:
        enqueue(client, export={"status": "active"}, job_id=job_id).get(timeout=RESULT_TIMEOUT)
    assert type(caught.value).__name__ == "ActivityFailed"

    # Celery stores the failure before it calls on_failure, which writes the dead letter.
    wait_until(
        lambda: job_id in {letter["job_id"] for letter in list_failed(store)},
        what="the dead letter",
    )
    letters = {letter["job_id"]: letter for letter in list_failed(store)}
    letter = letters[job_id]
    assert letter["error_type"] == "ActivityFailed"
    assert "cancelled" in letter["error_message"]
    assert letter["failed_step"] == "contact_exports.poll_activity"
    assert float(letter["finished_at"]) >= float(letter["created_at"])
    assert "kwargs" not in letter

    summary = rerun(store, client, job_id).get(timeout=RESULT_TIMEOUT)
    assert summary["job_id"] == job_id
    assert job_id not in {letter["job_id"] for letter in list_failed(store)}
    assert store.record(job_id)["reruns"] == "1"
    assert_stored_once(s3, sandbox, summary)


def test_past_the_deadline_the_job_times_out_and_leaves_nothing_open(
    short_deadline_worker: WorkerProcess,
    client: Celery,
    sandbox: SandboxProcess,
    store: JobStore,
    s3: Any,
) -> None:
    sandbox.set_processing_seconds(3.0 * DEADLINE_SECONDS)
    job_id = f"late-{uuid.uuid4().hex[:8]}"
    key = f"late/{job_id}.csv"
    result = enqueue(client, export={}, job_id=job_id, destination={"key": key})
    with pytest.raises(Exception) as caught:
        result.get(timeout=RESULT_TIMEOUT)
    assert type(caught.value).__name__ == "ExportTimedOut"
    record = store.record(job_id)
    assert record["state"] == "failed"
    assert record["error_type"] == "ExportTimedOut"
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount", 0) == 0
    assert open_uploads(s3, BUCKET) == []

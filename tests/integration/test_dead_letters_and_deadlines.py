"""Jobs that fail for good are kept and can be rerun; deadlines close jobs cleanly.

The steps run in this process on real Redis, rclone S3 and the sandbox.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from contact_exports_client.client import EXPORT_TASK
from sandbox.testing import SandboxProcess
from tests.integration.chain import Outbox, run_export
from tests.integration.conftest import BUCKET, ServicesFactory
from tests.integration.helpers import assert_stored_once, open_uploads
from workers.exceptions import ActivityFailed, ExportTimedOut
from workers.export.deadletters import list_failed, rerun
from workers.services import Services
from workers.state.jobs import JobStore

pytestmark = pytest.mark.integration


#: The shortest deadline the settings allow.
DEADLINE_SECONDS = 10
#: How much faster than real time the services' clock runs in the deadline test.
FAST = 20


def test_failed_job_is_listed_and_rerun_to_completion(
    services: Services, sandbox: SandboxProcess, store: JobStore, s3: Any
) -> None:
    sandbox.add_faults({"endpoint": "create_export", "activity_outcome": "cancelled", "times": 1})
    job_id = f"dead-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ActivityFailed) as caught:
        run_export(services, {"export": {"status": "active"}, "job_id": job_id})
    assert type(caught.value).__name__ == "ActivityFailed"

    letters = {letter["job_id"]: letter for letter in list_failed(store)}
    letter = letters[job_id]
    assert letter["error_type"] == "ActivityFailed"
    assert "cancelled" in letter["error_message"]
    assert letter["failed_step"] == "contact_exports.poll_activity"
    assert float(letter["finished_at"]) >= float(letter["created_at"])
    assert "kwargs" not in letter

    outbox = services.sender
    assert isinstance(outbox, Outbox)
    sent = rerun(store, outbox, job_id)
    assert outbox.take(EXPORT_TASK) == [sent]
    assert sent.kwargs == {"export": {"status": "active"}, "job_id": job_id}
    summary = run_export(services, sent.kwargs, result_id=sent.id)
    assert summary["job_id"] == job_id
    assert job_id not in {letter["job_id"] for letter in list_failed(store)}
    assert store.record(job_id)["reruns"] == "1"
    assert_stored_once(s3, sandbox, summary)


def test_past_the_deadline_the_job_times_out_and_leaves_nothing_open(
    make_services: ServicesFactory, sandbox: SandboxProcess, store: JobStore, s3: Any
) -> None:
    sandbox.set_processing_seconds(3.0 * DEADLINE_SECONDS)
    services = make_services(export_deadline_seconds=DEADLINE_SECONDS)
    began = time.time()
    services.clock = lambda: began + FAST * (time.time() - began)  # the deadline in 0.5 s
    job_id = f"late-{uuid.uuid4().hex[:8]}"
    key = f"late/{job_id}.csv"
    with pytest.raises(ExportTimedOut) as caught:
        run_export(services, {"export": {}, "job_id": job_id, "destination": {"key": key}})
    assert type(caught.value).__name__ == "ExportTimedOut"
    record = store.record(job_id)
    assert record["state"] == "failed"
    assert record["error_type"] == "ExportTimedOut"
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount", 0) == 0
    assert open_uploads(s3, BUCKET) == []

"""Exactly once when a message outlives the visibility timeout, or a whole worker dies.

Two real worker processes share one queue; the broker's visibility timeout is shortened so a
message held too long is handed to the other worker while the first still works on it.
"""

from __future__ import annotations

import os
import signal
import uuid
from typing import Any

import psutil
import pytest
from celery import Celery

from sandbox.testing import SandboxProcess
from tests.integration.conftest import WorkerFactory
from tests.integration.helpers import (
    RESULT_TIMEOUT,
    assert_stored_once,
    created_activities,
    enqueue,
    wait_for_log,
    wait_until,
)
from workers.state.jobs import JobStore

pytestmark = pytest.mark.integration

#: Short enough that a slow download outlives it several times over.
FAST_REDELIVERY = {
    "BROKER_VISIBILITY_TIMEOUT": "3",
    "BROKER_RESTORE_INTERVAL": "0.5",
    "POLL_MAX_SECONDS": "1",
    "RETRY_MAX_SECONDS": "1",
    "LEASE_TTL_SECONDS": "2",
}


#: Small exports go in one PUT; this worker uploads every export in parts, as large ones are.
IN_PARTS = {"S3_SINGLE_PUT_MAX_MIB": "0"}


def download_task_ids(log: str) -> set[str]:
    marker = "Task contact_exports.download_csv["
    return {
        line.split(marker, 1)[1].split("]", 1)[0] for line in log.splitlines() if marker in line
    }


def test_two_workers_racing_on_one_message_store_one_object(
    start_worker: WorkerFactory,
    client: Celery,
    sandbox: SandboxProcess,
    s3: Any,
    store: JobStore,
) -> None:
    first, second = start_worker.many(2, concurrency=1, **FAST_REDELIVERY)
    # About 6 s of body: the message is redelivered while the first download still runs.
    sandbox.add_faults({"endpoint": "get_results", "bytes_per_second": 200_000, "times": 1})
    before = created_activities(sandbox)
    job_id = f"race-{uuid.uuid4().hex[:8]}"
    summary = enqueue(client, export={}, job_id=job_id).get(timeout=RESULT_TIMEOUT)

    assert created_activities(sandbox)[len(before) :] == [summary["activity_id"]]
    assert_stored_once(s3, sandbox, summary)
    assert store.record(job_id)["attempts:download"] == "1"
    # The same download message reached both workers: the second stepped back.
    shared = download_task_ids(first.log()) & download_task_ids(second.log())
    assert shared, "the message was never redelivered; the race did not happen"
    first.leave()  # neither takes the next test's messages
    second.leave()


def test_a_whole_worker_killed_mid_download_is_recovered_by_another(
    start_worker: WorkerFactory,
    client: Celery,
    sandbox: SandboxProcess,
    s3: Any,
    store: JobStore,
) -> None:
    doomed = start_worker(concurrency=1, **FAST_REDELIVERY, **IN_PARTS)
    sandbox.add_faults({"endpoint": "get_results", "bytes_per_second": 150_000, "times": 1})
    before = created_activities(sandbox)
    job_id = f"node-{uuid.uuid4().hex[:8]}"
    result = enqueue(client, export={}, job_id=job_id)
    wait_until(lambda: store.uploads(job_id) != [], what="the download's multipart upload")
    dead_upload = store.uploads(job_id)[0]
    assert doomed.process is not None
    # The machine is gone: main process and pool die together, nothing is handed back.
    for process in [
        psutil.Process(doomed.process.pid),
        *psutil.Process(doomed.process.pid).children(),
    ]:
        process.send_signal(signal.SIGKILL)
    doomed.process.wait(timeout=10)
    survivor = start_worker(concurrency=1, **FAST_REDELIVERY, **IN_PARTS)

    summary = result.get(timeout=RESULT_TIMEOUT)
    assert created_activities(sandbox)[len(before) :] == [summary["activity_id"]]
    assert_stored_once(s3, sandbox, summary)  # also: no multipart upload left open
    assert dead_upload not in store.uploads(job_id)
    assert download_task_ids(survivor.log())
    survivor.leave()


def test_warm_shutdown_mid_download_finishes_the_export(
    start_worker: WorkerFactory,
    client: Celery,
    sandbox: SandboxProcess,
    s3: Any,
    store: JobStore,
) -> None:
    # In parts: an object stored by one PUT may be sealed at once (workers.s3.objectmeta
    # EncodingCheck), and this export must owe its seal when the worker leaves.
    leaving = start_worker(concurrency=1, **IN_PARTS)
    sandbox.add_faults({"endpoint": "get_results", "bytes_per_second": 400_000, "times": 1})
    job_id = f"sigterm-{uuid.uuid4().hex[:8]}"
    result = enqueue(client, export={}, job_id=job_id)
    wait_for_log(leaving, f"job {job_id}: results answered")
    assert leaving.process is not None
    os.kill(leaving.process.pid, signal.SIGTERM)
    assert leaving.process.wait(timeout=60) == 0
    summary = result.get(timeout=RESULT_TIMEOUT)
    # The seal the export owes was queued as the worker left; the next worker to start runs it.
    assert "seal" in store.record(job_id)
    start_worker(concurrency=1, **IN_PARTS)
    assert_stored_once(s3, sandbox, summary)
    assert store.record(job_id)["attempts:download"] == "1"

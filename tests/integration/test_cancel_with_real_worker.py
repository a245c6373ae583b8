"""``contact_exports.cancel`` on a real ``celery worker``: a waiting export stops at once and a
downloading one stores nothing; the caller's result fails as ``ExportCancelled``. A finished or
unknown job is left as it is, and cancelling twice is harmless. The command line says the same.
The client helper's cancel is answered by the worker's remote control, even while every slot is
busy and exports are queued; the task by name still works.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from typer.testing import CliRunner

from contact_exports_cli.connections import close_app
from contact_exports_cli.main import app as cli
from contact_exports_client import cancel_export, make_app, submit_export, wait
from contact_exports_client.client import CANCEL_TASK, QUEUE
from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess
from tests.integration.conftest import BUCKET, WorkerFactory
from tests.integration.helpers import RESULT_TIMEOUT, open_uploads, wait_until
from workers.state.jobs import JobStore

pytestmark = pytest.mark.integration

#: A cancelled caller hears within this many seconds (it is told by the cancel itself).
AT_ONCE = 5.0


@pytest.fixture(scope="module")
def cancel_worker(start_worker: WorkerFactory) -> WorkerProcess:
    # Short leases: a download in progress finds its lease gone within half a second.
    return start_worker(concurrency=2, LEASE_TTL_SECONDS="1.5", S3_SINGLE_PUT_MAX_MIB="0")


@pytest.fixture
def caller(redis_url: str) -> Iterator[Celery]:
    app = make_app(redis_url, redis_url)
    yield app
    close_app(app)


def new_job(tag: str) -> str:
    return f"cancel-{tag}-{uuid.uuid4().hex[:8]}"


def logged(worker: WorkerProcess, job_id: str, text: str) -> bool:
    """Whether one line of the worker's log names the job and says ``text``."""
    return any(job_id in line and text in line for line in worker.log().splitlines())


def nothing_stored(s3: Any, job_id: str) -> bool:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"contact-exports/default/{job_id}")
    return not listed.get("Contents") and not [
        u for u in open_uploads(s3, BUCKET) if job_id in u["Key"]
    ]


def test_a_waiting_export_is_cancelled_at_once(
    cancel_worker: WorkerProcess,
    caller: Celery,
    sandbox: SandboxProcess,
    store: JobStore,
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBS_REDIS_URL", caller.conf.result_backend)
    sandbox.set_processing_seconds(30.0)
    job_id = new_job("waiting")
    result = submit_export({"fields": ["email_address"]}, job_id=job_id, app=caller)
    wait_until(lambda: store.record(job_id).get("state") == "polling", what="the export polling")
    activity = store.record(job_id)["activity_id"]

    asked = time.monotonic()
    assert cancel_export(job_id, app=caller).get(timeout=RESULT_TIMEOUT) == {
        "job_id": job_id,
        "outcome": "cancelled",
    }
    with pytest.raises(Exception) as caught:
        wait(result, timeout=AT_ONCE)
    assert type(caught.value).__name__ == "ExportCancelled", caught.value
    assert time.monotonic() - asked < AT_ONCE
    assert store.record(job_id)["state"] == "cancelled"
    # Twice is harmless.
    again = cancel_export(job_id, app=caller).get(timeout=RESULT_TIMEOUT)
    assert again["outcome"] == "cancelled already"
    # The poll that was waiting wakes, sees the cancel and stops: no results are fetched.
    sandbox.set_processing_seconds(0.3)
    wait_until(
        lambda: logged(cancel_worker, job_id, "was cancelled"), what="the waiting poll to stop"
    )
    assert not sandbox.requests(endpoint="get_results", activity_id=activity)
    assert nothing_stored(s3, job_id)
    assert store.record(job_id)["state"] == "cancelled"  # not a dead letter


def test_a_downloading_export_stores_nothing(
    cancel_worker: WorkerProcess,
    caller: Celery,
    sandbox: SandboxProcess,
    store: JobStore,
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBS_REDIS_URL", caller.conf.result_backend)
    # About 3 s of body (1.1 MB): the cancel lands while it streams.
    sandbox.add_faults({"endpoint": "get_results", "bytes_per_second": 400_000, "times": 1})
    job_id = new_job("downloading")
    result = submit_export({}, job_id=job_id, app=caller)
    wait_until(lambda: store.record(job_id).get("attempts:download") == "1", what="the download")
    found = cancel_export(job_id, app=caller).get(timeout=RESULT_TIMEOUT)
    assert found["outcome"] == "cancelled"
    with pytest.raises(Exception) as caught:
        wait(result, timeout=AT_ONCE)
    assert type(caught.value).__name__ == "ExportCancelled"
    # The download finds its lease gone (at its next progress report, or before its upload
    # completes) and aborts its upload; nothing is stored.
    wait_until(lambda: logged(cancel_worker, job_id, "was cancelled"), what="the download to stop")
    wait_until(lambda: nothing_stored(s3, job_id), what="no object and no open upload")
    assert store.record(job_id)["state"] == "cancelled"


def test_a_finished_or_unknown_job_is_left_as_it_is(
    cancel_worker: WorkerProcess, caller: Celery, redis_url: str
) -> None:
    job_id = new_job("finished")
    summary = wait(submit_export({}, job_id=job_id, app=caller), timeout=RESULT_TIMEOUT)
    assert cancel_export(job_id, app=caller).get(timeout=RESULT_TIMEOUT)["outcome"] == "completed"
    assert wait(submit_export({}, job_id=job_id, app=caller), timeout=AT_ONCE) == summary
    unknown = f"never-{uuid.uuid4().hex[:8]}"
    assert cancel_export(unknown, app=caller).get(timeout=RESULT_TIMEOUT)["outcome"] == "unknown"
    # The task by name, as a caller without the helper sends it, says the same.
    by_name = caller.send_task(CANCEL_TASK, kwargs={"job_id": job_id}, queue=QUEUE)
    assert by_name.get(timeout=RESULT_TIMEOUT) == {"job_id": job_id, "outcome": "completed"}

    env = {"CELERY_BROKER_URL": redis_url, "CELERY_RESULT_BACKEND": redis_url}
    said = CliRunner().invoke(cli, ["cancel", job_id], env=env)
    assert said.exit_code == 0, said.output
    assert f"job {job_id} had completed; nothing changed" in said.stdout
    said = CliRunner().invoke(cli, ["cancel", unknown, "--json"], env=env)
    assert said.exit_code == 4, said.output
    assert json.loads(said.stdout) == {"job_id": unknown, "outcome": "unknown"}


def test_a_cancel_without_a_valid_job_id_is_refused(
    cancel_worker: WorkerProcess, caller: Celery
) -> None:
    for kwargs in ({}, {"job_id": "../etc"}, {"job_id": "j", "extra": 1}):
        answer = caller.send_task(CANCEL_TASK, kwargs=kwargs, queue=QUEUE)
        with pytest.raises(Exception) as caught:
            answer.get(timeout=RESULT_TIMEOUT)
        assert type(caught.value).__name__ == "InvalidExportRequest", kwargs
        assert "invalid cancel request" in str(caught.value)


def test_a_cancel_does_not_wait_for_busy_slots_or_queued_exports(
    cancel_worker: WorkerProcess,
    caller: Celery,
    sandbox: SandboxProcess,
    store: JobStore,
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBS_REDIS_URL", caller.conf.result_backend)
    # Both slots stream about 3 s of body each while a third export waits in the queue.
    sandbox.add_faults({"endpoint": "get_results", "bytes_per_second": 400_000, "times": 2})
    busy = [new_job(f"busy{n}") for n in range(2)]
    results = [submit_export({}, job_id=job_id, app=caller) for job_id in busy]
    for job_id in busy:
        wait_until(lambda j=job_id: store.record(j).get("attempts:download") == "1", what=job_id)
    queued = new_job("queued")
    waiting = submit_export({}, job_id=queued, app=caller)

    assert cancel_export(queued, app=caller).get(timeout=RESULT_TIMEOUT)["outcome"] == "cancelled"
    # Answered while both slots still stream and before the queued export was ever taken up.
    assert [store.record(job_id)["state"] for job_id in busy] == ["downloading"] * 2
    with pytest.raises(Exception) as caught:
        wait(waiting, timeout=AT_ONCE)
    assert type(caught.value).__name__ == "ExportCancelled"
    for result in results:
        wait(result, timeout=RESULT_TIMEOUT)
    wait_until(lambda: logged(cancel_worker, queued, "was cancelled"), what="the queued one")
    assert "activity_id" not in store.record(queued)  # it never created an activity
    assert nothing_stored(s3, queued)

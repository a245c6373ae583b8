"""Exactly-once effects under failure, with real worker processes killed mid-step.

After each failure: exactly one activity created in the sandbox for the job, exactly one object
with the right sha256, and no open multipart upload. (The same job sent twice at once, and a
create whose answer was lost, are in test_exports_with_real_services.py: no process dies there.)
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from celery import Celery

from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess
from tests.integration.conftest import WorkerFactory
from tests.integration.helpers import (
    RESULT_TIMEOUT,
    assert_stored_once,
    created_activities,
    enqueue,
    kill_pool_process,
    wait_for_log,
)
from workers.state.jobs import JobStore

pytestmark = pytest.mark.integration

LEASE_TTL = "2"


@pytest.fixture(scope="module")
def killable(start_worker: WorkerFactory) -> WorkerProcess:
    """A worker of its own (others must not pick up the redelivered messages)."""
    return start_worker(concurrency=1, LEASE_TTL_SECONDS=LEASE_TTL)


def test_pool_killed_during_create_posts_once(
    killable: WorkerProcess, client: Celery, sandbox: SandboxProcess, s3: Any
) -> None:
    sandbox.add_faults({"endpoint": "create_export", "delay_first_byte": 1.5, "times": 1})
    before = created_activities(sandbox)
    job_id = f"kill-create-{uuid.uuid4().hex[:8]}"
    result = enqueue(client, export={"fields": ["email_address"]}, job_id=job_id)
    wait_for_log(killable, f"job {job_id}: creating the export activity")
    kill_pool_process(killable)
    summary = result.get(timeout=RESULT_TIMEOUT)
    new = created_activities(sandbox)[len(before) :]
    assert new == [summary["activity_id"]]
    assert_stored_once(s3, sandbox, summary)


def test_pool_killed_during_poll_completes_once(
    killable: WorkerProcess, client: Celery, sandbox: SandboxProcess, s3: Any
) -> None:
    sandbox.add_faults({"endpoint": "get_activity", "delay_first_byte": 1.5, "times": 1})
    before = created_activities(sandbox)
    job_id = f"kill-poll-{uuid.uuid4().hex[:8]}"
    result = enqueue(client, export={"fields": ["first_name"]}, job_id=job_id)
    wait_for_log(killable, f"job {job_id}: polling activity")
    kill_pool_process(killable)
    summary = result.get(timeout=RESULT_TIMEOUT)
    assert created_activities(sandbox)[len(before) :] == [summary["activity_id"]]
    assert_stored_once(s3, sandbox, summary)


def test_pool_killed_during_a_streaming_put_leaves_one_object(
    killable: WorkerProcess,
    client: Celery,
    sandbox: SandboxProcess,
    s3: Any,
    store: JobStore,
) -> None:
    """The export is small, so it goes in one PUT; the kill drops that PUT's connection with
    its content unfinished, which stores nothing. (A killed multipart upload, and its sweep, is
    in test_exactly_once_across_workers.py.)"""
    sandbox.add_faults({"endpoint": "get_results", "bytes_per_second": 200_000, "times": 1})
    before = created_activities(sandbox)
    job_id = f"kill-download-{uuid.uuid4().hex[:8]}"
    result = enqueue(client, export={}, job_id=job_id)
    wait_for_log(killable, f"job {job_id}: results answered")
    assert "storing them in one PUT" in killable.log()
    kill_pool_process(killable)
    summary = result.get(timeout=RESULT_TIMEOUT)
    assert created_activities(sandbox)[len(before) :] == [summary["activity_id"]]
    assert_stored_once(s3, sandbox, summary)
    assert int(store.record(job_id)["attempts:download"]) == 2

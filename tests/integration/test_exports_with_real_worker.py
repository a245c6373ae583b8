"""The export chain end to end: real Redis, rclone S3, the sandbox and a celery worker process.

The worker has one slot (concurrency 1), so every export that completes here while another is
waiting on its activity shows that polling holds no slot.
"""

from __future__ import annotations

import csv
import hashlib
import io
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery
from celery.result import AsyncResult

from contact_exports_client import snapshot
from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess
from tests.integration.conftest import BUCKET
from tests.integration.helpers import open_uploads

pytestmark = pytest.mark.integration

RESULT_TIMEOUT = 90


def enqueue(client: Celery, **kwargs: Any) -> AsyncResult:
    return client.send_task("contact_exports.export", kwargs=kwargs, queue="contact_exports")


def states_until_ready(result: AsyncResult, timeout: float = RESULT_TIMEOUT) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while not result.ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"export not finished; states seen {seen}")
        if not seen or seen[-1] != result.state:
            seen.append(result.state)
        time.sleep(0.05)
    return seen


def test_all_contacts_land_in_s3_byte_for_byte(
    worker: WorkerProcess,
    client: Celery,
    sandbox: SandboxProcess,
    object_bytes: Callable[[str, str], bytes],
) -> None:
    result = enqueue(client, export={}, job_id=f"all-{uuid.uuid4().hex[:8]}")
    summary = result.get(timeout=RESULT_TIMEOUT)

    served = sandbox.export_info(sandbox_file_id(sandbox, summary["activity_id"]))
    stored = object_bytes(summary["bucket"], summary["key"])
    assert hashlib.sha256(stored).hexdigest() == summary["sha256"] == served["sha256"]
    assert summary["bytes"] == len(stored) == served["bytes"]
    assert summary["rows"] == served["rows"] == sandbox.catalog()["contacts"]
    assert summary["columns"] == served["columns"]
    assert summary["uri"] == f"s3://{BUCKET}/{summary['key']}"
    assert summary["job_id"] in summary["key"]
    assert summary["account"] == "default"
    assert summary["started_at"] <= summary["finished_at"]


def sandbox_file_id(sandbox: SandboxProcess, activity_id: str) -> str:
    """The results file id the sandbox gave this activity (it differs from the activity id)."""
    for entry in sandbox.requests(endpoint="get_results"):
        if entry.get("activity_id") == activity_id and entry.get("file_export_id"):
            return str(entry["file_export_id"])
    raise AssertionError(f"no results download logged for activity {activity_id}")


def test_lists_with_fields_and_status(
    worker: WorkerProcess,
    client: Celery,
    sandbox: SandboxProcess,
    object_bytes: Callable[[str, str], bytes],
) -> None:
    lists = sandbox.catalog()["lists"][:2]
    fields = ["email_address", "first_name", "last_name", "updated_at", "favourite_colour"]
    result = enqueue(client, export={"list_ids": lists, "fields": fields, "status": "active"})
    summary = result.get(timeout=RESULT_TIMEOUT)

    assert summary["unknown_fields"] == ["favourite_colour"]
    assert len(summary["columns"]) == 4
    text = object_bytes(summary["bucket"], summary["key"]).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == summary["columns"]
    assert len(rows) - 1 == summary["rows"] > 0
    assert summary["rows"] < sandbox.catalog()["contacts"]


def test_contact_ids_in_request_order(
    worker: WorkerProcess,
    client: Celery,
    sandbox: SandboxProcess,
    object_bytes: Callable[[str, str], bytes],
) -> None:
    wanted = list(reversed(sandbox.catalog()["sample_contact_ids"][:5]))
    result = enqueue(client, export={"contact_ids": wanted, "fields": ["email_address"]})
    summary = result.get(timeout=RESULT_TIMEOUT)
    assert summary["rows"] == 5
    posted = sandbox.requests(endpoint="create_export", activity_id=summary["activity_id"])
    assert len(posted) == 1


def test_one_slot_carries_two_overlapping_exports(
    worker: WorkerProcess, client: Celery, sandbox: SandboxProcess
) -> None:
    sandbox.set_processing_seconds(3.0)
    first = enqueue(client, export={"fields": ["email_address"]})
    second = enqueue(client, export={"fields": ["first_name"]})
    one = first.get(timeout=RESULT_TIMEOUT)
    two = second.get(timeout=RESULT_TIMEOUT)

    created = {e["activity_id"]: e["ts"] for e in sandbox.requests(endpoint="create_export")}
    downloads = {e["activity_id"]: e["ts"] for e in sandbox.requests(endpoint="get_results")}
    # Both activities existed at once: each was created before the other was downloaded.
    assert created[two["activity_id"]] < downloads[one["activity_id"]]
    assert created[one["activity_id"]] < downloads[two["activity_id"]]


def test_progress_is_reported_on_the_callers_id(
    worker: WorkerProcess, client: Celery, sandbox: SandboxProcess
) -> None:
    sandbox.set_processing_seconds(2.0)
    result = enqueue(client, export={"status": "active"})
    seen_info: list[dict[str, Any]] = []
    deadline = time.monotonic() + RESULT_TIMEOUT
    while not result.ready() and time.monotonic() < deadline:
        state, info = snapshot(result)
        if state == "PROGRESS" and isinstance(info, dict):
            seen_info.append(dict(info))
        time.sleep(0.05)
    summary = result.get(timeout=1)
    stages = {info["stage"] for info in seen_info}
    assert "polling" in stages
    assert any(info["activity_id"] == summary["activity_id"] for info in seen_info)
    assert all(0 <= info["percent_done"] <= 100 for info in seen_info)


def test_failed_activity_surfaces_activity_failed_with_its_errors(
    worker: WorkerProcess, client: Celery, sandbox: SandboxProcess
) -> None:
    missing = sandbox.catalog()["unknown_contact_id"]
    result = enqueue(client, export={"contact_ids": [missing]})
    with pytest.raises(Exception) as caught:
        result.get(timeout=RESULT_TIMEOUT)
    assert type(caught.value).__name__ == "ActivityFailed"
    assert missing in str(caught.value)
    assert result.state == "FAILURE"


def test_invalid_request_fails_before_any_api_call(
    worker: WorkerProcess, client: Celery, sandbox: SandboxProcess
) -> None:
    before = len(sandbox.requests())
    result = enqueue(client, export={"contact_ids": ["nope"], "list_ids": []})
    with pytest.raises(Exception) as caught:
        result.get(timeout=RESULT_TIMEOUT)
    assert type(caught.value).__name__ == "InvalidExportRequest"
    assert "contact_ids" in str(caught.value)
    assert len(sandbox.requests()) == before


def test_body_cut_short_every_time_leaves_no_object_and_no_open_upload(
    worker: WorkerProcess, client: Celery, sandbox: SandboxProcess, s3: Any
) -> None:
    sandbox.add_faults({"endpoint": "get_results", "drop_after_bytes": 1000, "times": 100})
    key = f"cut/{uuid.uuid4().hex}.csv"
    result = enqueue(client, export={}, destination={"key": key})
    with pytest.raises(Exception) as caught:
        result.get(timeout=RESULT_TIMEOUT)
    assert type(caught.value).__name__ == "ConstantContactError"
    assert "gave up" in str(caught.value)
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="cut/").get("Contents", [])
    assert [o["Key"] for o in listed if o["Key"] == key] == []
    assert open_uploads(s3, BUCKET) == []


def test_body_cut_short_once_is_retried_to_an_intact_object(
    worker: WorkerProcess,
    client: Celery,
    sandbox: SandboxProcess,
    s3: Any,
    object_bytes: Callable[[str, str], bytes],
) -> None:
    sandbox.add_faults({"endpoint": "get_results", "drop_after_bytes": 5000, "times": 1})
    summary = enqueue(client, export={}).get(timeout=RESULT_TIMEOUT)
    stored = object_bytes(summary["bucket"], summary["key"])
    assert hashlib.sha256(stored).hexdigest() == summary["sha256"]
    assert summary["rows"] == sandbox.catalog()["contacts"]
    assert open_uploads(s3, BUCKET) == []


def test_same_job_id_twice_gives_one_activity_and_the_same_result(
    worker: WorkerProcess, client: Celery, sandbox: SandboxProcess
) -> None:
    job_id = f"twice-{uuid.uuid4().hex[:8]}"
    first = enqueue(client, export={}, job_id=job_id).get(timeout=RESULT_TIMEOUT)
    second = enqueue(client, export={}, job_id=job_id).get(timeout=RESULT_TIMEOUT)
    assert first == second
    posts = [
        e
        for e in sandbox.requests(endpoint="create_export")
        if e["activity_id"] == first["activity_id"]
    ]
    assert len(posts) == 1


def contact_id(sample: str, index: int) -> str:
    """The sandbox's contact ids end in the contact's index as 12 hex digits."""
    return f"{sample[:-12]}{index:012x}"


def test_more_than_500_contact_ids_become_one_csv_in_request_order(
    worker: WorkerProcess,
    client: Celery,
    sandbox: SandboxProcess,
    object_bytes: Callable[[str, str], bytes],
) -> None:
    sample = sandbox.catalog()["sample_contact_ids"][0]
    order = list(range(1199, -1, -1))  # 1,200 ids, newest first: three activities
    wanted = [contact_id(sample, i) for i in order]
    result = enqueue(client, export={"contact_ids": wanted, "fields": ["email_address"]})
    summary = result.get(timeout=RESULT_TIMEOUT)

    assert summary["activities"] == 3
    assert summary["rows"] == 1200
    text = object_bytes(summary["bucket"], summary["key"]).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == summary["columns"] == ["Email address - other"]
    assert all(row != rows[0] for row in rows[1:]), "only one header"
    indexes = [int(row[0].split("@")[0].rsplit(".", 1)[1], 16) for row in rows[1:]]
    assert indexes == order

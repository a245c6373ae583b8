"""The caller's view of the contract through a real celery worker process: the result dict,
PROGRESS on the id the caller holds, failures by their contract names, and that id holding
nothing but the contract. Real Redis, rclone S3 and the sandbox.

The worker has one slot (concurrency 1), so every export that completes here while another is
waiting on its activity shows that polling holds no slot. What the export does with its data is
tested in-process, step by step (test_exports_with_real_services.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow.parquet as pq
import pytest
import redis
from celery import Celery
from celery.result import AsyncResult

from contact_exports_client import snapshot
from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess
from tests.integration.conftest import BUCKET
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.integration

RESULT_TIMEOUT = 90


def enqueue(client: Celery, **kwargs: Any) -> AsyncResult:
    return client.send_task("contact_exports.export", kwargs=kwargs, queue="contact_exports")


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


def test_a_key_template_partitions_by_the_jobs_utc_start(
    worker: WorkerProcess, client: Celery, object_bytes: Callable[[str, str], bytes]
) -> None:
    job_id = f"dated-{uuid.uuid4().hex[:8]}"
    result = enqueue(
        client, export={}, job_id=job_id, destination={"key": "contacts/dt={date}/{job_id}.{ext}"}
    )
    summary = result.get(timeout=RESULT_TIMEOUT)
    day = summary["started_at"][:10]  # the job's UTC start, as the result gives it
    assert summary["key"] == f"contacts/dt={day}/{job_id}.csv"
    assert len(object_bytes(summary["bucket"], summary["key"])) == summary["bytes"]


def test_a_parquet_export_and_its_manifest_through_the_worker(
    worker: WorkerProcess, client: Celery, object_bytes: Callable[[str, str], bytes]
) -> None:
    job_id = f"parquet-{uuid.uuid4().hex[:8]}"
    result = enqueue(
        client,
        export={},
        job_id=job_id,
        format="parquet",
        destination={"key": "lake/{job_id}.{ext}"},
    )
    summary = result.get(timeout=RESULT_TIMEOUT)
    assert summary["key"] == f"lake/{job_id}.parquet"
    stored = object_bytes(summary["bucket"], summary["key"])
    assert hashlib.sha256(stored).hexdigest() == summary["sha256"]
    assert len(stored) == summary["bytes"]
    table = pq.read_table(io.BytesIO(stored))
    assert table.num_rows == summary["rows"] > 0 and table.column_names == summary["columns"]
    manifest = json.loads(object_bytes(summary["bucket"], summary["key"] + ".manifest.json"))
    assert manifest["format"] == "parquet" and manifest["sha256"] == summary["sha256"]
    assert {c["name"]: c["type"] for c in manifest["columns"]}["updated_at"] == "timestamp"


def test_an_unknown_placeholder_is_refused_before_any_api_call(
    worker: WorkerProcess, client: Celery, sandbox: SandboxProcess
) -> None:
    before = len(sandbox.requests())
    result = enqueue(client, export={}, destination={"key": "contacts/{region}/{job_id}.csv"})
    with pytest.raises(Exception) as caught:
        result.get(timeout=RESULT_TIMEOUT)
    assert type(caught.value).__name__ == "InvalidExportRequest"
    assert "unknown placeholder {region}" in str(caught.value)
    assert len(sandbox.requests()) == before


def sandbox_file_id(sandbox: SandboxProcess, activity_id: str) -> str:
    """The results file id the sandbox gave this activity (it differs from the activity id)."""
    for entry in sandbox.requests(endpoint="get_results"):
        if entry.get("activity_id") == activity_id and entry.get("file_export_id"):
            return str(entry["file_export_id"])
    raise AssertionError(f"no results download logged for activity {activity_id}")


def test_one_slot_carries_two_overlapping_exports(
    worker: WorkerProcess, client: Celery, sandbox: SandboxProcess
) -> None:
    sandbox.set_processing_seconds(1.5)
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
    sandbox.set_processing_seconds(1.0)
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


def test_a_bucket_the_workers_may_not_write_to_is_refused_before_any_api_call(
    worker: WorkerProcess, client: Celery, sandbox: SandboxProcess, s3: Any
) -> None:
    """S3_ALLOWED_BUCKETS is unset for this worker: S3_BUCKET alone may be written. The other
    bucket exists and the worker's credentials reach it; the job is still refused."""
    other = "not-for-exports"
    s3.create_bucket(Bucket=other)
    before = len(sandbox.requests())
    result = enqueue(client, export={}, destination={"bucket": other, "key": "x.csv"})
    with pytest.raises(Exception) as caught:
        result.get(timeout=RESULT_TIMEOUT)
    assert type(caught.value).__name__ == "InvalidExportRequest"
    assert "not a bucket this service may write to" in str(caught.value)
    assert len(sandbox.requests()) == before
    assert s3.list_objects_v2(Bucket=other).get("KeyCount", 0) == 0


#: All a result id holds with ``result_extended`` off (docs/contract.md §6).
CONTRACT_META = {"status", "result", "traceback", "children", "date_done", "task_id"}
#: Celery's bookkeeping beside it: the id of the chain's previous step, written with the last
#: step's state (docs/contract.md §6 names it as not part of the contract).
BOOKKEEPING = {"parent_id"}
#: What extended results would add: the task and the internal job record it was given.
EXTENDED_META = {"name", "args", "kwargs", "worker", "queue", "retries"}
#: Fields of the job record that travels between the steps; a caller never sees them.
JOB_FIELDS = ("requests", "deadline", "result_id", "self_href", "poll_at")


def raw_meta(client: redis.Redis, task_id: str) -> tuple[dict[str, Any], str] | None:
    """What Redis holds at the caller's id, parsed and as stored."""
    raw = client.get(f"celery-task-meta-{task_id}")
    if raw is None:
        return None
    text = raw.decode()
    return json.loads(text), text


def assert_contract_only(meta: dict[str, Any], text: str) -> None:
    assert set(meta) <= CONTRACT_META | BOOKKEEPING, set(meta) - CONTRACT_META - BOOKKEEPING
    assert not set(meta) & EXTENDED_META
    assert isinstance(meta.get("parent_id", ""), str)  # an id, nothing more
    for name in JOB_FIELDS:
        assert f'"{name}"' not in text, f"{name} of the job record is in the caller's id"


def test_the_callers_id_holds_the_contract_and_nothing_of_the_job(
    worker: WorkerProcess, client: Celery, sandbox: SandboxProcess, redis_url: str
) -> None:
    sandbox.set_processing_seconds(1.0)  # long enough to read a PROGRESS while it polls
    job_id = f"meta-{uuid.uuid4().hex[:8]}"
    result = enqueue(client, export={"fields": ["email_address"]}, job_id=job_id)
    polling: list[tuple[dict[str, Any], str]] = []
    with redis.Redis.from_url(redis_url) as raw:

        def caught_polling() -> bool:
            found = raw_meta(raw, result.id)
            meta = found[0] if found is not None else {}
            if meta.get("status") == "PROGRESS" and meta["result"]["stage"] == "polling":
                polling.append(found)
            return bool(polling)

        wait_until(caught_polling, RESULT_TIMEOUT, "a PROGRESS while polling")
        summary = result.get(timeout=RESULT_TIMEOUT)
        final = raw_meta(raw, result.id)

    progress, progress_text = polling[0]
    assert progress["result"]["job_id"] == job_id
    assert_contract_only(progress, progress_text)
    assert final is not None
    meta, text = final
    assert (meta["status"], meta["result"], meta["task_id"]) == ("SUCCESS", summary, result.id)
    assert_contract_only(meta, text)
    # Nor one step away: the steps before the last store no result, so the job record they
    # hand on is not behind the parent_id (at most the record of a retry, or of a failure).
    with redis.Redis.from_url(redis_url) as raw:
        parent = raw_meta(raw, meta["parent_id"]) if "parent_id" in meta else None
    if parent is not None:
        assert parent[0]["status"] != "SUCCESS"
        assert_contract_only(*parent)


def test_a_download_that_waits_to_try_again_keeps_the_callers_progress(
    worker: WorkerProcess, client: Celery, sandbox: SandboxProcess, redis_url: str
) -> None:
    """Every state stored at the caller's id is announced on its channel (Celery's Redis
    backend publishes each one): none is RETRY, which would hide the progress without info."""
    # The body breaks off once: the download step comes back by the retry policy.
    sandbox.add_faults({"endpoint": "get_results", "drop_after_bytes": 5000, "times": 1})
    job_id = f"again-{uuid.uuid4().hex[:8]}"
    with redis.Redis.from_url(redis_url) as raw, raw.pubsub() as channel:
        channel.subscribe(f"celery-task-meta-{job_id}")
        summary = client.send_task(
            "contact_exports.export", kwargs={"export": {}}, queue="contact_exports", task_id=job_id
        ).get(timeout=RESULT_TIMEOUT)
        states = []
        while (message := channel.get_message(timeout=1.0)) is not None:
            if message["type"] == "message":
                states.append(json.loads(message["data"])["status"])
    assert summary["job_id"] == job_id
    assert len(sandbox.requests(endpoint="get_results", activity_id=summary["activity_id"])) == 2
    assert "RETRY" not in states, states
    assert states[-1] == "SUCCESS" and "PROGRESS" in states

"""Shared steps of the integration tests: enqueue like an app, watch a worker, check effects."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import jsonschema  # type: ignore[import-untyped]  # no stubs among the dev dependencies
import psutil
import redis
from celery import Celery
from celery.result import AsyncResult

from contact_exports_client.keys import OWNED_ACTIVITIES_KEY
from devstack.s3server import ACCESS_KEY, SECRET_KEY
from devstack.worker import WorkerProcess, stop_all
from sandbox.testing import SandboxProcess
from workers.constant_contact.client import ActivityState, ConstantContactClient
from workers.export.download import stream_to_s3
from workers.export.job import ActivityRef, Job
from workers.export.manifest import manifest_key
from workers.export.request import SCHEMA_DIR
from workers.s3.objectmeta import EncodingCheck
from workers.s3.storage import StoredObject, make_s3_client
from workers.settings import Settings
from workers.state.jobs import JobStore
from workers.transfer import TransferSummary

MANIFEST_SCHEMA = json.loads((SCHEMA_DIR / "export-manifest.schema.json").read_text())

#: Seconds an export in these tests may take before the test fails.
RESULT_TIMEOUT = 90.0
QUEUE = "contact_exports"


def enqueue(client: Celery, **kwargs: Any) -> AsyncResult[Any]:
    return client.send_task("contact_exports.export", kwargs=kwargs, queue=QUEUE)


def run_as_app(
    command: list[str], redis_url: str, *, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as another application would: an environment holding only PATH and the
    broker and result backend URLs, so nothing of the workers' configuration can help it."""
    return subprocess.run(
        command,
        env={
            "PATH": os.environ["PATH"],
            "CELERY_BROKER_URL": redis_url,
            "CELERY_RESULT_BACKEND": redis_url,
        },
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=RESULT_TIMEOUT + 30,
    )


def wait_until(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def wait_for_log(worker: WorkerProcess, text: str, timeout: float = 30.0) -> None:
    wait_until(lambda: text in worker.log(), timeout, f"{text!r} in the worker log")


#: Seconds a worker with a fatal problem at start may take to exit (it imports Celery first).
EXIT_WITHIN = 20.0


def exits_at_start(env: dict[str, str], logs: Path, name: str) -> tuple[int, str, float]:
    """Start a worker that should refuse to run; its exit code, log and seconds to exit."""
    worker = WorkerProcess(env, logs / f"{name}.log", name=name)
    started = time.monotonic()
    worker.spawn()
    assert worker.process is not None
    try:
        code = worker.process.wait(timeout=EXIT_WITHIN)
    except Exception:
        stop_all([worker], timeout=5)
        raise AssertionError(f"the worker kept running; log:\n{worker.log()[-3000:]}") from None
    return code, worker.log(), time.monotonic() - started


def kill_pool_process(worker: WorkerProcess) -> int:
    """SIGKILL the prefork child that runs tasks, as the OOM killer would."""
    assert worker.process is not None
    children = psutil.Process(worker.process.pid).children()
    assert children, "the worker has no pool process"
    victim = children[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    return victim.pid


def created_activities(sandbox: SandboxProcess) -> list[str]:
    """Activity ids the sandbox really created, in order — also those whose answer was lost."""
    return [
        str(e["activity_id"])
        for e in sandbox.requests(endpoint="create_export")
        if e.get("activity_id")
    ]


def open_uploads(s3: Any, bucket: str) -> list[dict[str, Any]]:
    """Multipart uploads still open; rclone says NoSuchUpload for a bucket that never had one."""
    try:
        uploads: list[dict[str, Any]] = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    except s3.exceptions.NoSuchUpload:
        return []
    return uploads


def metadata_of(s3: Any, summary: dict[str, Any]) -> dict[str, str]:
    """The stored object's metadata, names lowercased (rclone capitalises them)."""
    head = s3.head_object(Bucket=summary["bucket"], Key=summary["key"])
    return {name.lower(): value for name, value in head["Metadata"].items()}


def assert_stored_once(s3: Any, sandbox: SandboxProcess, summary: dict[str, Any]) -> None:
    """Exactly one object at the job's key, byte-for-byte the sandbox's file, sealed with its
    job, activity and sha256, and its manifest beside it; no upload left open."""
    listed = s3.list_objects_v2(Bucket=summary["bucket"], Prefix=summary["key"])
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert keys == [summary["key"], manifest_key(summary["key"])]
    assert_manifest_describes(s3, summary)
    wait_until(lambda: "sha256" in metadata_of(s3, summary), what="the seal task to run")
    stored = s3.get_object(Bucket=summary["bucket"], Key=summary["key"])
    assert hashlib.sha256(stored["Body"].read()).hexdigest() == summary["sha256"]
    metadata = {name.lower(): value for name, value in stored["Metadata"].items()}
    assert metadata["job-id"] == summary["job_id"]
    assert metadata["activity-id"].split(",")[0] == summary["activity_id"]
    assert (metadata["sha256"], metadata["bytes"]) == (summary["sha256"], str(summary["bytes"]))
    assert metadata["rows"] == str(summary["rows"])
    file_ids = {
        e["file_export_id"]
        for e in sandbox.requests(endpoint="get_results", activity_id=summary["activity_id"])
        if e.get("file_export_id")
    }
    assert len(file_ids) == 1
    assert sandbox.export_info(file_ids.pop())["sha256"] == summary["sha256"]
    assert open_uploads(s3, summary["bucket"]) == []


def assert_manifest_describes(s3: Any, summary: dict[str, Any], export_format: str = "csv") -> None:
    """The manifest beside the object is valid by its schema and says what the result says."""
    assert summary["manifest"] == f"s3://{summary['bucket']}/{manifest_key(summary['key'])}"
    stored = s3.get_object(Bucket=summary["bucket"], Key=manifest_key(summary["key"]))
    assert stored["ContentType"] == "application/json"
    manifest = json.loads(stored["Body"].read())
    jsonschema.validate(manifest, MANIFEST_SCHEMA)  # the published schema
    same = ("job_id", "account", "bucket", "key", "bytes", "rows", "sha256", "started_at")
    assert {k: manifest[k] for k in same} == {k: summary[k] for k in same}
    assert [c["name"] for c in manifest["columns"]] == summary["columns"]
    assert manifest["activities"][0] == summary["activity_id"]
    assert manifest["format"] == export_format


def sent_headers(s3: Any, operation: str) -> list[dict[str, str]]:
    """The headers (names in lower case) of every ``operation`` request ``s3`` sends from now on."""
    seen: list[dict[str, str]] = []

    def record(request: Any, **_: Any) -> None:
        seen.append({k.lower(): _text(v) for k, v in request.headers.items()})

    s3.meta.events.register(f"before-send.s3.{operation}", record)
    return seen


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def completed_job(api: ConstantContactClient, owned: redis.Redis, bucket: str) -> Job:
    """A job whose one activity the sandbox has finished: what download_csv is handed. The
    activity is owned, as the create step records it, so no lost create takes it for its own."""
    activity = api.create_export({"fields": ["email_address", "first_name"]})
    owned.sadd(OWNED_ACTIVITIES_KEY, activity.activity_id)
    wait_until(
        lambda: api.get_activity(activity.self_href).state is ActivityState.COMPLETED,
        what="the sandbox to finish the activity",
    )
    done = api.get_activity(activity.self_href)
    job_id = str(uuid.uuid4())
    return Job(
        job_id=job_id,
        result_id=job_id,
        account="default",
        requests=[{}],
        bucket=bucket,
        key=f"downloading/{job_id}.csv",
        deadline=time.time() + 600,
        started_at="2026-11-26T00:00:00.000Z",
        activities=[
            ActivityRef(
                activity_id=done.activity_id,
                self_href=done.self_href,
                results_href=done.results_href,
                completed=True,
            )
        ],
    )


def download_step(
    job: Job,
    *,
    api: ConstantContactClient,
    s3: Any,
    store: JobStore,
    settings: Settings,
    encoding: EncodingCheck,
) -> tuple[TransferSummary, StoredObject]:
    """The download step's body for a job, as ``download_csv`` runs it under its lease;
    ``encoding`` is what the process running it knows of its store."""
    lease = store.lease(job.job_id, "download", ttl=30)
    with lease:
        return stream_to_s3(
            job,
            client=api,
            s3=s3,
            store=store,
            settings=settings,
            lease=lease,
            on_progress=lambda _: None,
            encoding=encoding,
        )


def worker_s3(env: dict[str, str], session: boto3.Session | None = None) -> Any:
    """An S3 client made as a worker makes it from ``env`` (a store's environment, with any
    settings over it) and the test stores' keys; ``session`` shares one across a module."""
    session = session or boto3.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY
    )
    values = {name.lower(): value for name, value in env.items()}
    return make_s3_client(Settings(cc_access_token="unused", **values), session)


def results_fetched(sandbox: SandboxProcess, job: Job) -> int:
    """How many times the job's results file was fetched from the sandbox."""
    return len(sandbox.requests(endpoint="get_results", activity_id=job.activity_id))

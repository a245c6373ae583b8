"""The export chain: ``export`` -> ``create_export`` -> ``poll_activity`` -> ``download_csv``.

The tasks only orchestrate: they decide when to try again and what to report, while the API
client, the S3 writer and the job store do the work. Waiting is always a ``retry(countdown=…)``
so a waiting export holds no worker slot.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, NoReturn

from celery import Task, chain
from celery.utils.log import get_task_logger

from tasks.context import api_client, check_account, job_store, s3_client
from tasks.schema import parse_job_request
from workers import app
from workers.backoff import after_failure, exponential
from workers.constant_contact import ActivityState
from workers.download import ResultsBody
from workers.exceptions import (
    ActivityFailed,
    ConstantContactError,
    ExportTimedOut,
    InvalidExportRequest,
    TransientError,
)
from workers.jobs import Job
from workers.settings import Settings, get_settings
from workers.storage import MultipartWriter, StoredObject
from workers.transfer import TransferSummary, copy_measured

log = get_task_logger(__name__)

#: Bytes asked of the socket per read while streaming the CSV.
DOWNLOAD_CHUNK = 1024 * 1024
#: Result state while an export runs (CONTRACT.md §2).
PROGRESS = "PROGRESS"

AnyTask = Task[Any, Any]


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _report(task: AnyTask, job: Job, stage: str, percent_done: int = 0, size: int = 0) -> None:
    """Publish progress on the id the caller holds, whichever step is running."""
    meta = {
        "job_id": job.job_id,
        "stage": stage,
        "percent_done": percent_done,
        "activity_id": job.activity_id,
        "bytes": size,
    }
    task.update_state(task_id=job.result_id, state=PROGRESS, meta=meta)


def _retry_transient(task: AnyTask, error: TransientError, settings: Settings) -> NoReturn:
    attempt = task.request.retries
    if attempt >= settings.retry_max_attempts:
        raise ConstantContactError(f"gave up after {attempt + 1} attempts: {error}") from error
    countdown = after_failure(
        attempt,
        initial=settings.retry_initial_seconds,
        cap=settings.retry_max_seconds,
        retry_after=error.retry_after,
    )
    log.warning("transient failure, retrying in %.1fs: %s", countdown, error)
    raise task.retry(countdown=countdown)


@app.task(bind=True, name="contact_exports.export", max_retries=None)
def export(self: AnyTask, /, **kwargs: Any) -> dict[str, Any]:
    """Validate the request, fix its job_id and destination, and become the chain."""
    request = parse_job_request(kwargs)
    check_account(request.account)
    settings = get_settings()
    bucket = request.destination.bucket or settings.s3_bucket
    if not bucket:
        raise InvalidExportRequest("destination.bucket: no bucket given and S3_BUCKET is not set")
    job_id = request.job_id or str(self.request.id)
    done = job_store().result(job_id)
    if done is not None:
        return done
    key = request.destination.key or settings.export_key_template.format(
        account=request.account, job_id=job_id
    )
    job = Job(
        job_id=job_id,
        result_id=str(self.request.id),
        account=request.account,
        request=request.export.api_body(),
        bucket=bucket,
        key=key,
        deadline=time.time() + settings.export_deadline_seconds,
        started_at=_utc_now(),
        unknown_fields=request.export.unknown_fields,
    )
    _report(self, job, "creating")
    steps = chain(create_export.s(job.to_dict()), poll_activity.s(), download_csv.s())
    raise self.replace(steps)


@app.task(bind=True, name="contact_exports.create_export", max_retries=None)
def create_export(self: AnyTask, job_data: dict[str, Any]) -> dict[str, Any]:
    """POST the export once per job; a repeated delivery reuses the recorded activity."""
    job = Job.from_dict(job_data)
    settings = get_settings()
    store = job_store()
    known = store.activity(job.job_id)
    if known is None:
        if not store.claim_create(job.job_id, holder=str(self.request.id)):
            # Another delivery of this job is creating the activity: come back and reuse it.
            raise self.retry(countdown=settings.poll_initial_seconds)
        try:
            activity = api_client(job.account).create_export(job.request)
        except TransientError as error:
            _retry_transient(self, error, settings)
        store.remember_activity(
            job.job_id, activity.activity_id, activity.self_href, activity.results_href
        )
        known = store.activity(job.job_id) or {}
        log.info("job %s: created activity %s", job.job_id, activity.activity_id)
    job.activity_id = known["activity_id"]
    job.self_href = known["self_href"]
    job.results_href = known.get("results_href")
    _report(self, job, "polling")
    return job.to_dict()


@app.task(bind=True, name="contact_exports.poll_activity", max_retries=None)
def poll_activity(self: AnyTask, job_data: dict[str, Any]) -> dict[str, Any]:
    """Check the activity once; if it is still running, come back later instead of waiting."""
    job = Job.from_dict(job_data)
    settings = get_settings()
    if time.time() > job.deadline:
        raise ExportTimedOut(
            f"activity {job.activity_id} did not complete before the job's deadline"
        )
    assert job.self_href is not None
    try:
        activity = api_client(job.account).get_activity(job.self_href)
    except TransientError as error:
        # The deadline, not an attempt count, bounds how long a poll keeps trying.
        raise self.retry(
            countdown=after_failure(
                self.request.retries,
                initial=settings.retry_initial_seconds,
                cap=settings.poll_max_seconds,
                retry_after=error.retry_after,
            ),
        ) from error
    if activity.state is ActivityState.COMPLETED:
        job.results_href = activity.results_href or job.results_href
        if not job.results_href:
            raise ConstantContactError(f"activity {job.activity_id} completed without results")
        _report(self, job, "downloading", 100)
        return job.to_dict()
    if activity.state.finished:
        errors = "; ".join(activity.activity_errors) or "no errors given"
        raise ActivityFailed(
            f"activity {activity.activity_id} ended {activity.state.value}: {errors}",
            activity_id=activity.activity_id,
            state=activity.state.value,
            activity_errors=activity.activity_errors,
        )
    _report(self, job, "polling", activity.percent_done)
    countdown = exponential(
        self.request.retries,
        initial=settings.poll_initial_seconds,
        cap=settings.poll_max_seconds,
        factor=1.5,
    )
    raise self.retry(countdown=countdown)


@app.task(bind=True, name="contact_exports.download_csv", max_retries=None)
def download_csv(self: AnyTask, job_data: dict[str, Any]) -> dict[str, Any]:
    """Stream the CSV into S3; the object appears only once the whole body arrived intact."""
    job = Job.from_dict(job_data)
    store = job_store()
    done = store.result(job.job_id)
    if done is not None:
        return done
    settings = get_settings()
    _report(self, job, "downloading", 100)
    try:
        summary, stored = _stream_to_s3(self, job, settings)
    except TransientError as error:
        _retry_transient(self, error, settings)
    result = {
        "job_id": job.job_id,
        "account": job.account,
        "activity_id": job.activity_id,
        "bucket": stored.bucket,
        "key": stored.key,
        "uri": stored.uri,
        "bytes": summary.size,
        "rows": summary.rows,
        "columns": summary.columns,
        "sha256": summary.sha256,
        "started_at": job.started_at,
        "finished_at": _utc_now(),
        "unknown_fields": job.unknown_fields,
        "activities": 1,
    }
    store.save_result(job.job_id, result)
    log.info(
        "job %s: stored %s (%d bytes, %d rows)", job.job_id, stored.uri, summary.size, summary.rows
    )
    return result


def _stream_to_s3(
    task: AnyTask, job: Job, settings: Settings
) -> tuple[TransferSummary, StoredObject]:
    assert job.results_href is not None
    metadata = {"job-id": job.job_id, "activity-id": job.activity_id or ""}
    body: ResultsBody
    with (
        api_client(job.account).open_results(job.results_href) as body,
        MultipartWriter(
            s3_client(),
            job.bucket,
            job.key,
            part_size=settings.part_size,
            parts_in_flight=settings.s3_parts_in_flight,
            metadata=metadata,
        ) as writer,
    ):
        summary = copy_measured(
            body.chunks(DOWNLOAD_CHUNK),
            writer,
            on_progress=lambda size: _report(task, job, "downloading", 100, size),
        )
        return summary, writer.complete()

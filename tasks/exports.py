"""The export chain: ``export`` -> ``create_export`` -> ``poll_activity`` -> ``download_csv``.

The tasks only orchestrate: they decide when to try again and what to report, while the API
client, the S3 writer and the job store do the work. Waiting is always a ``retry(countdown=…)``
so a waiting export holds no worker slot. Every step reads the job record first, so a message
delivered twice resumes the job instead of redoing it.
"""

from __future__ import annotations

import time
from typing import Any, NoReturn

from celery import Task, chain
from celery.utils.log import get_task_logger
from kombu.exceptions import KombuError

from tasks.context import api_client, check_account, job_store, s3_client
from tasks.creating import create_once
from tasks.downloading import stream_to_s3, sweep_uploads
from tasks.notify import enqueue_notification
from tasks.progress import report, result_of, utc_now
from tasks.schema import parse_job_request
from tasks.sealing import ask_for_seal, seal_owed
from workers import app, metrics
from workers.constant_contact import Activity, ActivityState, epoch_seconds
from workers.exceptions import (
    ActivityFailed,
    ConstantContactError,
    ExportTimedOut,
    InvalidExportRequest,
    RateLimited,
    TransientError,
)
from workers.jobs import Job, JobState
from workers.leases import LeaseHeld
from workers.logconfig import bind_job
from workers.polling import ClockOffset, Sighting, Timeline, next_poll_at
from workers.ratelimit import QUOTA, retry_countdown
from workers.settings import Settings, get_settings
from workers.webhooks import check_url

log = get_task_logger(__name__)

#: Seconds to wait before looking again when another delivery holds a job's step.
BUSY_COUNTDOWN = 1.0
#: A poll task that wakes up at most this long before its job's ``poll_at`` polls anyway.
WAKE_EARLY_SECONDS = 0.05


#: What each task is doing, for logs and the stage-duration metric.
STAGES = {
    "contact_exports.export": "validating",
    "contact_exports.create_export": "creating",
    "contact_exports.poll_activity": "polling",
    "contact_exports.download_csv": "downloading",
}


class ExportStep(Task):  # type: ignore[type-arg]  # celery's Task is generic only in stubs
    """Base of the export tasks: job context on every log line, the time each step takes, and a
    dead letter (plus a failure count) for a job that fails for good."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        stage = STAGES.get(self.name, self.name)
        job_data = args[0] if args and isinstance(args[0], dict) else kwargs
        activities = job_data.get("activities") or [{}]
        bind_job(
            job_id=job_data.get("job_id"),
            account=job_data.get("account"),
            activity_id=activities[0].get("activity_id"),
            stage=stage,
        )
        with metrics.STAGE_SECONDS.labels(stage).time():
            return super().__call__(*args, **kwargs)

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        metrics.EXPORTS_FAILED.labels(type(exc).__name__).inc()
        job_data = args[0] if args else None
        if isinstance(job_data, dict) and "job_id" in job_data:
            job = Job.from_dict(job_data)
            store = job_store()
            store.fail(job.job_id, self.name, exc)
            sweep_uploads(store, s3_client(), job)
            enqueue_notification(
                job.notify_url,
                {
                    "status": "FAILURE",
                    "job_id": job.job_id,
                    "error_type": type(exc).__name__,
                    "error_message": str(exc),
                },
            )


def _come_back(
    task: Task[Any, Any],
    job: Job,
    error: TransientError,
    settings: Settings,
    *,
    cap: float,
    bounded: bool = True,
) -> NoReturn:
    """Reschedule the step after a transient error, by the one retry policy.

    Waiting for the shared request budget is not a failure: it uses up no attempt, and while the
    daily quota is spent PROGRESS says so. Real failures count per job and step; ``bounded``
    steps give up after RETRY_MAX_ATTEMPTS, polls only at the deadline.
    """
    stage = STAGES.get(task.name, task.name)
    if isinstance(error, RateLimited):
        countdown = retry_countdown(error, 0, initial=settings.retry_initial_seconds, cap=cap)
        if time.time() + countdown > job.deadline:
            raise ExportTimedOut(
                f"job {job.job_id}: the deadline passes while waiting for the API's budget"
            ) from error
        waiting = "quota_reset" if error.reason == QUOTA else "rate_limit"
        metrics.RATE_LIMIT_WAITS.inc()
        report(task, job, stage, waiting=waiting, resumes_at=error.resumes_at)
        log.info("waiting %.1fs for the request budget (%s)", countdown, waiting)
        raise task.retry(args=(job.to_dict(),) if task.request.args else None, countdown=countdown)
    failures = job_store().count_attempt(job.job_id, f"failures:{stage}")
    if bounded and failures > settings.retry_max_attempts:
        raise ConstantContactError(f"gave up after {failures} attempts: {error}") from error
    countdown = retry_countdown(
        error, failures - 1, initial=settings.retry_initial_seconds, cap=cap
    )
    log.warning("transient failure, retrying in %.1fs: %s", countdown, error)
    raise task.retry(args=(job.to_dict(),) if task.request.args else None, countdown=countdown)


def _check_deadline(job: Job) -> None:
    if time.time() > job.deadline:
        raise ExportTimedOut(
            f"job {job.job_id}: activity {job.activity_id} did not complete before the deadline"
        )


@app.task(bind=True, base=ExportStep, name="contact_exports.export", max_retries=None)
def export(self: Task[Any, Any], /, **kwargs: Any) -> dict[str, Any]:
    """Validate the request, fix its job_id and destination, and become the chain."""
    request = parse_job_request(kwargs)
    check_account(request.account)
    settings = get_settings()
    if request.notify_url:
        check_url(request.notify_url, settings.webhook_hosts, settings.webhook_secret is not None)
    bucket = request.destination.bucket or settings.s3_bucket
    if not bucket:
        raise InvalidExportRequest("destination.bucket: no bucket given and S3_BUCKET is not set")
    job_id = request.job_id or str(self.request.id)
    bind_job(job_id=job_id, account=request.account)
    store = job_store()
    done = store.result(job_id)
    if done is not None:
        return done
    key = request.destination.key or settings.export_key_template.format(
        account=request.account, job_id=job_id
    )
    job = Job(
        job_id=job_id,
        result_id=str(self.request.id),
        account=request.account,
        requests=request.export.shards(),
        bucket=bucket,
        key=key,
        deadline=time.time() + settings.export_deadline_seconds,
        started_at=utc_now(),
        unknown_fields=request.export.unknown_fields,
        notify_url=request.notify_url,
    )
    if store.open(job, {**kwargs, "job_id": job_id}):
        metrics.EXPORTS_STARTED.inc()
    report(self, job, "creating")
    # The first poll waits: an activity is never done the moment it is created.
    first_poll = poll_activity.s().set(countdown=settings.poll_initial_seconds)
    steps = chain(create_export.s(job.to_dict()), first_poll, download_csv.s())
    raise self.replace(steps)


@app.task(bind=True, base=ExportStep, name="contact_exports.create_export", max_retries=None)
def create_export(self: Task[Any, Any], job_data: dict[str, Any]) -> dict[str, Any]:
    """POST the export once per job; a repeated delivery reuses the recorded activity."""
    job = Job.from_dict(job_data)
    settings = get_settings()
    store = job_store()
    shards = range(len(job.requests))
    if any(store.activity(job.job_id, shard) is None for shard in shards):
        _check_deadline(job)
        store.count_attempt(job.job_id, "create")
        lease = store.lease(job.job_id, "create", ttl=settings.lease_ttl_seconds)
        log.info("job %s: creating the export activity", job.job_id)
        try:
            with lease:
                for shard in shards:
                    # A racing or earlier delivery may have created some already.
                    if store.activity(job.job_id, shard) is None:
                        create_once(
                            job,
                            store,
                            api_client(job.account),
                            shard=shard,
                            post_timeout=settings.cc_connect_timeout + settings.cc_read_timeout,
                            lease_ttl=settings.lease_ttl_seconds,
                        )
        except LeaseHeld as held:
            raise self.retry(countdown=max(min(held.ttl, BUSY_COUNTDOWN), 0.1)) from held
        except TransientError as error:
            _come_back(self, job, error, settings, cap=settings.retry_max_seconds)
    job.activities = [{**(store.activity(job.job_id, s) or {}), "completed": False} for s in shards]
    log.info("job %s: activity %s", job.job_id, ", ".join(a["activity_id"] for a in job.activities))
    report(self, job, "polling")
    return job.to_dict()


@app.task(bind=True, base=ExportStep, name="contact_exports.poll_activity", max_retries=None)
def poll_activity(self: Task[Any, Any], job_data: dict[str, Any]) -> dict[str, Any]:
    """Check the activity once; if it is still running, come back later instead of waiting.

    When to come back is ``workers.polling``'s call. A wait longer than POLL_MAX_SECONDS (the
    longest countdown the broker tolerates) is slept in parts: a wake-up before ``poll_at``
    goes back to sleep without spending a request.
    """
    job = Job.from_dict(job_data)
    settings = get_settings()
    _check_deadline(job)
    job_store().touch(job.job_id)
    early = job.poll_at - time.time() if job.poll_at is not None else 0.0
    if early > WAKE_EARLY_SECONDS:
        raise self.retry(args=(job.to_dict(),), countdown=min(early, settings.poll_max_seconds))
    log.info("job %s: polling activity %s", job.job_id, job.activity_id)
    try:
        percent_done, all_done = _poll_each(job, settings)
    except TransientError as error:
        # The deadline, not an attempt count, bounds how long a poll keeps trying.
        _come_back(self, job, error, settings, cap=settings.poll_max_seconds, bounded=False)
    if all_done:
        job_store().set_state(job.job_id, JobState.DOWNLOADING)
        report(self, job, "downloading", 100)
        return job.to_dict()
    report(self, job, "polling", percent_done)
    offset = ClockOffset(job.clock_offset or 0.0)
    timelines = [
        Timeline.from_json(entry["timeline"])
        for entry in job.activities
        if not entry["completed"] and entry.get("timeline")
    ]
    target = next_poll_at(
        timelines,
        offset.server(time.time()),
        floor=settings.poll_initial_seconds,
        cap=settings.poll_max_seconds,
    )
    job.poll_at = offset.worker(target)
    countdown = min(job.poll_at - time.time(), settings.poll_max_seconds)
    raise self.retry(args=(job.to_dict(),), countdown=max(countdown, 0.0))


def _poll_each(job: Job, settings: Settings) -> tuple[int, bool]:
    """Look at every activity not yet seen completed; the job's percent_done is their mean.

    Each unfinished activity's entry keeps its ``timeline`` (what it reported, on the server's
    clock), and the job its estimate of the server's clock (see ``workers.polling``).
    """
    client = api_client(job.account)
    percents = []
    for entry in job.activities:
        if not entry["completed"]:
            activity = client.get_activity(entry["self_href"])
            received = time.time()
            if activity.state.finished and activity.state is not ActivityState.COMPLETED:
                errors = "; ".join(activity.activity_errors) or "no errors given"
                raise ActivityFailed(
                    f"activity {activity.activity_id} ended {activity.state.value}: {errors}",
                    activity_id=activity.activity_id,
                    state=activity.state.value,
                    activity_errors=activity.activity_errors,
                )
            if activity.state is ActivityState.COMPLETED:
                entry["results_href"] = activity.results_href or entry.get("results_href")
                if not entry["results_href"]:
                    raise ConstantContactError(f"activity {activity.activity_id} has no results")
                entry["completed"] = True
                entry.pop("timeline", None)
            else:
                _record_look(job, entry, activity, received, settings.poll_initial_seconds)
                percents.append(activity.percent_done)
                continue
        percents.append(100)
    done = all(entry["completed"] for entry in job.activities)
    return sum(percents) // len(percents), done


def _record_look(
    job: Job, entry: dict[str, Any], activity: Activity, received: float, first_wait: float
) -> None:
    """Add what an unfinished activity just reported to its timeline and to the clock estimate."""
    created, started, updated = (
        epoch_seconds(stamp)
        for stamp in (activity.created_at, activity.started_at, activity.updated_at)
    )
    timeline = Timeline.from_json(entry["timeline"]) if entry.get("timeline") else None
    if timeline is None:
        # Without a created_at to go by: our clock, and the latest the activity can be created.
        origin, resolution = created or (received - first_wait, 0.001)
        timeline = Timeline(created=origin, looked_at=origin, resolution=resolution)
    # The first look comes at least POLL_INITIAL_SECONDS after the activity was created.
    offset = ClockOffset(
        job.clock_offset
        if job.clock_offset is not None
        else timeline.created + first_wait - received
    )
    for stamp in (created, started, updated):
        if stamp is not None:
            offset = offset.merge(stamp[0], received)
    job.clock_offset = offset.value
    looked_at = offset.server(received)
    sighting = None
    if activity.state is ActivityState.PROCESSING:
        sighting = Sighting(updated[0] if updated else looked_at, activity.percent_done)
    entry["timeline"] = timeline.seen(
        looked_at=looked_at, started=started[0] if started else None, sighting=sighting
    ).to_json()


def _ask_for_seal(job_id: str, owed: dict[str, Any]) -> None:
    """The result is recorded: a broker that cannot take the seal's message now must not turn
    the job into a failure. The seal stays owed in the record and the janitor asks again."""
    try:
        ask_for_seal(job_id, owed)
    except KombuError as error:
        log.warning("job %s: seal not asked for yet (%s); the janitor will", job_id, error)


@app.task(bind=True, base=ExportStep, name="contact_exports.download_csv", max_retries=None)
def download_csv(self: Task[Any, Any], job_data: dict[str, Any]) -> dict[str, Any]:
    """Stream the CSV into S3; the object appears only once the whole body arrived intact."""
    job = Job.from_dict(job_data)
    store = job_store()
    done = store.result(job.job_id)
    if done is not None:
        return done
    _check_deadline(job)
    settings = get_settings()
    lease = store.lease(job.job_id, "download", ttl=settings.lease_ttl_seconds)
    try:
        lease.acquire()
    except LeaseHeld as held:
        # Another delivery is streaming this job right now (or died less than a TTL ago).
        raise self.retry(countdown=max(held.ttl, BUSY_COUNTDOWN)) from held
    try:
        done = store.result(job.job_id)
        if done is not None:
            return done
        store.count_attempt(job.job_id, "download")
        s3 = s3_client()
        swept = sweep_uploads(store, s3, job)
        log.info("job %s: downloading (swept %d stale uploads)", job.job_id, swept)
        report(self, job, "downloading", 100)
        summary, stored = stream_to_s3(
            job,
            client=api_client(job.account),
            s3=s3,
            store=store,
            settings=settings,
            lease=lease,
            on_progress=lambda size: report(self, job, "downloading", 100, size),
        )
        result = result_of(job, summary, stored)
        owed = seal_owed(job, summary, stored)
        store.save_result(job.job_id, result, seal=owed)
        if owed is not None:
            _ask_for_seal(job.job_id, owed)
        metrics.EXPORTS_COMPLETED.inc()
        enqueue_notification(
            job.notify_url, {"status": "SUCCESS", "job_id": job.job_id, "result": result}
        )
        metrics.BYTES_STREAMED.inc(summary.size)
    except TransientError as error:
        _come_back(self, job, error, settings, cap=settings.retry_max_seconds)
    finally:
        lease.release()
    log.info(
        "job %s: stored %s (%d bytes, %d rows)", job.job_id, stored.uri, summary.size, summary.rows
    )
    return result

"""How an export step answers a transient failure: by the one retry policy (``workers.retry``).

Waiting for the shared request budget is not a failure: it uses up no attempt, and while the
daily quota is spent PROGRESS says so. Real failures count per job and stage in the job record;
bounded stages give up after RETRY_MAX_ATTEMPTS, polls only at the deadline.
"""

from __future__ import annotations

import logging

from workers import metrics
from workers.exceptions import (
    ConstantContactError,
    ExportCancelled,
    ExportTimedOut,
    RateLimited,
    StorageError,
    TransientError,
    WaitReason,
)
from workers.export.job import Job
from workers.export.outcome import Again
from workers.export.progress import report
from workers.services import Services

log = logging.getLogger(__name__)


def check_live(services: Services, job: Job) -> None:
    """Before a step's work: the job was not cancelled, and its deadline has not passed."""
    check_cancelled(services, job.job_id)
    if services.clock() > job.deadline:
        raise ExportTimedOut(
            f"job {job.job_id}: activity {job.activity_id} did not complete before the deadline"
        )


def check_cancelled(services: Services, job_id: str) -> None:
    if services.jobs.cancelled(job_id):
        raise ExportCancelled(f"job {job_id} was cancelled")


def come_back(
    services: Services,
    job: Job,
    error: TransientError | StorageError,
    stage: str,
    *,
    cap: float,
    bounded: bool = True,
    resend: Job | None = None,
) -> Again:
    """When to run the stage again after ``error``; raises when the job should stop instead.

    ``resend`` is the job the next run gets, when this run learnt something worth keeping.
    """
    check_cancelled(services, job.job_id)  # a cancelled job does not come back
    policy = services.retry
    if isinstance(error, RateLimited):
        countdown = policy.countdown(error, 0, cap=cap)
        if services.clock() + countdown > job.deadline:
            raise ExportTimedOut(
                f"job {job.job_id}: the deadline passes while waiting for the API's budget"
            ) from error
        waiting = "quota_reset" if error.reason == WaitReason.QUOTA else "rate_limit"
        metrics.RATE_LIMIT_WAITS.inc()
        report(services.results, job, stage, waiting=waiting, resumes_at=error.resumes_at)
        log.info("waiting %.1fs for the request budget (%s)", countdown, waiting)
        return Again(countdown, resend)
    failures = services.jobs.count_failure(job.job_id, stage)
    if bounded and policy.gives_up(error, failures):
        if isinstance(error, StorageError):
            raise StorageError(f"gave up after {failures} attempts: {error}") from error
        raise ConstantContactError(f"gave up after {failures} attempts: {error}") from error
    countdown = policy.countdown(error, failures, cap=cap)
    log.warning("transient failure, retrying in %.1fs: %s", countdown, error)
    return Again(countdown, resend)

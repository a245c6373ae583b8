"""Looking at a job's activities once, and deciding when to look again (``workers.polling``).

A wait is never slept: the task comes back with a countdown, holding no worker slot. A wait
longer than POLL_MAX_SECONDS (the longest countdown the broker tolerates) is slept in parts, and
a wake-up before ``poll_at`` goes back to sleep without spending a request.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from workers.constant_contact.client import ActivityState, ConstantContactClient, epoch_seconds
from workers.exceptions import ActivityFailed, ConstantContactError, TransientError
from workers.export.job import ActivityRef, Job
from workers.export.outcome import Again, Next
from workers.export.progress import report
from workers.export.retries import check_live, come_back
from workers.export.tasknames import Stage
from workers.polling import ClockOffset, next_poll_at, record_look
from workers.services import Services
from workers.state.durations import request_shape
from workers.state.jobs import JobState

log = logging.getLogger(__name__)

#: A poll task that wakes up at most this long before its job's ``poll_at`` polls anyway.
WAKE_EARLY_SECONDS = 0.05


def poll_step(services: Services, job: Job) -> Next | Again:
    """Check the activities once: Next when all completed, else Again at the next poll time."""
    settings = services.settings
    check_live(services, job)
    services.jobs.touch(job.job_id)
    now = services.clock()
    early = job.poll_at - now if job.poll_at is not None else 0.0
    if early > WAKE_EARLY_SECONDS:
        return Again(min(early, settings.poll_max_seconds), job)
    log.info("job %s: polling activity %s", job.job_id, job.activity_id)
    job, percent_done, failed = look(services, job)
    if failed is not None:
        # The deadline, not an attempt count, bounds how long a poll keeps trying.
        cap = settings.poll_max_seconds
        return come_back(services, job, failed, Stage.POLLING, cap=cap, bounded=False, resend=job)
    if job.done:
        services.jobs.set_state(job.job_id, JobState.DOWNLOADING)
        report(services.results, job, Stage.DOWNLOADING, 100)
        return Next(job)
    report(services.results, job, Stage.POLLING, percent_done)
    offset = ClockOffset(job.clock_offset or 0.0)
    now = services.clock()
    waiting = [
        (ref.timeline, body)
        for ref, body in zip(job.activities, job.requests, strict=True)
        if not ref.completed and ref.timeline
    ]
    target = next_poll_at(
        [timeline for timeline, _ in waiting],
        offset.server(now),
        floor=settings.poll_initial_seconds,
        cap=settings.poll_max_seconds,
        hints=[services.durations.expected(job.account, request_shape(b)) for _, b in waiting],
    )
    job = replace(job, poll_at=offset.worker(target))
    assert job.poll_at is not None
    countdown = min(job.poll_at - now, settings.poll_max_seconds)
    return Again(max(countdown, 0.0), job)


def look(services: Services, job: Job) -> tuple[Job, int, TransientError | None]:
    """Look at every activity not yet seen completed; returns the job as now known, its
    percent_done (the mean of its activities'), and the transient error that stopped the looks
    early, if one did: what the looks before it learnt is kept in the job all the same.

    Raises ActivityFailed for an activity that ended otherwise than completed.
    """
    client = services.api(job.account)
    first_wait = services.settings.poll_initial_seconds
    seen: list[ActivityRef] = []
    percents = []
    for index, ref in enumerate(job.activities):
        if ref.completed:
            seen.append(ref)
            percents.append(100)
            continue
        try:
            ref, offset, percent, took = _look_once(
                services, client, ref, job.clock_offset, first_wait
            )
        except TransientError as error:
            return replace(job, activities=[*seen, *job.activities[index:]]), 0, error
        job = replace(job, clock_offset=offset)
        if took is not None:
            services.durations.record(job.account, request_shape(job.requests[index]), took)
        seen.append(ref)
        percents.append(percent)
    return replace(job, activities=seen), sum(percents) // len(percents), None


def _look_once(
    services: Services,
    client: ConstantContactClient,
    ref: ActivityRef,
    clock_offset: float | None,
    first_wait: float,
) -> tuple[ActivityRef, float | None, int, float | None]:
    """One activity's answer: its new reference, the clock estimate, its percent_done and, once
    it completed, how long it took by its own stamps (None where they do not say)."""
    activity = client.get_activity(ref.self_href)
    received = services.clock()
    if activity.state.finished and activity.state is not ActivityState.COMPLETED:
        errors = "; ".join(activity.activity_errors) or "no errors given"
        raise ActivityFailed(
            f"activity {activity.activity_id} ended {activity.state.value}: {errors}",
            activity_id=activity.activity_id,
            state=activity.state.value,
            activity_errors=activity.activity_errors,
        )
    if activity.state is ActivityState.COMPLETED:
        results_href = activity.results_href or ref.results_href
        if not results_href:
            raise ConstantContactError(f"activity {activity.activity_id} has no results")
        created, updated = epoch_seconds(activity.created_at), epoch_seconds(activity.updated_at)
        took = updated[0] - created[0] if created and updated else None
        return ref.finished(results_href), clock_offset, 100, took
    timeline, offset = record_look(
        ref.timeline, clock_offset, activity, received, first_wait=first_wait
    )
    return replace(ref, timeline=timeline), offset.value, activity.percent_done, None

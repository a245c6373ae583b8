"""Creating the export activity exactly once per job.

The hard case is a POST whose answer never arrived (a 5xx, a timeout, a worker killed
mid-request): Constant Contact may or may not have created the activity. Before posting again
we look for it among the account's recent activities. POSTs are serialized per account and each
one's time window is recorded, so an unowned export activity created inside our window is ours.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from workers.constant_contact.client import Activity, ConstantContactClient, epoch_seconds
from workers.exceptions import LeaseHeld, RateLimited, TransientError
from workers.export.job import Job
from workers.export.outcome import Again, Next
from workers.export.progress import report
from workers.export.retries import check_live, come_back
from workers.export.tasknames import Stage
from workers.retry import BUSY_COUNTDOWN
from workers.services import Services
from workers.state.jobs import JobStore

log = logging.getLogger(__name__)

#: Seconds of clock difference tolerated between this machine and Constant Contact.
CLOCK_SKEW_SECONDS = 5.0
#: The shortest wait while another delivery holds the job's create step (BUSY_COUNTDOWN).
MIN_BUSY_COUNTDOWN = 0.1


def create_step(services: Services, job: Job) -> Next | Again:
    """POST the export once per job; a repeated delivery reuses the recorded activities."""
    settings = services.settings
    store = services.jobs
    shards = range(len(job.requests))
    if any(store.activity(job.job_id, shard) is None for shard in shards):
        check_live(services, job)
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
                            services.api(job.account),
                            shard=shard,
                            post_timeout=settings.cc_connect_timeout + settings.cc_read_timeout,
                            lease_ttl=settings.lease_ttl_seconds,
                        )
        except LeaseHeld as held:
            return Again(max(min(held.ttl, BUSY_COUNTDOWN), MIN_BUSY_COUNTDOWN))
        except TransientError as error:
            return come_back(services, job, error, Stage.CREATING, cap=settings.retry_max_seconds)
    activities = [store.activity(job.job_id, shard) for shard in shards]
    known = [a for a in activities if a is not None]
    if len(known) < len(activities):
        # A record lost since (a Redis failover): the next run creates or finds what is missing.
        return Again(MIN_BUSY_COUNTDOWN)
    job = replace(job, activities=known)
    log.info("job %s: activity %s", job.job_id, ", ".join(job.activity_ids))
    report(services.results, job, Stage.POLLING)
    return Next(job)


def find_lost_activity(
    client: ConstantContactClient,
    store: JobStore,
    window: tuple[float, float],
) -> Activity | None:
    """The unowned export activity created within ``window``, if any (earliest first).

    The account's activities are read newest first, page by page, until one created before the
    window: a busy account may have created hundreds since (bench/soak.py found a lost activity
    beyond the first page of 500 after a create had waited 95 s for its turn).
    """
    start, end = window
    candidates = []
    for activity in client.iter_activities():
        stamp = epoch_seconds(activity.created_at)
        created = stamp[0] if stamp else None
        if created is not None and created < start - CLOCK_SKEW_SECONDS:
            break
        is_export = activity.results_href is not None and "/contact_exports/" in (
            activity.results_href
        )
        if (
            is_export
            and created is not None
            and start - CLOCK_SKEW_SECONDS <= created <= end + CLOCK_SKEW_SECONDS
            and not store.owns_activity(activity.activity_id)
        ):
            candidates.append((created, activity))
    return min(candidates, key=lambda pair: pair[0])[1] if candidates else None


def create_once(
    job: Job,
    store: JobStore,
    client: ConstantContactClient,
    *,
    shard: int,
    post_timeout: float,
    lease_ttl: float,
) -> Activity:
    """Create (or find) the activity of one shard of this job and record it.

    Everything happens under the account's posting lease, so no other job's POST can land in
    the window we search. Raises LeaseHeld when another POST for the account is in flight (the
    caller retries soon), and whatever the client raises when the POST fails.
    """
    with store.posting_lease(job.account, ttl=lease_ttl):
        window = store.post_window(job.job_id, shard)
        if window is not None:
            started, ended = window
            lost = find_lost_activity(client, store, (started, ended or started + post_timeout))
            if lost is not None:
                _remember(store, job, lost, shard)
                return lost
        store.mark_posting(job.job_id, shard)
        try:
            activity = client.create_export(job.requests[shard])
        except RateLimited:
            # Nothing was sent (or the API refused it): there is no answer to look for later.
            store.clear_posting(job.job_id, shard)
            raise
        finally:
            store.mark_posted(job.job_id, shard)
        _remember(store, job, activity, shard)
        return activity


def _remember(store: JobStore, job: Job, activity: Activity, shard: int) -> None:
    store.remember_activity(
        job.job_id, activity.activity_id, activity.self_href, activity.results_href, shard
    )

"""Creating the export activity exactly once per job.

The hard case is a POST whose answer never arrived (a 5xx, a timeout, a worker killed
mid-request): Constant Contact may or may not have created the activity. Before posting again
we look for it among the account's recent activities. POSTs are serialized per account and each
one's time window is recorded, so an unowned export activity created inside our window is ours.
"""

from __future__ import annotations

from workers.constant_contact import Activity, ConstantContactClient, epoch_seconds
from workers.exceptions import RateLimited
from workers.jobs import Job, JobStore

#: Seconds of clock difference tolerated between this machine and Constant Contact.
CLOCK_SKEW_SECONDS = 5.0


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

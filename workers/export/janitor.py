"""Finding jobs whose messages were lost, and sending them again; seals owed too.

Redis hands a message out and kombu records it as unacknowledged in two steps; a Redis restart
between them loses the message, and with it the job (bench/soak.py showed it). Every live job
touches its record at least once per countdown and holds a lease while a step runs, so a job that
nothing touched for longer than any legitimate wait is orphaned. It is sent again under its own
job_id and result id: every step resumes from the record, so nothing is done twice, and the
caller's AsyncResult still resolves.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import redis

from contact_exports_client.client import EXPORT_TASK, QUEUE
from contact_exports_client.keys import JANITOR_LOCK_KEY
from contact_exports_client.ledger import OWED_SEAL_FIELD, SEAL_FIELD
from contact_exports_client.signing import Seals
from workers.export.seal import ask_for_seal
from workers.services import Sender
from workers.settings import Settings
from workers.state.jobs import JobStore

log = logging.getLogger(__name__)


def stale_after(settings: Settings) -> float:
    """Longer than any wait of a live job: a message held by a dead worker comes back after the
    visibility timeout, a countdown lasts at most the longest cap, a dead step's lease expires."""
    longest = max(settings.poll_max_seconds, settings.retry_max_seconds)
    return settings.broker_visibility_timeout + 2 * longest + settings.lease_ttl_seconds


def sweep(
    store: JobStore, sender: Sender, older_than: float, seals: Seals | None = None
) -> list[str]:
    """Send every orphaned job, and every seal whose message was lost, again; returns their ids.

    With ``seals`` (messages are signed), a job is sent again only if a trusted key sealed its
    stored request: anyone who can write to Redis could write a record, and sending it would
    sign it with the worker's key."""
    sent = []
    for job_id, owed in store.owed_seals(older_than):
        if seals is not None:
            # What is sent is what was checked: one read of the record for both.
            record = store.record(job_id)
            if not _sealed(store, seals, job_id, record, "seal", OWED_SEAL_FIELD):
                continue
            owed = json.loads(record["seal"])
        store.seal_requested(job_id)
        ask_for_seal(sender, job_id, owed)
        log.warning("job %s: its seal is still owed after %.0fs; asked again", job_id, older_than)
        sent.append(job_id)
    for record in store.stale(older_than):
        job_id = record["job_id"]
        try:
            kwargs: dict[str, Any] = json.loads(record["kwargs"])
        except ValueError as error:
            log.error("job %s: its stored request is not JSON (%s); not sent again", job_id, error)
            continue
        if seals is not None and not _sealed(store, seals, job_id, record, "kwargs", SEAL_FIELD):
            continue  # (``kwargs`` above is this record's own, checked here)
        store.touch(job_id)
        sender.send_task(EXPORT_TASK, kwargs=kwargs, queue=QUEUE, task_id=record.get("result_id"))
        log.warning("job %s: no sign of life for %.0fs; sent again", job_id, older_than)
        sent.append(job_id)
    return sent


def _sealed(
    store: JobStore,
    seals: Seals,
    job_id: str,
    record: dict[str, str],
    field: str,
    seal_field: str,
) -> bool:
    """Whether a trusted key sealed the ``record``'s ``field``; logged once if not, and the
    record is left out of later sweeps (``refused``), its expiry untouched."""
    if seals.valid(record.get(field, ""), record.get(seal_field)):
        return True
    log.error(
        "job %s: its stored %s carries no seal of a trusted key; not sent again "
        "(messages are signed: docs/configuration.md)",
        job_id,
        "request" if field == "kwargs" else "seal",
    )
    store.refuse(job_id)
    return False


def start(sender: Sender, client: redis.Redis, settings: Settings) -> threading.Thread | None:
    """Sweep every JANITOR_INTERVAL_SECONDS from a daemon thread of the worker's main process."""
    interval = settings.janitor_interval_seconds
    if interval <= 0:
        return None
    store = JobStore(client)
    older_than = stale_after(settings)
    signing = settings.message_signing
    seals = Seals(signing.trusted) if signing else None

    def run() -> None:
        while True:
            threading.Event().wait(interval)
            try:
                if client.set(JANITOR_LOCK_KEY, "1", nx=True, ex=max(1, int(interval))):
                    sweep(store, sender, older_than, seals)
            except redis.RedisError as error:
                log.warning("janitor skipped a sweep: %s", error)
            except Exception:  # the thread must outlive anything one sweep meets
                log.exception("janitor sweep failed; the next one comes in %.0fs", interval)

    thread = threading.Thread(target=run, name="janitor", daemon=True)
    thread.start()
    return thread

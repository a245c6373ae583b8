"""A record of every export sent, written before its message, so a lost message is sent again.

Celery's Redis transport takes a message off the queue (BRPOP) and records it as unacknowledged
in a second step; a Redis restart between the two loses it (kombu#1733 fixed one such window,
not all). A job whose first message was lost would leave no trace: no worker ever saw it. With
this record in the job store, the workers' janitor finds the job untouched and sends it again
under the same result id (``workers/export/janitor.py``); the job runs once
(docs/contract.md §4).

The record is the job record the workers keep (``workers/state/jobs.py``), in its first state; the
worker that runs the export completes it. Applications that send the task by name with a plain
Celery app write none, and are not covered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis

from contact_exports_client.keys import RECORD_TTL_SECONDS, job_key

#: A job's state from when it is sent until a worker moves it on.
QUEUED = "queued"
#: The record's field holding the seal over its ``kwargs`` (``signing.seal``), where messages
#: are signed.
SEAL_FIELD = "kwargs_seal"
#: The field holding the seal over the record's owed object ``seal`` (the janitor asks for it
#: again only if a trusted key sealed it).
OWED_SEAL_FIELD = "seal_seal"

# Only a job never seen before gets a record: a repeat must not reset a record the workers keep.
_RECORD_NEW = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'result_id', ARGV[2], 'kwargs', ARGV[3],
           'submitted_at', ARGV[4], 'updated_at', ARGV[4])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], ARGV[7], ARGV[6]) end
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


def record_submission(
    client: redis.Redis,
    job_id: str,
    result_id: str,
    kwargs: Mapping[str, Any],
    seal: Callable[[str], str] | None = None,
) -> bool:
    """Record a job about to be sent; True if it is new, False if a record was there already.

    ``seal`` signs the stored request where messages are signed (``signing.seal``), so the
    janitor may send it again."""
    body = json.dumps({**kwargs, "job_id": job_id})
    created = client.eval(
        _RECORD_NEW,
        1,
        job_key(job_id),
        QUEUED,
        result_id,
        body,
        time.time(),
        RECORD_TTL_SECONDS,
        seal(body) if seal else "",
        SEAL_FIELD,
    )
    return bool(created)

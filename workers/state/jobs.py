"""Export jobs: the small JSON record that travels between the chain's steps, and its copy in
Redis that turns at-least-once delivery into exactly-once effects.

Each step reads the record before its side effect and writes it after, so a repeated step
resumes instead of redoing: one job_id, one activity, one object, one result. A job that fails
for good stays as a dead letter, with its reason and the request needed to run it again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Any

import redis

from contact_exports_client.keys import (
    DEAD_LETTERS_KEY,
    DEAD_SEALS_KEY,
    JOB_KEY_PREFIX,
    OWNED_ACTIVITIES_KEY,
    RECORD_TTL_SECONDS,
    job_id_of,
    job_key,
    job_lease_key,
    job_uploads_key,
    posting_lease_key,
)
from contact_exports_client.ledger import OWED_SEAL_FIELD, QUEUED, SEAL_FIELD
from workers.export.job import ActivityRef, Job
from workers.state.leases import DEFAULT_TTL_SECONDS, Lease

#: Attempt counters live in the record as ``attempts:<step>``; failures of a step as
#: ``attempts:failures:<stage>`` (``count_failure``).
ATTEMPTS_FIELD = "attempts:"
FAILURES_FIELD = f"{ATTEMPTS_FIELD}failures:"


class JobState(StrEnum):
    QUEUED = QUEUED
    CREATING = "creating"
    POLLING = "polling"
    DOWNLOADING = "downloading"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: The record's field set when the job is cancelled: steps check it, whatever ``state`` says.
CANCELLED_AT = "cancelled_at"
#: The record's field set when the janitor refused to send its work again (an untrusted seal).
REFUSED_AT = "janitor_refused_at"
#: The record's field set when the job's store did not take its streaming PUT: why. Every later
#: attempt, in whichever process, sends the export in parts (``workers.export.download``).
IN_PARTS = "in_parts"
#: States a job does not leave (a late duplicate step must not reopen it).
ENDED = frozenset({JobState.COMPLETED.value, JobState.FAILED.value, JobState.CANCELLED.value})

# Cancel a job still on its way, atomically with completing it (``_COMPLETE``): one of the two
# wins. Its leases go, so a download in progress finds its lease lost at the next heartbeat.
# ARGV[3], when not empty, names the cancel request: every worker that hears the same request
# (the remote-control command reaches them all) answers 'cancelled by this request', and only
# the one that cancelled answers 'cancelled'.
_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'unknown' end
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then
  if ARGV[3] ~= '' and redis.call('HGET', KEYS[1], 'cancel_request') == ARGV[3] then
    return 'cancelled by this request'
  end
  return 'cancelled already'
end
if state == 'completed' or state == 'failed' then return state end
redis.call('HSET', KEYS[1], 'state', 'cancelled', ARGV[2], ARGV[1], 'updated_at', ARGV[1])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'cancel_request', ARGV[3]) end
redis.call('DEL', KEYS[2], KEYS[3])
return 'cancelled'
"""
# Move a job to ARGV[2] unless it was cancelled or ended (ARGV[5..]: the ended states).
_MOVE_ON = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
local state = redis.call('HGET', KEYS[1], 'state')
for i = 5, #ARGV do if state == ARGV[i] then return 0 end end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'updated_at', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""
# Complete a job unless it was cancelled; ARGV holds the fields, name then value.
_COMPLETE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
for i = 2, #ARGV - 1, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[#ARGV])
return 1
"""


class JobStore:
    """Job state in Redis, shared by every worker on every machine."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    @staticmethod
    def _key(job_id: str) -> str:
        return job_key(job_id)

    def _write(self, job_id: str, **fields: str | int | float) -> None:
        pipe = self._redis.pipeline()
        self._stage(pipe, job_id, **fields)
        pipe.execute()

    def _stage(self, pipe: Any, job_id: str, **fields: str | int | float) -> None:
        """Add a record update to a pipeline (MULTI/EXEC): applied with the rest, or not at all."""
        key = self._key(job_id)
        for name, value in {**fields, "updated_at": time.time()}.items():
            pipe.hset(key, name, value)
        pipe.expire(key, RECORD_TTL_SECONDS)

    def _get(self, job_id: str, name: str) -> str | None:
        value = self._redis.hget(self._key(job_id), name)
        return _text(value) if value is not None else None

    # -- the record ------------------------------------------------------------------------

    def open(
        self, job: Job, kwargs: dict[str, Any], seal: Callable[[str], str] | None = None
    ) -> bool:
        """Create the record on first sight of a job; a repeat leaves it as it is, and the job
        keeps the deadline and result id it was first given. True if the job is new.

        ``seal`` signs the stored request where messages are signed (the janitor sends again
        only a sealed one); without it a seal the caller's record had is dropped."""
        key = self._key(job.job_id)
        if self._redis.hsetnx(key, "created_at", time.time()):
            text = json.dumps(kwargs)
            pipe = self._redis.pipeline()  # one MULTI: the request and its seal go together
            pipe.hdel(key, SEAL_FIELD)
            if seal is not None:
                pipe.hset(key, SEAL_FIELD, seal(text))
            self._stage(
                pipe,
                job.job_id,
                state=JobState.QUEUED.value,
                account=job.account,
                bucket=job.bucket,
                key=job.key,
                deadline=job.deadline,
                result_id=job.result_id,
                started_at=job.started_at,
                kwargs=text,
            )
            pipe.execute()
            return True
        deadline = self._get(job.job_id, "deadline")
        if deadline is None:  # reopened after a failure: a fresh deadline
            self._write(job.job_id, deadline=job.deadline, result_id=job.result_id)
        else:
            job.deadline = float(deadline)
        # The key was rendered from its template when the job was first opened ({date} and the
        # like): a repeat writes where the first delivery would have, and says it began then.
        first_key, first_start = self._redis.hmget(key, ["key", "started_at"])
        job.key = _text(first_key) if first_key is not None else job.key
        job.started_at = _text(first_start) if first_start is not None else job.started_at
        self._write(job.job_id)  # seen alive
        return False

    def touch(self, job_id: str) -> None:
        """The job is alive (a poll ran): the janitor leaves it alone."""
        self._write(job_id)

    def stale(self, older_than: float) -> list[dict[str, str]]:
        """Unfinished jobs nothing has touched for ``older_than`` seconds and whose steps hold
        no lease: their messages were lost (a Redis restart can drop a message in flight)."""
        now = time.time()
        found = []
        for job_id, record in self.records():  # one pipelined read, not one per job
            if record.get("state") in ENDED or CANCELLED_AT in record or REFUSED_AT in record:
                continue
            if float(record.get("updated_at", now)) > now - older_than or "kwargs" not in record:
                continue
            if self._redis.exists(
                job_lease_key(job_id, "create"), job_lease_key(job_id, "download")
            ):
                continue
            found.append({"job_id": job_id, **record})
        return found

    def _job_ids(self) -> Iterator[str]:
        """Every job with a record; the leases and upload sets under it are skipped, by type as
        well as by name: keys of the layout before ``/`` (``<record>:uploads``, a set) may still
        be there after an upgrade, and reading one as a record would end the whole sweep."""
        for raw in self._redis.scan_iter(f"{JOB_KEY_PREFIX}*", count=500, _type="hash"):
            job_id = job_id_of(_text(raw))
            if job_id is not None:
                yield job_id

    def records(self) -> list[tuple[str, dict[str, str]]]:
        """Every job's record, with its id (one SCAN, then one pipelined read)."""
        job_ids = list(self._job_ids())
        pipe = self._redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self._key(job_id))
        return [
            (job_id, {_text(k): _text(v) for k, v in raw.items()})
            for job_id, raw in zip(job_ids, pipe.execute(), strict=True)
            if raw  # expired between the SCAN and the read
        ]

    def record(self, job_id: str) -> dict[str, str]:
        raw = self._redis.hgetall(self._key(job_id))
        return {_text(k): _text(v) for k, v in raw.items()}

    def set_state(self, job_id: str, state: JobState) -> None:
        """Move the job on, unless it already ended (or was cancelled): a late duplicate must
        not reopen it. Checked and written in one step, against a cancel in between."""
        self._redis.eval(
            _MOVE_ON,
            1,
            self._key(job_id),
            CANCELLED_AT,
            state.value,
            time.time(),
            RECORD_TTL_SECONDS,
            *ENDED,
        )

    def count_attempt(self, job_id: str, step: str) -> int:
        """Counts each run of each step: repeated deliveries show up here."""
        attempts = int(self._redis.hincrby(self._key(job_id), f"{ATTEMPTS_FIELD}{step}", 1))
        self._write(job_id, last_step=step)
        return attempts

    def count_failure(self, job_id: str, stage: str) -> int:
        """Counts a transient failure of a stage; the retry policy gives up past its limit."""
        return self.count_attempt(job_id, f"failures:{stage}")

    # -- creating the activity -------------------------------------------------------------

    def activity(self, job_id: str, shard: int = 0) -> ActivityRef | None:
        """The activity already created for this shard of the job, if any."""
        names = ("activity_id", "self_href", "results_href")
        values = self._redis.hmget(self._key(job_id), [_field(n, shard) for n in names])
        activity_id, self_href, results_href = (_text(v) if v is not None else None for v in values)
        if activity_id is None or self_href is None:
            return None
        return ActivityRef(activity_id, self_href, results_href)

    def mark_posting(self, job_id: str, shard: int = 0) -> None:
        """Written just before the POST: if the answer is lost, a later attempt knows to look
        for the activity that POST may have created before posting again."""
        self._redis.hdel(self._key(job_id), _field("post_ended_at", shard))
        self._write(
            job_id,
            **{_field("post_started_at", shard): time.time()},
            state=JobState.CREATING.value,
        )

    def mark_posted(self, job_id: str, shard: int = 0) -> None:
        """The POST came back (with or without an answer): its window is closed."""
        self._write(job_id, **{_field("post_ended_at", shard): time.time()})

    def clear_posting(self, job_id: str, shard: int = 0) -> None:
        """Forget a POST that certainly created nothing."""
        names = [_field("post_started_at", shard), _field("post_ended_at", shard)]
        self._redis.hdel(self._key(job_id), *names)

    def post_window(self, job_id: str, shard: int = 0) -> tuple[float, float | None] | None:
        """When the last POST for this shard started and, if it came back, ended."""
        names = [_field("post_started_at", shard), _field("post_ended_at", shard)]
        started, ended = self._redis.hmget(self._key(job_id), names)
        if started is None:
            return None
        return float(started), float(ended) if ended is not None else None

    def remember_activity(
        self,
        job_id: str,
        activity_id: str,
        self_href: str,
        results_href: str | None,
        shard: int = 0,
    ) -> None:
        fields: dict[str, str | int | float] = {
            _field("activity_id", shard): activity_id,
            _field("self_href", shard): self_href,
            "state": JobState.POLLING.value,
        }
        if results_href:
            fields[_field("results_href", shard)] = results_href
        # One transaction: an activity owned but not recorded (a process killed in between) would
        # be skipped by the lost-create search and posted again (bench/soak.py found one).
        pipe = self._redis.pipeline()
        pipe.sadd(OWNED_ACTIVITIES_KEY, activity_id)
        self._stage(pipe, job_id, **fields)
        pipe.execute()

    def owns_activity(self, activity_id: str) -> bool:
        return bool(self._redis.sismember(OWNED_ACTIVITIES_KEY, activity_id))

    # -- uploads ---------------------------------------------------------------------------

    def store_in_parts(self, job_id: str, reason: str) -> None:
        """The job's streaming PUT was refused, or stored wrong, after its results were read:
        the retry, in whichever process takes it, sends parts."""
        self._write(job_id, **{IN_PARTS: reason})

    def in_parts(self, job_id: str) -> str | None:
        """Why the job goes in parts (``store_in_parts``), or None."""
        return self._get(job_id, IN_PARTS)

    def add_upload(self, job_id: str, upload_id: str) -> None:
        key = job_uploads_key(job_id)
        self._redis.sadd(key, upload_id)
        self._redis.expire(key, RECORD_TTL_SECONDS)

    def drop_upload(self, job_id: str, upload_id: str) -> None:
        self._redis.srem(job_uploads_key(job_id), upload_id)

    def uploads(self, job_id: str) -> list[str]:
        return sorted(_text(u) for u in self._redis.smembers(job_uploads_key(job_id)))

    # -- leases ----------------------------------------------------------------------------

    def lease(self, job_id: str, step: str, ttl: float = DEFAULT_TTL_SECONDS) -> Lease:
        return Lease(self._redis, job_lease_key(job_id, step), ttl=ttl)

    def posting_lease(self, account: str, ttl: float) -> Lease:
        """One POST at a time per account, so an activity whose answer was lost can be told
        apart from another job's by when it was created."""
        return Lease(self._redis, posting_lease_key(account), ttl=ttl)

    # -- outcomes --------------------------------------------------------------------------

    def result(self, job_id: str) -> dict[str, Any] | None:
        raw = self._get(job_id, "result")
        return json.loads(raw) if raw else None

    def keep_stored(self, job_id: str, stored: dict[str, Any]) -> None:
        """What an attempt stored at the job's key, before its manifest and result are written:
        an attempt that fails after this point takes the object as it is next time
        (``download.stored_before``) instead of downloading the export again."""
        self._write(job_id, stored=json.dumps(stored))

    def kept_stored(self, job_id: str) -> dict[str, Any] | None:
        raw = self._get(job_id, "stored")
        return json.loads(raw) if raw else None

    def save_result(
        self,
        job_id: str,
        result: dict[str, Any],
        *,
        seal: dict[str, Any] | None = None,
        sign: Callable[[str], str] | None = None,
    ) -> bool:
        """The job is done, unless it was cancelled first (then False, and nothing changes);
        ``seal``, if given, is the seal still owed to its object, kept until ``sealed`` so the
        janitor can ask for it again if its message is lost (where messages are signed,
        ``sign`` seals it, for the janitor to check)."""
        now = time.time()
        fields: dict[str, str | float] = {
            "result": json.dumps(result),
            "state": JobState.COMPLETED.value,
            "finished_at": now,
            "updated_at": now,
        }
        if seal is not None:
            fields["seal"] = json.dumps(seal)
            if sign is not None:
                fields[OWED_SEAL_FIELD] = sign(str(fields["seal"]))
        pairs = [item for name, value in fields.items() for item in (name, value)]
        done = self._redis.eval(
            _COMPLETE, 1, self._key(job_id), CANCELLED_AT, *pairs, RECORD_TTL_SECONDS
        )
        return bool(done)

    def cancel(self, job_id: str, request: str = "") -> str:
        """Cancel the job if it is on its way; what it was: ``cancelled`` (now), ``cancelled
        already``, ``completed``, ``failed`` or ``unknown`` (no record). ``request`` names the
        cancel request: one that this same request cancelled answers ``cancelled by this
        request`` (another worker acted on it first)."""
        outcome = self._redis.eval(
            _CANCEL,
            3,
            self._key(job_id),
            job_lease_key(job_id, "create"),
            job_lease_key(job_id, "download"),
            time.time(),
            CANCELLED_AT,
            request,
        )
        return _text(outcome)

    def refuse(self, job_id: str) -> None:
        """The janitor will not send this record's work again (it carries no trusted seal): it
        is left out of later sweeps, and expires as it would have."""
        self._redis.hset(self._key(job_id), REFUSED_AT, time.time())

    def cancelled(self, job_id: str) -> bool:
        return bool(self._redis.hexists(self._key(job_id), CANCELLED_AT))

    def sealed(self, job_id: str) -> None:
        """The job's object carries its figures: no seal is owed any more."""
        pipe = self._redis.pipeline()
        pipe.hdel(self._key(job_id), "seal")
        self._stage(pipe, job_id, sealed_at=time.time())
        pipe.execute()

    def seal_requested(self, job_id: str) -> None:
        """The seal was asked for (again) now: ``owed_seals`` waits for it from here."""
        self._write(job_id, seal_requested_at=time.time())

    def owed_seals(self, older_than: float) -> list[tuple[str, dict[str, Any]]]:
        """Completed jobs whose seal is still owed ``older_than`` seconds after it was last asked
        for (or after the job finished): its message was lost. Each comes with the seal it owes."""
        now = time.time()
        found = []
        for job_id in self._job_ids():
            seal, refused, *stamps = self._redis.hmget(
                self._key(job_id), ["seal", REFUSED_AT, "finished_at", "seal_requested_at"]
            )
            asked = max((float(_text(stamp)) for stamp in stamps if stamp is not None), default=0)
            if seal is None or refused is not None or asked > now - older_than:
                continue
            found.append((job_id, json.loads(_text(seal))))
        return found

    def fail(self, job_id: str, step: str, error: BaseException) -> None:
        """Keep a job that failed for good as a dead letter, with what is needed to rerun it."""
        now = time.time()
        self._write(
            job_id,
            state=JobState.FAILED.value,
            failed_step=step,
            error_type=type(error).__name__,
            error_message=str(error)[:2000],
            finished_at=now,
        )
        self._redis.zadd(DEAD_LETTERS_KEY, {job_id: now})

    def give_up_seal(self, job_id: str, error: BaseException) -> None:
        """The seal will not be tried again: no longer owed, and kept with why in the record and
        among the dead seals. The job stays completed (its result stands): it is not a failed
        job, and not among the dead letters that ``retry`` runs again."""
        now = time.time()
        pipe = self._redis.pipeline()
        pipe.hdel(self._key(job_id), "seal")
        self._stage(
            pipe,
            job_id,
            seal_error_type=type(error).__name__,
            seal_error_message=str(error)[:2000],
            seal_failed_at=now,
        )
        pipe.zadd(DEAD_SEALS_KEY, {job_id: now})
        pipe.execute()

    def dead_seals(self, limit: int = 100) -> list[str]:
        """Completed jobs whose seal was given up, newest first."""
        found = self._redis.zrevrange(DEAD_SEALS_KEY, 0, limit - 1)
        return [_text(i) for i in found if isinstance(i, bytes | str)]

    def dead_letters(self, limit: int = 100) -> list[dict[str, str]]:
        """Failed jobs, newest first."""
        ids = [
            _text(i)
            for i in self._redis.zrevrange(DEAD_LETTERS_KEY, 0, limit - 1)
            if isinstance(i, bytes | str)
        ]
        return [{"job_id": i, **self.record(i)} for i in ids]

    def reopen(self, job_id: str) -> dict[str, Any]:
        """Clear a dead letter so the job can run again; returns the export kwargs it had.

        The failed activity is forgotten (a rerun needs a new one), and so are the failure
        counts the retry policy gives up by: the rerun gets its full retries. The counts of
        runs per step stay, so the record still tells how often this job was tried.
        """
        kwargs_raw = self._get(job_id, "kwargs")
        if kwargs_raw is None or self._get(job_id, "state") != JobState.FAILED.value:
            raise KeyError(f"no failed job {job_id!r}")
        forget = {
            "activity_id",
            "self_href",
            "results_href",
            "post_started_at",
            "post_ended_at",
            "error_type",
            "error_message",
            "failed_step",
            "finished_at",
            "deadline",
        }
        stale = [
            name
            for name in self.record(job_id)
            if name.split(":")[0] in forget or name.startswith(FAILURES_FIELD)
        ]
        if stale:
            self._redis.hdel(self._key(job_id), *stale)
        self._redis.hincrby(self._key(job_id), "reruns", 1)
        self._write(job_id, state=JobState.QUEUED.value)
        self._redis.zrem(DEAD_LETTERS_KEY, job_id)
        kwargs: dict[str, Any] = json.loads(kwargs_raw)
        return kwargs


def _field(name: str, shard: int) -> str:
    """Shard 0 keeps the plain name, so single-activity records read as they always did."""
    return name if shard == 0 else f"{name}:{shard}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

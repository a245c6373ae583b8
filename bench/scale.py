"""Scale: thousands of exports in flight on 4 workers x 4 slots, measured and projected.

    .venv/bin/python bench/scale.py                                  # 1,000, 5,000, 10,000
    .venv/bin/python bench/scale.py --inflight 50,200 --activity-seconds 20 --out /tmp/scale
    .venv/bin/python bench/scale.py --rate 50                        # the control plane alone

Per size, everything is fresh: a ``redis-server`` of its own (so ``INFO memory`` holds nothing
but this run), ``rclone serve s3``, the sandbox with its own limits off (no per-second limit, no
daily quota, no cap on queued activities: the workers' limiter is what limits), activities of
``--activity-seconds`` and CSVs of ``--contacts`` rows, so S3 and CPU are not what is measured.
Then ``--workers`` real ``celery worker`` processes x ``--concurrency`` slots, configured as in
production except for what the run needs (``worker_env``): the workers' rate limit is
``CC_RATE_LIMIT_PER_SECOND=--rate`` (4, the default, Constant Contact's limit) and the daily
budget ``CC_RATE_LIMIT_PER_DAY=--per-day`` (raised, so a long run is not stopped at 10,000
requests; the daily quota is worked out on paper at the end).

N exports are enqueued as a caller would, one ``submit_export`` after another (the job record,
then the message), plus ``--quiet-exports`` for a second account right behind them: how long
those few take while N of the first account wait shows whether the budget is shared fairly.
Until every export has a result, or ``--max-minutes`` pass, every ``--tick`` seconds the run
reads each unfinished export's state as its caller would see it (one ``MGET`` of the result
keys: PENDING, PROGRESS with its stage and ``waiting``, SUCCESS, FAILURE), Redis's
``used_memory``, and the workers' RSS; every 30 s it also takes a census of Redis's keys
(``bench/redis_usage.py``). Afterwards the sandbox's request log gives the API calls and polls
of each completed export, and the cluster's request rate in 10 s buckets against 4 req/s.

How each figure is measured:

* Redis bytes per in-flight job: (peak ``used_memory`` during the run - ``used_memory`` with
  the workers idle before enqueueing) / exports enqueued. "residual" is the same after drain
  (job records stay 14 days, results 7): what each export leaves behind.
* Broker messages per export: ``LPUSH`` calls (``INFO commandstats``) / exports. Kombu's Redis
  transport publishes every task message with one ``LPUSH`` (chain steps, every
  ``retry(countdown=...)`` of a poll or of a step the limiter turned away, seals) and uses it for
  nothing else but putting back an unacknowledged message. Redis commands per export, the
  benchmark's own reads left out, are given too.
* API calls and polls per export: sandbox requests carrying the activity id of a completed
  export, averaged over completed exports (the create, the polls, the results GET).
* Poll and API rates: requests / (last - first request); the peak is the busiest 10 s bucket;
  "most in 1 s" the busiest sliding second (it must stay at 4 or below).
* Drain: from the first ``submit_export`` to the latest ``finished_at`` of a result. A run cut
  by ``--max-minutes`` reports what it measured and a projection: (the calls still owed = N x
  calls/export - calls made) / the measured API rate, added to the time run so far.

Results: ``--out``/scale.md, scale.json and scale.png (one row per size; trials belong in
another ``--out``). All processes are stopped when a size ends, on an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from cryptography.fernet import Fernet

from bench.ratelimit import most_in_one_second
from bench.redis_usage import KeyGroup, RedisUsage
from bench.soak import rss
from contact_exports_client import make_app, submit_export
from devstack.redis_server import RedisServer
from devstack.s3server import RcloneS3, rclone_binary
from devstack.worker import WorkerProcess, stop_all
from sandbox.testing import SandboxProcess
from workers.constant_contact.ratelimit import DEFAULT_MARGIN, DEFAULT_PER_SECOND
from workers.constant_contact.tokens import AccountStore, Credentials, make_cipher
from workers.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
BUCKET = "bench-scale"
TOKEN = "bench-scale-token"  # noqa: S105 — the sandbox's fake token
QUIET_TOKEN = "bench-scale-quiet-token"  # noqa: S105 — the sandbox's fake token
QUIET_ACCOUNT = "quiet"
DEFAULT_ACCOUNT = "default"
FIELDS = ["email_address"]
#: Constant Contact's limits per API key (application), whatever the workers enforce.
API_PER_SECOND = 4.0
API_PER_DAY = 10_000
SECONDS_PER_DAY = 86_400
#: API calls per export before one is measured: a create, 6 polls for a 5-10 minute activity
#: and the results GET (docs/performance.md, "Measured"); only for the expected drain time.
EXPECTED_CALLS = 8.0
#: The workers' defaults this benchmark keeps: the job deadline and the longest countdown.
DEADLINE = float(Settings.model_fields["export_deadline_seconds"].default)
RETRY_MAX = float(Settings.model_fields["retry_max_seconds"].default)
#: Seconds between key censuses (a SCAN and a MEMORY USAGE per key: cheap, not free).
CENSUS_SECONDS = 30.0
#: Seconds between progress lines on stdout.
PRINT_SECONDS = 30.0
#: Result keys read per MGET.
MGET_BATCH = 1000
#: After the last result, how long the seals (tasks after the result) may take to settle.
SETTLE_SECONDS = 60.0
#: Bucket width of the request-rate series.
BUCKET_SECONDS = 10.0
#: Worker log lines counted: the limiter's come-backs and the janitor's re-sends.
LOG_MARKS = {
    "budget_waits": "for the request budget",
    "janitor_resends": "no sign of life",
    "errors": '"levelname": "ERROR"',
}


# -- the run's parts -------------------------------------------------------------------------


@dataclass
class Job:
    """One enqueued export as its caller sees it."""

    job_id: str
    account: str
    enqueued: float
    state: str = "queued"
    result: dict[str, Any] | None = None
    finished: float | None = None

    @property
    def done(self) -> bool:
        return self.state in ("completed", "failed")


def progress_class(meta: dict[str, Any] | None) -> str:
    """What the caller's ``snapshot`` would say, in one word or two: ``queued`` (no state yet:
    the message waits in the broker), ``started``, the PROGRESS stage (with ``waiting`` when the
    step waits for the request budget), ``completed`` or ``failed``."""
    if meta is None:
        return "queued"
    status = str(meta.get("status"))
    info = meta.get("result")
    if status == "PROGRESS" and isinstance(info, dict):
        waiting = info.get("waiting")
        return f"{info.get('stage')}, waiting {waiting}" if waiting else str(info.get("stage"))
    if status == "RETRY" and isinstance(info, dict):
        return f"retry ({info.get('exc_type')})"  # a step of the caller's own id retrying
    return {"SUCCESS": "completed", "FAILURE": "failed", "STARTED": "started"}.get(
        status, status.lower()
    )


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Tracker:
    """Reads every unfinished export's result key, as ``contact_exports_client.snapshot``
    would, one MGET per thousand; finished ones are not read again."""

    def __init__(self, client: redis.Redis, jobs: list[Job]) -> None:
        self.client = client
        self.jobs = jobs
        self._open = list(jobs)
        #: The first result meta seen of each class, so the report can show what callers read.
        self.examples: dict[str, Any] = {}

    @property
    def finished(self) -> bool:
        return not self._open

    def poll(self) -> Counter[str]:
        """Update every unfinished job; return the in-flight jobs counted by class."""
        classes: Counter[str] = Counter()
        still: list[Job] = []
        for start in range(0, len(self._open), MGET_BATCH):
            batch = self._open[start : start + MGET_BATCH]
            raws = self.client.mget([f"celery-task-meta-{job.job_id}" for job in batch])
            for job, raw in zip(batch, raws, strict=True):
                meta = json.loads(raw) if raw is not None else None
                job.state = progress_class(meta)
                if job.state not in self.examples:
                    text = raw.decode() if isinstance(raw, bytes) else raw
                    self.examples[job.state] = text[:400] if text is not None else None
                if job.done:
                    assert meta is not None
                    self._finish(job, meta)
                else:
                    classes[job.state] += 1
                    still.append(job)
        self._open = still
        return classes

    @staticmethod
    def _finish(job: Job, meta: dict[str, Any]) -> None:
        result = meta.get("result")
        job.result = result if isinstance(result, dict) else {"error": str(result)}
        stamp = job.result.get("finished_at") or meta.get("date_done")
        job.finished = epoch(str(stamp)) if stamp else time.time()


@dataclass
class Watch:
    """What the run saw while it waited: memory, RSS, the callers' view, the key censuses."""

    samples: list[dict[str, Any]] = field(default_factory=list)
    peak_memory: int = 0
    peak_dataset: int = 0
    peak_at: float = 0.0
    #: ``INFO memory`` at the peak, whole: where the bytes above the keys went.
    peak_info: dict[str, Any] = field(default_factory=dict)
    peak_rss: int = 0
    peak_in_flight: dict[str, int] = field(default_factory=dict)
    census: list[KeyGroup] = field(default_factory=list)
    census_memory: int = 0
    cut: bool = False


@dataclass(frozen=True)
class Cluster:
    """The running parts of one size."""

    broker: RedisServer
    sandbox: SandboxProcess
    workers: list[WorkerProcess]
    usage: RedisUsage


# -- setting up ------------------------------------------------------------------------------


def scratch_dir(stack: ExitStack) -> Path:
    """A temporary directory on tmpfs when there is room: Redis's append-only file is fsynced on
    every write (as devstack's RedisServer runs it), and a virtual disk's fsync is not what this
    benchmark measures."""
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and shutil.disk_usage(shm).free > 2 << 30 else None
    return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scale-", dir=base)))


def worker_env(
    args: argparse.Namespace, broker: RedisServer, s3: RcloneS3, sandbox: SandboxProcess, key: str
) -> dict[str, str]:
    """The workers' environment: production defaults (poll schedule, retries, visibility
    timeout, janitor) except the rate limits, which the run chooses, and the account store's
    key, which a second account needs."""
    env = {
        **s3.env(),
        "CELERY_BROKER_URL": broker.url,
        "CELERY_RESULT_BACKEND": broker.url,
        "CC_API_BASE_URL": sandbox.api_base,
        "CC_ACCESS_TOKEN": TOKEN,
        "CC_RATE_LIMIT_PER_SECOND": repr(args.rate),
        "CC_RATE_LIMIT_PER_DAY": str(args.per_day),
        "S3_BUCKET": BUCKET,
    }
    if args.quiet_exports:
        env["CC_TOKEN_ENCRYPTION_KEY"] = key
    return env


def start_cluster(stack: ExitStack, args: argparse.Namespace) -> Cluster:
    """Redis, S3, the sandbox and the workers, each stopped by ``stack`` (workers first)."""
    root = scratch_dir(stack)
    broker = stack.enter_context(RedisServer(root / "redis"))
    s3 = stack.enter_context(RcloneS3(root / "s3", root / "rclone.log"))
    s3.create_bucket(BUCKET)
    sandbox = stack.enter_context(
        SandboxProcess(
            tokens=[TOKEN, QUIET_TOKEN],
            contacts=args.contacts,
            processing_seconds=args.activity_seconds,
            rate_limit=0,
            extra_args=("--max-queued", "0", "--daily-quota", "0", "--quiet"),
        )
    )
    key = Fernet.generate_key().decode()
    client = broker.admin_client()
    stack.callback(client.close)
    if args.quiet_exports:
        AccountStore(client, make_cipher(key)).put(QUIET_ACCOUNT, Credentials(QUIET_TOKEN, None))
    env = worker_env(args, broker, s3, sandbox, key)
    workers = [
        WorkerProcess(env, root / f"worker{i}.log", name=f"scale{i}", concurrency=args.concurrency)
        for i in range(args.workers)
    ]
    stack.callback(stop_all, workers)
    for worker in workers:
        worker.spawn()  # all boot at once
    for worker in workers:
        worker.wait_ready()
    return Cluster(broker, sandbox, workers, RedisUsage(client))


def wait_idle(usage: RedisUsage, seconds: float = 3.0) -> None:
    """Until the workers' start-up writes are over: no LPUSH or EVALSHA for ``seconds``."""
    quiet_since = time.monotonic()
    last = usage.mark().calls
    deadline = time.monotonic() + 30.0
    while time.monotonic() - quiet_since < seconds and time.monotonic() < deadline:
        time.sleep(0.5)
        now = usage.mark().calls
        if any(now.get(c, 0) != last.get(c, 0) for c in ("lpush", "evalsha", "hset")):
            quiet_since = time.monotonic()
        last = now


# -- running one size ------------------------------------------------------------------------


def enqueue(cluster: Cluster, n: int, quiet: int) -> list[Job]:
    """N exports for the default account, then ``quiet`` for the second, as fast as one caller
    sends them: ``submit_export`` writes the job record, then the message."""
    app = make_app(cluster.broker.url, cluster.broker.url)
    jobs: list[Job] = []
    for index in range(n + quiet):
        account = DEFAULT_ACCOUNT if index < n else QUIET_ACCOUNT
        job = Job(str(uuid.uuid4()), account, time.time())
        submit_export({"fields": FIELDS}, account=account, job_id=job.job_id, app=app)
        jobs.append(job)
    return jobs


def watch(cluster: Cluster, tracker: Tracker, args: argparse.Namespace, t0: float) -> Watch:
    """Every ``--tick`` s until every export has a result or ``--max-minutes`` pass."""
    seen = Watch()
    deadline = t0 + args.max_minutes * 60
    next_census = next_print = time.time()
    while True:
        now = time.time()
        classes = tracker.poll()
        used = cluster.usage.used_memory()
        memory = used["used_memory"]
        seen.peak_dataset = max(seen.peak_dataset, used["used_memory_dataset"])
        workers_rss = sum(rss(w) for w in cluster.workers)
        seen.peak_rss = max(seen.peak_rss, workers_rss)
        if memory > seen.peak_memory:
            seen.peak_memory, seen.peak_at = memory, now - t0
            seen.peak_info = cluster.usage.client.info("memory")
        if sum(classes.values()) >= sum(seen.peak_in_flight.values()):
            seen.peak_in_flight = dict(classes)
        seen.samples.append(
            {
                "t": round(now - t0, 1),
                "used_memory": memory,
                "dataset": used["used_memory_dataset"],
                "rss": workers_rss,
                **classes,
            }
        )
        if now >= next_census:
            census = cluster.usage.census()
            if memory >= seen.census_memory:
                seen.census, seen.census_memory = census, memory
            next_census = time.time() + CENSUS_SECONDS
        if now >= next_print:
            print_progress(now - t0, tracker, classes, memory)
            next_print = now + PRINT_SECONDS
        if tracker.finished:
            return seen
        if now >= deadline:
            seen.cut = True
            return seen
        time.sleep(max(0.0, args.tick - (time.time() - now)))


def print_progress(elapsed: float, tracker: Tracker, classes: Counter[str], memory: int) -> None:
    states = Counter(job.state for job in tracker.jobs if job.done)
    flying = ", ".join(f"{name} {count}" for name, count in classes.most_common())
    print(
        f"  {elapsed:6.0f} s: {states['completed']} completed, {states['failed']} failed; "
        f"in flight: {flying or 'none'}; Redis {memory / 2**20:.1f} MiB",
        flush=True,
    )
    failed = next((job for job in tracker.jobs if job.state == "failed"), None)
    if failed is not None and failed.result is not None:
        # Failures are not what this benchmark measures: say at once what they are.
        print(
            f"  first failure: {failed.result.get('exc_type')}: "
            f"{str(failed.result.get('exc_message'))[:300]}",
            flush=True,
        )


def settle(usage: RedisUsage) -> None:
    """After the last result: until the seals are sent and run (no LPUSH for 5 s)."""
    wait_idle(usage, seconds=5.0)


def count_log_marks(workers: Sequence[WorkerProcess]) -> dict[str, int]:
    counts = dict.fromkeys(LOG_MARKS, 0)
    for worker in workers:
        text = worker.log()
        for name, mark in LOG_MARKS.items():
            counts[name] += text.count(mark)
    return counts


def run_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """One size, from a fresh cluster to its figures."""
    with ExitStack() as stack:
        cluster = start_cluster(stack, args)
        usage = cluster.usage
        wait_idle(usage)
        before_memory = usage.used_memory()
        before_calls = usage.mark()
        t0 = time.time()
        jobs = enqueue(cluster, n, args.quiet_exports)
        enqueue_seconds = time.time() - t0
        enqueued_memory = usage.used_memory()["used_memory"]
        print(f"  enqueued {len(jobs)} in {enqueue_seconds:.1f} s", flush=True)
        tracker = Tracker(usage.client, jobs)
        seen = watch(cluster, tracker, args, t0)
        elapsed = time.time() - t0
        if not seen.cut:
            settle(usage)
        after_calls = usage.mark()
        after_memory = usage.used_memory()
        after_census = usage.census()
        log = cluster.sandbox.requests()
        logged = int(cluster.sandbox.summary()["total"])
        marks = count_log_marks(cluster.workers)
        examples = tracker.examples
    return figures(
        n,
        args,
        jobs=jobs,
        seen=seen,
        log=log,
        logged=logged,
        t0=t0,
        elapsed=elapsed,
        enqueue_seconds=enqueue_seconds,
        memory={
            "before": before_memory,
            "enqueued": enqueued_memory,
            "after": after_memory,
        },
        commands=RedisUsage.service_commands(before_calls, after_calls),
        after_census=after_census,
        marks=marks,
        examples=examples,
    )


# -- figures ---------------------------------------------------------------------------------


def stats(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return {"median": statistics.median(ordered), "p95": p95, "max": ordered[-1]}


@dataclass(frozen=True)
class Entry:
    ts: float
    endpoint: str
    status: int
    activity_id: str | None


def parse_log(log: list[dict[str, Any]]) -> list[Entry]:
    entries = [
        Entry(epoch(str(e["ts"])), str(e["endpoint"]), int(e["status"]), e.get("activity_id"))
        for e in log
    ]
    return sorted(entries, key=lambda e: e.ts)


def rate_series(entries: Sequence[Entry], t0: float) -> dict[str, list[float]]:
    """Requests per second in ``BUCKET_SECONDS`` buckets from ``t0``: all of them, and polls."""
    if not entries:
        return {"t": [], "api": [], "polls": []}
    buckets = int((entries[-1].ts - t0) // BUCKET_SECONDS) + 1
    api = [0] * buckets
    polls = [0] * buckets
    for entry in entries:
        index = max(0, int((entry.ts - t0) // BUCKET_SECONDS))
        api[index] += 1
        polls[index] += entry.endpoint == "get_activity"
    return {
        "t": [i * BUCKET_SECONDS for i in range(buckets)],
        "api": [count / BUCKET_SECONDS for count in api],
        "polls": [count / BUCKET_SECONDS for count in polls],
    }


def over_limit(times: Sequence[float], per_second: float) -> int:
    """Requests that arrived with ``per_second`` others already in the second before them:
    the ones a server counting a sliding second would refuse."""
    over, first = 0, 0
    for index, moment in enumerate(times):
        while moment - times[first] >= 1.0:
            first += 1
        over += index - first >= per_second
    return over


def api_figures(entries: Sequence[Entry], t0: float, limit: float) -> dict[str, Any]:
    """The cluster's request rates, from the sandbox's log; ``limit`` is the workers' own."""
    polls = [e for e in entries if e.endpoint == "get_activity"]
    span = entries[-1].ts - entries[0].ts if len(entries) > 1 else 0.0
    series = rate_series(entries, t0)
    return {
        "calls": len(entries),
        "by_endpoint": dict(Counter(e.endpoint for e in entries)),
        "by_status": dict(Counter(str(e.status) for e in entries)),
        "span_seconds": span,
        "mean_api_rate": len(entries) / span if span else 0.0,
        "mean_poll_rate": len(polls) / span if span else 0.0,
        "peak_api_rate": max(series["api"], default=0.0),
        "peak_poll_rate": max(series["polls"], default=0.0),
        "most_in_1s": most_in_one_second([e.ts for e in entries]),
        "over_limit": over_limit([e.ts for e in entries], limit),
        "series": series,
    }


def per_export(
    entries: Sequence[Entry], jobs: Sequence[Job], activity_seconds: float
) -> dict[str, Any]:
    """Per completed export: its API calls and polls, and what its caller waited for."""
    calls: Counter[str] = Counter()
    polls: Counter[str] = Counter()
    created: dict[str, float] = {}
    downloaded: dict[str, float] = {}
    for e in entries:
        if e.activity_id is None:
            continue
        calls[e.activity_id] += 1
        polls[e.activity_id] += e.endpoint == "get_activity"
        if e.endpoint == "create_export" and e.status == 201:
            created.setdefault(e.activity_id, e.ts)
        if e.endpoint == "get_results" and e.status == 200:
            downloaded.setdefault(e.activity_id, e.ts)
    done = [j for j in jobs if j.state == "completed" and j.result and j.finished]
    ids = [(j, str(j.result["activity_id"])) for j in done if j.result]
    in_time = [(j, a) for j, a in ids if a in created]
    return {
        "calls_per_export": statistics.fmean(calls[a] for _, a in ids) if ids else None,
        "polls_per_export": statistics.fmean(polls[a] for _, a in ids) if ids else None,
        "end_to_end": stats([(j.finished or 0) - j.enqueued for j, _ in ids]),
        "wait_before_create": stats([created[a] - j.enqueued for j, a in in_time]),
        "completion_to_download": stats(
            [downloaded[a] - created[a] - activity_seconds for _, a in in_time if a in downloaded]
        ),
        "activities_created": len(created),
    }


def fairness(jobs: Sequence[Job], t0: float) -> dict[str, Any]:
    """Each account's exports: how many finished, and their end-to-end seconds."""
    accounts: dict[str, Any] = {}
    for account in dict.fromkeys(j.account for j in jobs):
        mine = [j for j in jobs if j.account == account]
        done = [j for j in mine if j.state == "completed" and j.finished]
        accounts[account] = {
            "exports": len(mine),
            "completed": len(done),
            "end_to_end": stats([(j.finished or 0) - j.enqueued for j in done]),
            "states": dict(Counter(j.state for j in mine)),
        }
    return accounts


def figures(n: int, args: argparse.Namespace, **run: Any) -> dict[str, Any]:
    jobs: list[Job] = run["jobs"]
    seen: Watch = run["seen"]
    total = len(jobs)
    entries = parse_log(run["log"])
    api = api_figures(entries, run["t0"], args.rate)
    exports = per_export(entries, jobs, args.activity_seconds)
    states = Counter(j.state for j in jobs)
    finished = [j.finished for j in jobs if j.finished]
    memory = run["memory"]
    base = memory["before"]["used_memory"]
    commands: dict[str, int] = run["commands"]
    row: dict[str, Any] = {
        "n": n,
        "exports": total,
        "rate": args.rate,
        "enqueue_seconds": run["enqueue_seconds"],
        "elapsed_seconds": run["elapsed"],
        "cut": seen.cut,
        "completed": states["completed"],
        "failed": states["failed"],
        "failures": dict(
            Counter(str((j.result or {}).get("exc_type")) for j in jobs if j.state == "failed")
        ),
        "drain_seconds": max(finished) - run["t0"] if finished and not seen.cut else None,
        "memory": memory,
        "redis_bytes_per_job_enqueued": (run["memory"]["enqueued"] - base) / total,
        "redis_bytes_per_job_peak": (seen.peak_memory - base) / total,
        "redis_dataset_bytes_per_job_peak": (
            seen.peak_dataset - memory["before"]["used_memory_dataset"]
        )
        / total,
        "redis_peak_at_seconds": seen.peak_at,
        "redis_bytes_per_job_after": (memory["after"]["used_memory"] - base) / total,
        "redis_key_bytes_per_job": sum(g.bytes for g in seen.census) / total,
        "census_at_peak": [g.to_json() for g in seen.census],
        "census_at_peak_memory": seen.census_memory,
        "info_memory_at_peak": seen.peak_info,
        "census_after": [g.to_json() for g in run["after_census"]],
        "broker_messages_per_export": commands.get("lpush", 0) / total,
        "publishes_per_export": commands.get("publish", 0) / total,
        "redis_commands_per_export": sum(commands.values()) / total,
        "commands": commands,
        "api": api,
        "log_truncated": run["logged"] > len(entries),
        **exports,
        "accounts": fairness(jobs, run["t0"]),
        "in_flight_at_peak": seen.peak_in_flight,
        "result_examples": run["examples"],
        "workers_peak_rss": seen.peak_rss,
        "worker_log": run["marks"],
        "samples": seen.samples,
    }
    row["projection"] = projection(row, args)
    return row


def projection(row: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """How long the whole size takes at the budget, and, for a cut run, from what it measured:
    the calls still owed at the measured API rate."""
    calls = row["calls_per_export"] or EXPECTED_CALLS
    enforced = args.rate / (1 + DEFAULT_MARGIN)
    owed = max(0.0, row["exports"] * calls - row["api"]["calls"])
    rate = row["api"]["mean_api_rate"] or enforced
    return {
        "calls_per_export_used": calls,
        "enforced_rate": enforced,
        "at_budget_seconds": row["exports"] * calls / enforced + args.activity_seconds,
        "owed_calls": owed,
        "projected_drain_seconds": row["elapsed_seconds"] + owed / rate if row["cut"] else None,
    }


# -- reporting -------------------------------------------------------------------------------


def setup_text(args: argparse.Namespace, redis_version: str) -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    rclone = subprocess.run(
        [rclone_binary(), "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[:1]
    return "\n".join(
        [
            f"- when: {time.strftime('%Y-%m-%d %H:%M %Z')}; machine: {os.cpu_count()} CPUs, {cpu}; "
            f"{platform.python_implementation()} {platform.python_version()}",
            f"- Redis {redis_version}, one fresh server per size, AOF fsynced on every write "
            "(tmpfs); store: " + (rclone[0] if rclone else "rclone serve s3") + " on loopback",
            f"- workers: {args.workers} x {args.concurrency} slots (`celery worker`, prefork); "
            f"CC_RATE_LIMIT_PER_SECOND={args.rate:g} (permits {DEFAULT_MARGIN:.0%} wider: "
            f"{args.rate / (1 + DEFAULT_MARGIN):.2f} req/s), CC_RATE_LIMIT_PER_DAY={args.per_day}; "
            "everything else at its default (POLL_INITIAL_SECONDS 0.3, POLL_MAX_SECONDS 240, "
            "RETRY_MAX_SECONDS 120, JANITOR_INTERVAL_SECONDS 60)",
            f"- sandbox: activities of {args.activity_seconds:g} s (linear progress), "
            f"{args.contacts} contacts per CSV, no rate limit, no daily quota, no cap on queued "
            "activities",
            f"- callers: N exports for account `default`, then {args.quiet_exports} for account "
            f"`{QUIET_ACCOUNT}`, by `submit_export`; runs cut after {args.max_minutes:g} min",
        ]
    )


def cell(value: float | None, fmt: str = ".1f") -> str:
    return "—" if value is None else format(value, fmt)


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| N | enqueue s | Redis B/job: peak (keys; residual) | broker msgs/export "
        "| Redis cmds/export "
        "| API calls/export | polls/export | API req/s mean / peak 10 s / most in 1 s "
        "| polls/s mean (peak) | drain s | completed / failed |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    for r in rows:
        api = r["api"]
        drain = (
            f"cut at {r['elapsed_seconds']:.0f}; projected "
            f"{cell(r['projection']['projected_drain_seconds'], '.0f')}"
            if r["cut"]
            else cell(r["drain_seconds"], ".0f")
        )
        partial = " (so far)" if r["cut"] else ""
        lines.append(
            f"| {r['exports']} | {r['enqueue_seconds']:.1f} "
            f"| {r['redis_bytes_per_job_peak']:.0f} ({r['redis_key_bytes_per_job']:.0f}; "
            f"{r['redis_bytes_per_job_after']:.0f}) "
            f"| {r['broker_messages_per_export']:.1f}{partial} "
            f"| {r['redis_commands_per_export']:.0f}{partial} "
            f"| {cell(r['calls_per_export'])} | {cell(r['polls_per_export'])} "
            f"| {api['mean_api_rate']:.2f} / {api['peak_api_rate']:.1f} / {api['most_in_1s']} "
            f"| {api['mean_poll_rate']:.2f} ({api['peak_poll_rate']:.1f}) | {drain} "
            f"| {r['completed']} / {r['failed']} |"
        )
    return "\n".join(lines)


def details(r: dict[str, Any]) -> str:
    """The figures behind one row: where Redis's memory is, what callers saw, fairness."""
    groups = r["census_at_peak"]
    keys = sum(g["bytes"] for g in groups)
    census = ", ".join(
        f"`{g['pattern']}` {g['keys']} keys {g['bytes'] / 2**10:.0f} KiB" for g in groups[:6]
    ) + (f"; all keys {keys / 2**10:.0f} KiB, {keys / r['exports']:.0f} B/job")
    commands = ", ".join(f"{k} {v / r['exports']:.1f}" for k, v in list(r["commands"].items())[:8])
    flying = ", ".join(f"{k} {v}" for k, v in sorted(r["in_flight_at_peak"].items()))
    accounts = "; ".join(
        f"`{name}`: {a['completed']}/{a['exports']} completed, end to end "
        + (
            "median {median:.0f} s, max {max:.0f} s".format(**a["end_to_end"])
            if a["end_to_end"]
            else "—"
        )
        for name, a in r["accounts"].items()
    )

    def spread(name: str) -> str:
        s = r[name]
        return "—" if s is None else "median {median:.1f}, p95 {p95:.1f}, max {max:.1f}".format(**s)

    memory = r["memory"]
    peak = r["redis_bytes_per_job_peak"] * r["exports"] + memory["before"]["used_memory"]
    return "\n".join(
        [
            f"**N = {r['exports']}**"
            + (f" (cut after {r['elapsed_seconds'] / 60:.0f} min)" if r["cut"] else ""),
            f"- Redis used_memory: {memory['before']['used_memory'] / 2**20:.1f} MiB idle, "
            f"{memory['enqueued'] / 2**20:.1f} once enqueued "
            f"({r['redis_bytes_per_job_enqueued']:.0f} B/job), peak {peak / 2**20:.1f} "
            f"at {r['redis_peak_at_seconds']:.0f} s, "
            f"{memory['after']['used_memory'] / 2**20:.1f} at the end; the dataset alone (no "
            f"client buffers, no allocator overhead) peaked at "
            f"{r['redis_dataset_bytes_per_job_peak']:.0f} B/job",
            f"- keys near the peak (census at {r['census_at_peak_memory'] / 2**20:.1f} MiB): "
            f"{census}",
            f"- Redis commands per export: {commands}",
            f"- API: {r['api']['by_endpoint']}, statuses {r['api']['by_status']}; "
            f"{r['api']['over_limit']} arrived with {r['rate']:g} or more others in the second "
            "before them (the workers' limit)"
            + (" (the sandbox's log dropped its oldest entries)" if r["log_truncated"] else ""),
            f"- callers' view at the most in flight: {flying or '—'}; states seen: "
            f"{', '.join(sorted(r['result_examples']))}{retry_example(r)}",
            f"- seconds, completed exports: end to end {spread('end_to_end')}; enqueue to "
            f"activity created {spread('wait_before_create')}; activity done to download "
            f"{spread('completion_to_download')}",
            f"- accounts: {accounts}",
            f"- workers: peak RSS {r['workers_peak_rss'] / 2**20:.0f} MiB (all processes); log: "
            f"{r['worker_log']['budget_waits']} waits for the budget, "
            f"{r['worker_log']['janitor_resends']} janitor re-sends, "
            f"{r['worker_log']['errors']} errors; failures {r['failures'] or 'none'}",
        ]
    )


def retry_example(r: dict[str, Any]) -> str:
    """What a caller read while its export's download step was retrying, if one did."""
    found = [v for k, v in r["result_examples"].items() if k.startswith("retry") and v]
    return f" (a RETRY as read: `{found[0][:160]}`)" if found else ""


def paper(rows: Sequence[dict[str, Any]], args: argparse.Namespace) -> str:
    """Exports per day one API key can carry, from the measured calls and polls per export."""
    enforced = min(args.rate, API_PER_SECOND) / (1 + DEFAULT_MARGIN)
    lines = [
        "Exports per day per API key = min(4 req/s x 86,400 s, 10,000 requests/day) / requests "
        "per export: the daily quota binds as soon as an export costs more than 0.03 requests. "
        '"2 + polls" counts only the create, the polls and the results GET (no retries, no '
        "lookups).",
        "",
        "| N | API calls/export | polls/export | by 4 req/s alone | by 10,000/day "
        "| by 10,000/day at 2 + polls |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        calls, polls = r["calls_per_export"], r["polls_per_export"]
        if not calls or polls is None:
            continue
        lines.append(
            f"| {r['exports']} | {calls:.2f} | {polls:.2f} "
            f"| {API_PER_SECOND * SECONDS_PER_DAY / calls:,.0f} | {API_PER_DAY / calls:,.0f} "
            f"| {API_PER_DAY / (2 + polls):,.0f} |"
        )
    measured = [r["calls_per_export"] for r in rows if r["calls_per_export"]]
    calls = statistics.fmean(measured) if measured else EXPECTED_CALLS
    lines += [
        "",
        f"- At the workers' {enforced:.2f} req/s the day's {API_PER_DAY:,} requests are spent in "
        f"{API_PER_DAY / enforced / 60:.0f} min. Any poll schedule needs at least one poll: "
        f"{API_PER_DAY / 3:,.0f} exports/day is the ceiling of this design, whatever the schedule.",
        f"- Within one deadline (EXPORT_DEADLINE_SECONDS = {DEADLINE / 3600:g} h from when a "
        f"worker first takes the export) the per-second budget carries "
        f"{DEADLINE * enforced / calls:,.0f} exports at {calls:.1f} calls each: a larger burst "
        "cannot all finish in time even with the daily quota raised.",
        "- Assumptions: one API key (Constant Contact's limits are per application, shared by "
        "all its accounts); one activity per export (up to 500 contact_ids); no 429s, 5xx or "
        "token refreshes; activities as in the run "
        f"({args.activity_seconds:g} s, linear progress, millisecond timestamps).",
    ]
    return "\n".join(lines)


def beyond(rows: Sequence[dict[str, Any]], args: argparse.Namespace) -> str:
    """What the service does when callers ask for more than the budget: from the code, and what
    the runs showed of it."""
    lines = [
        "- **Queueing, no admission control.** `submit_export` always succeeds; the backlog "
        "lives in Redis. A step the limiter cannot serve within a second is rescheduled with a "
        f"countdown (at most RETRY_MAX_SECONDS, {RETRY_MAX:g} s) and holds no slot; it comes back "
        "as an ETA message, kept in `unacked` while a worker holds it.",
        "- **Daily quota.** Once the day's budget is spent every step waits for 00:00 UTC "
        '(PROGRESS `waiting: "quota_reset"`, `resumes_at`), re-checking Redis, not the API, at '
        "most every RETRY_MAX_SECONDS; a job whose deadline falls before the reset fails with "
        "`ExportTimedOut`.",
    ]
    for r in rows:
        peak = r["in_flight_at_peak"]
        waiting = sum(v for k, v in peak.items() if "waiting" in k)
        quiet = r["accounts"].get(QUIET_ACCOUNT)
        share = (
            f"; account `{QUIET_ACCOUNT}`'s {quiet['exports']} took "
            + (
                "median {median:.0f} s, max {max:.0f} s end to end".format(**quiet["end_to_end"])
                if quiet and quiet["end_to_end"]
                else "— (not finished)"
            )
            if quiet
            else ""
        )
        retries = max(
            (sum(v for k, v in s.items() if k.startswith("retry")) for s in r["samples"]),
            default=0,
        )
        lines.append(
            f"- N = {r['exports']}: at the most in flight, {waiting} of {sum(peak.values())} "
            f"showed PROGRESS `waiting: rate_limit`; up to {retries} at once read state RETRY "
            "with no info instead of PROGRESS (the download step, which runs under the caller's "
            "id, retrying); "
            f"{r['worker_log']['budget_waits'] / r['exports']:.1f} budget waits per export"
            + share
            + f" (activities of {args.activity_seconds:g} s)."
        )
    return "\n".join(lines)


def markdown(
    rows: Sequence[dict[str, Any]], args: argparse.Namespace, setup: str, command: str
) -> str:
    return (
        "\n\n".join(
            [
                "# Scale: exports in flight, measured and projected",
                f"`{command}`",
                setup,
                table(rows),
                "Redis B/job: (peak used_memory - idle) / N, which includes the 20 processes' "
                "connection buffers (INFO mem_clients_normal, 1-2 MiB), a fixed cost that weighs "
                "at small N; keys: MEMORY USAGE of every key at the census nearest the peak / N; "
                "residual: used_memory after the run, less idle, / N. "
                "Broker msgs: LPUSH calls / N. Redis cmds: every command but the benchmark's "
                "reads / N. API calls and polls: of completed exports. Rates: the sandbox's log, "
                "over the run; 10 s buckets. Drain: first submit to last finished_at.",
                *[details(r) for r in rows],
                "## Exports per day per API key",
                paper(rows, args),
                "## When callers ask for more",
                beyond(rows, args),
            ]
        )
        + "\n"
    )


def plot(rows: Sequence[dict[str, Any]], path: Path) -> bool:
    """Each figure against N, and the request rate and callers' view over time."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ns = [r["exports"] for r in rows]
    figure, axes = plt.subplots(2, 3, figsize=(16, 9))
    memory, costs, rates, drain, series, view = axes.flat
    memory.plot(ns, [r["redis_bytes_per_job_peak"] for r in rows], "o-", label="peak")
    memory.plot(ns, [r["redis_key_bytes_per_job"] for r in rows], "^-", label="keys at peak")
    memory.plot(ns, [r["redis_bytes_per_job_after"] for r in rows], "s--", label="residual")
    memory.set_title("Redis bytes per in-flight job")
    for key, label in (
        ("broker_messages_per_export", "broker msgs (LPUSH)"),
        ("calls_per_export", "API calls"),
        ("polls_per_export", "polls"),
    ):
        costs.plot(ns, [r[key] or 0 for r in rows], "o-", label=label)
    costs.set_title("per export")
    for key, label in (
        ("mean_api_rate", "API mean"),
        ("peak_api_rate", "API peak 10 s"),
        ("mean_poll_rate", "polls mean"),
    ):
        rates.plot(ns, [r["api"][key] for r in rows], "o-", label=label)
    rates.axhline(API_PER_SECOND, color="red", linestyle=":", label="4 req/s")
    rates.set_title("cluster requests/s")
    rates.set_ylim(bottom=0)
    measured = [r["drain_seconds"] or r["projection"]["projected_drain_seconds"] for r in rows]
    drain.plot(ns, measured, "o-", label="measured (projected if cut)")
    drain.plot(ns, [r["projection"]["at_budget_seconds"] for r in rows], "--", label="at budget")
    drain.set_title("time to drain, s")
    for r in rows:
        s = r["api"]["series"]
        series.plot(s["t"], s["api"], label=f"N={r['exports']}")
    series.axhline(API_PER_SECOND, color="red", linestyle=":")
    series.set_title("API requests/s, 10 s buckets")
    series.set_xlabel("s since first submit")
    largest = rows[-1]
    classes = sorted(
        {k for s in largest["samples"] for k in s} - {"t", "used_memory", "dataset", "rss"}
    )
    times = [s["t"] for s in largest["samples"]]
    for name in classes:
        view.plot(times, [s.get(name, 0) for s in largest["samples"]], label=name)
    view.set_title(f"callers' view, N={largest['exports']}")
    view.set_xlabel("s since first submit")
    for axis in (memory, costs, rates, drain):
        axis.set_xscale("log")
        axis.set_xlabel("exports in flight (N)")
    for axis in axes.flat:
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def write(rows: list[dict[str, Any]], args: argparse.Namespace, setup: str, command: str) -> Path:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.md").write_text(markdown(rows, args, setup, command))
    (out / "scale.json").write_text(
        json.dumps(
            {
                "command": command,
                "setup": setup,
                "args": vars(args) | {"out": str(out)},
                "runs": rows,
            },
            indent=1,
        )
    )
    if not plot(rows, out / "scale.png"):
        print("  no plot: matplotlib is not installed", flush=True)
    return out


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--inflight", default="1000,5000,10000", help="sizes, comma-separated")
    parser.add_argument("--activity-seconds", type=float, default=300.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4, help="slots per worker")
    parser.add_argument("--contacts", type=int, default=10, help="rows per CSV (keep it tiny)")
    parser.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_PER_SECOND,
        help="the workers' CC_RATE_LIMIT_PER_SECOND (default: production's 4)",
    )
    parser.add_argument(
        "--per-day", type=int, default=10_000_000, help="the workers' CC_RATE_LIMIT_PER_DAY"
    )
    parser.add_argument("--max-minutes", type=float, default=25.0, help="cut a size after this")
    parser.add_argument("--quiet-exports", type=int, default=3, help="for a second account")
    parser.add_argument("--tick", type=float, default=2.0, help="seconds between reads")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where scale.* go")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.inflight.split(",") if s.strip()]
    return args


@contextmanager
def terminated_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every process this run started is stopped."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def redis_version() -> str:
    found = shutil.which("redis-server")
    if found is None:
        return "not installed"
    text = subprocess.run([found, "--version"], capture_output=True, text=True, check=False)
    return next((w[2:] for w in text.stdout.split() if w.startswith("v=")), text.stdout.strip())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join(["bench/scale.py", *(argv if argv is not None else sys.argv[1:])])
    setup = setup_text(args, redis_version())
    print(f"{command}\n{setup}\n", flush=True)
    rows: list[dict[str, Any]] = []
    with terminated_as_interrupt():
        for n in args.sizes:
            budget = projection(
                {
                    "calls_per_export": None,
                    "exports": n + args.quiet_exports,
                    "api": {"calls": 0, "mean_api_rate": 0.0},
                    "elapsed_seconds": 0.0,
                    "cut": False,
                },
                args,
            )["at_budget_seconds"]
            print(
                f"N = {n}: at {EXPECTED_CALLS:g} calls/export and {args.rate:g} req/s the "
                f"budget alone takes about {budget / 60:.0f} min; cut after {args.max_minutes:g}",
                flush=True,
            )
            rows.append(run_size(n, args))
            out = write(rows, args, setup, command)
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(f"\n{table(rows)}\n\n{paper(rows, args)}\n\nwritten to {out}/scale.{{md,json,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

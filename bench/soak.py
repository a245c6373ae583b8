"""Soak test (not in CI): many exports through 4 workers while things keep breaking.

    .venv/bin/python bench/soak.py --exports 1000

Faults, all at once: 5xx and 429 bursts, bodies dropped mid-stream, answers to a create lost
after the activity was made, a pool process SIGKILLed every few seconds, and one restart of the
broker's Redis. Then it counts what a user would care about: completed, failed, duplicate
activities, duplicate or partial objects, open multipart uploads, and export time percentiles.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import signal
import statistics
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import redis

from contact_exports_client import make_app, submit_export
from contact_exports_client.keys import JOB_KEY_PREFIX, job_id_of
from devstack.redis_server import RedisServer
from devstack.s3server import RcloneS3
from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess
from workers.state.jobs import JobStore

BUCKET = "soak-exports"
TOKEN = "soak-token"  # noqa: S105 — the sandbox's fake token
FAULTS: list[dict[str, Any]] = [
    {"endpoint": "get_activity", "status": 503, "times": 3},
    {"endpoint": "create_export", "status": 429, "error_key": "throttled", "times": 2},
    {"endpoint": "create_export", "status": 503, "process": True, "times": 1},
    {"endpoint": "get_results", "drop_after_bytes": 20_000, "times": 1},
    {"endpoint": "get_results", "status": 502, "times": 2},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exports", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=4.0, help="seconds between kills")
    parser.add_argument("--keep", action="store_true", help="keep worker logs and data")
    parser.add_argument("--restart-after", type=float, default=5.0, help="seconds to Redis restart")
    args = parser.parse_args()
    with ExitStack() as stack:
        if args.keep:
            root = Path(tempfile.mkdtemp(prefix="soak-"))
            print(f"logs and data kept in {root}", flush=True)
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        broker = stack.enter_context(RedisServer(root / "redis"))
        s3 = stack.enter_context(RcloneS3(root / "s3", root / "rclone.log"))
        s3.create_bucket(BUCKET)
        sandbox = stack.enter_context(
            SandboxProcess(tokens=[TOKEN], contacts=400, processing_seconds=1.0, rate_limit=0)
        )
        env = {
            **s3.env(),
            "CELERY_BROKER_URL": broker.url,
            "CELERY_RESULT_BACKEND": broker.url,
            "CC_API_BASE_URL": sandbox.api_base,
            "CC_ACCESS_TOKEN": TOKEN,
            "CC_RATE_LIMIT_PER_SECOND": "200",
            "CC_RATE_LIMIT_PER_DAY": "1000000",
            "S3_BUCKET": BUCKET,
            "POLL_INITIAL_SECONDS": "0.5",
            "POLL_MAX_SECONDS": "2",
            "RETRY_INITIAL_SECONDS": "0.5",
            "RETRY_MAX_SECONDS": "2",
            "RETRY_MAX_ATTEMPTS": "20",
            "LEASE_TTL_SECONDS": "4",
            "BROKER_VISIBILITY_TIMEOUT": "20",
            "BROKER_RESTORE_INTERVAL": "2",
            "JANITOR_INTERVAL_SECONDS": "5",
        }
        workers = [
            stack.enter_context(
                WorkerProcess(
                    env, root / f"w{i}.log", name=f"soak{i}", concurrency=args.concurrency
                )
            )
            for i in range(args.workers)
        ]
        client = make_app(broker.url)
        stop = threading.Event()
        chaos = threading.Thread(
            target=make_chaos, args=(stop, sandbox, workers, args.kill_every), daemon=True
        )
        started = time.monotonic()
        # Sent as an application using contact_exports_client would: each job's record first.
        results = [submit_export({}, job_id=f"soak-{i}", app=client) for i in range(args.exports)]
        chaos.start()
        restarter = threading.Timer(args.restart_after, broker.restart)
        restarter.start()
        summaries, failures = collect(results)
        stop.set()
        restarter.cancel()
        elapsed = time.monotonic() - started
        await_seals(broker.url)
        report(args, summaries, failures, sandbox, s3, elapsed, broker.url)
        client.close()


def make_chaos(
    stop: threading.Event, sandbox: SandboxProcess, workers: list[WorkerProcess], every: float
) -> None:
    rng = random.Random(7)
    kills = 0
    while not stop.wait(every):
        sandbox.add_faults(rng.choice(FAULTS))
        worker = rng.choice(workers)
        if worker.process is None:
            continue
        children = psutil.Process(worker.process.pid).children()
        if children:
            rng.choice(children).send_signal(signal.SIGKILL)
            kills += 1
    print(f"chaos: {kills} pool processes killed")


def collect(results: list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    summaries: list[dict[str, Any]] = []
    failures: list[str] = []
    for result in results:
        while True:
            try:
                summaries.append(result.get(timeout=900))
                break
            except (redis.ConnectionError, OSError) as error:
                if result.state == "FAILURE":  # the export itself failed with this error
                    failures.append(f"{type(error).__name__}: {error}"[:200])
                    break
                time.sleep(0.5)  # the broker is restarting; ask again
            except Exception as error:
                failures.append(f"{type(error).__name__}: {error}"[:200])
                break
    return summaries, failures


def seconds(summary: dict[str, Any]) -> float:
    start = datetime.fromisoformat(summary["started_at"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(summary["finished_at"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def await_seals(broker_url: str, timeout: float = 600.0) -> None:
    """Seals run after results (tasks.sealing): wait until no job owes one, or report how many."""
    store = JobStore(redis.Redis.from_url(broker_url))
    deadline = time.monotonic() + timeout
    while (owed := len(store.owed_seals(older_than=0))) and time.monotonic() < deadline:
        time.sleep(0.5)
    if owed:
        print(f"  {owed} seals still owed after {timeout:.0f} s")


def report(
    args: argparse.Namespace,
    summaries: list[dict[str, Any]],
    failures: list[str],
    sandbox: SandboxProcess,
    s3: RcloneS3,
    elapsed: float,
    broker_url: str,
) -> None:
    client = s3.client()
    created = {
        e["activity_id"] for e in sandbox.requests(endpoint="create_export") if e.get("activity_id")
    }
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys += [o["Key"] for o in page.get("Contents", [])]
    bad_objects = 0
    for summary in summaries:
        stored = client.get_object(Bucket=BUCKET, Key=summary["key"])
        sealed = {k.lower(): v for k, v in stored["Metadata"].items()}.get("sha256")
        digest = hashlib.sha256(stored["Body"].read()).hexdigest()
        # Partial: bytes that are not the export, or an object never sealed with its sha256.
        bad_objects += not digest == sealed == summary["sha256"]
    try:
        uploads = client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    except client.exceptions.NoSuchUpload:
        uploads = []
    times = sorted(seconds(s) for s in summaries) or [0.0]
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(
        f"\nsoak: {args.exports} exports, {args.workers} workers x {args.concurrency}, "
        f"{elapsed:.0f} s"
    )
    print(
        f"| completed | failed | duplicate activities | extra or partial objects | open uploads "
        f"| p50 s | p99 s |\n|---|---|---|---|---|---|---|\n"
        f"| {len(summaries)} | {len(failures)} | {len(created) - len(summaries) - len(failures)} "
        f"| {len(keys) - len(summaries) + bad_objects} | {len(uploads)} "
        f"| {statistics.median(times):.1f} | {p99:.1f} |"
    )
    for failure in failures[:10]:
        print("  failed:", failure)
    owned: set[str] = set()
    store = redis.Redis.from_url(broker_url)
    for key in store.scan_iter(f"{JOB_KEY_PREFIX}*"):
        if job_id_of(key.decode()) is not None:
            record = store.hgetall(key)
            owned |= {v.decode() for k, v in record.items() if k.startswith(b"activity_id")}
    for entry in sandbox.requests(endpoint="create_export"):
        if entry.get("activity_id") and entry["activity_id"] not in owned:
            print("  activity owned by no job:", entry)


if __name__ == "__main__":
    main()

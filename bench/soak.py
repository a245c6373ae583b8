"""Chaos soak (not in CI): many exports through 3 workers while things keep breaking.

    .venv/bin/python bench/soak.py --exports 2000

Redis is a Sentinel group (a master, a replica, three Sentinels: ``devstack.sentinel``) and every
connection goes through the Sentinels. Faults, all during the run: 5xx and 429 bursts, bodies
dropped mid-stream, answers to a create lost after the activity was made, and the whole API
answering 503 for a while; a pool process SIGKILLed every few seconds; one whole worker
SIGKILLed (main process and pool) and replaced, as an orchestrator would; the Redis master
SIGKILLed (a Sentinel failover); and the S3 server SIGKILLed and started again on its data.
Then it counts what a user would care about: completed, failed, duplicate activities, duplicate
or partial objects, open multipart uploads, export time percentiles, and each worker's RSS
(main process and pool) at start and end.
"""

from __future__ import annotations

import argparse
import hashlib
import os
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
from contact_exports_client.redis_tls import redis_at
from devstack.s3server import RcloneS3, S3Server
from devstack.seaweedfs import SeaweedS3
from devstack.sentinel import MASTER_NAME, SentinelGroup
from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess
from workers.export.manifest import MANIFEST_SUFFIX, manifest_key
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
    parser.add_argument("--exports", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=4.0, help="seconds between kills")
    parser.add_argument("--keep", action="store_true", help="keep worker logs and data")
    parser.add_argument(
        "--store",
        choices=["seaweedfs", "rclone"],
        default="seaweedfs",
        help="the S3 server (rclone forgets objects' metadata, and so their seals, on a restart)",
    )
    parser.add_argument("--failover-after", type=float, default=20.0, help="s to kill the master")
    parser.add_argument("--worker-kill-after", type=float, default=40.0, help="s to kill a worker")
    parser.add_argument("--s3-outage-after", type=float, default=60.0, help="s to kill S3")
    parser.add_argument("--s3-outage", type=float, default=15.0, help="s S3 stays down")
    parser.add_argument("--api-outage-after", type=float, default=80.0, help="s to API 503s")
    parser.add_argument("--api-outage", type=float, default=15.0, help="s the API answers 503")
    parser.add_argument("--rss-every", type=float, default=30.0, help="s between RSS samples")
    args = parser.parse_args()
    with ExitStack() as stack:
        if args.keep:
            root = Path(tempfile.mkdtemp(prefix="soak-"))
            print(f"logs and data kept in {root}", flush=True)
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        group = stack.enter_context(SentinelGroup(root / "redis"))
        url = group.url(0)
        os.environ["BROKER_MASTER_NAME"] = MASTER_NAME  # for the client helper, as for the workers
        store = SeaweedS3 if args.store == "seaweedfs" else RcloneS3
        s3: S3Server = stack.enter_context(store(root / "s3", root / f"{args.store}.log"))
        s3.create_bucket(BUCKET)
        sandbox = stack.enter_context(
            SandboxProcess(tokens=[TOKEN], contacts=400, processing_seconds=1.0, rate_limit=0)
        )
        env = {
            **s3.env(),
            "CELERY_BROKER_URL": url,
            "CELERY_RESULT_BACKEND": url,
            "BROKER_MASTER_NAME": MASTER_NAME,
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

        def new_worker(i: int) -> WorkerProcess:
            worker = WorkerProcess(
                env, root / f"w{i}.log", name=f"soak{i}", concurrency=args.concurrency
            )
            return stack.enter_context(worker)

        workers = [new_worker(i) for i in range(args.workers)]
        rss_at_start = {w.name: rss(w) for w in workers}
        client = make_app(url, url)
        stop = threading.Event()
        chaos = threading.Thread(
            target=make_chaos, args=(stop, sandbox, workers, args.kill_every), daemon=True
        )
        started = time.monotonic()
        # Sent as an application using contact_exports_client would: each job's record first.
        results = [submit_export({}, job_id=f"soak-{i}", app=client) for i in range(args.exports)]
        chaos.start()
        events = [
            threading.Timer(args.failover_after, failover, (group,)),
            threading.Timer(args.worker_kill_after, replace_worker, (workers, new_worker)),
            threading.Timer(args.s3_outage_after, s3_outage, (s3, args.s3_outage)),
            threading.Timer(args.api_outage_after, api_outage, (sandbox, args.api_outage)),
        ]
        for event in events:
            event.daemon = True
            event.start()
        samples: list[tuple[float, dict[str, int]]] = []
        sampler = threading.Thread(
            target=sample_rss, args=(stop, workers, samples, args.rss_every), daemon=True
        )
        sampler.start()
        summaries, failures = collect(results)
        stop.set()
        sampler.join()
        for event in events:
            event.cancel()
        elapsed = time.monotonic() - started
        await_seals(url)
        report(args, summaries, failures, sandbox, s3, elapsed, url)
        print("| worker | RSS at start MiB | RSS at end MiB |\n|---|---|---|")
        for worker in workers:
            start = rss_at_start.get(worker.name)
            first = f"{start / 2**20:.0f}" if start else "(replacement)"
            end = rss(worker)
            last = f"{end / 2**20:.0f}" if end else "(killed)"
            print(f"| {worker.name} | {first} | {last} |")
        print_samples(samples)
        client.close()


def sample_rss(
    stop: threading.Event,
    workers: list[WorkerProcess],
    samples: list[tuple[float, dict[str, int]]],
    every: float,
) -> None:
    """Each live worker's main-process RSS every ``every`` seconds: the process that lives
    through the run (pool processes are killed and replaced by the chaos)."""
    started = time.monotonic()
    while True:
        row = {}
        for worker in list(workers):
            if worker.process is not None and worker.process.poll() is None:
                row[worker.name] = psutil.Process(worker.process.pid).memory_info().rss
        samples.append((time.monotonic() - started, row))
        if stop.wait(every):
            return


def print_samples(samples: list[tuple[float, dict[str, int]]]) -> None:
    names = sorted({name for _, row in samples for name in row})
    print("\nmain-process RSS, MiB, over the run\n| s | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for seconds, row in samples:
        cells = [f"{row[name] / 2**20:.0f}" if name in row else "" for name in names]
        print(f"| {seconds:.0f} | " + " | ".join(cells) + " |")


def rss(worker: WorkerProcess) -> int:
    """Resident bytes of a worker: its main process and its pool processes."""
    if worker.process is None or worker.process.poll() is not None:
        return 0
    main = psutil.Process(worker.process.pid)
    return sum(p.memory_info().rss for p in [main, *main.children(recursive=True)])


def failover(group: SentinelGroup) -> None:
    started = time.monotonic()
    old = group.kill_master()
    new = group.wait_failover(old)
    print(f"chaos: Redis master {old} killed, {new} promoted in {time.monotonic() - started:.1f} s")


def replace_worker(workers: list[WorkerProcess], new_worker: Any) -> None:
    """SIGKILL a whole worker, pool and all, then start another as an orchestrator would."""
    victim = workers[0]
    assert victim.process is not None
    main = psutil.Process(victim.process.pid)
    for process in [*main.children(recursive=True), main]:
        process.send_signal(signal.SIGKILL)
    victim.process.wait()
    workers.append(new_worker(len(workers)))
    print(f"chaos: worker {victim.name} SIGKILLed, {workers[-1].name} started")


def s3_outage(s3: S3Server, seconds: float) -> None:
    s3.kill()
    time.sleep(seconds)
    s3.start()
    print(f"chaos: S3 killed, back after {seconds:.0f} s")


def api_outage(sandbox: SandboxProcess, seconds: float) -> None:
    sandbox.add_faults({"endpoint": "*", "status": 503, "times": None})
    time.sleep(seconds)
    sandbox.clear_faults()
    print(f"chaos: the API answered 503 to everything for {seconds:.0f} s")


def make_chaos(
    stop: threading.Event, sandbox: SandboxProcess, workers: list[WorkerProcess], every: float
) -> None:
    rng = random.Random(7)
    kills = 0
    while not stop.wait(every):
        sandbox.add_faults(rng.choice(FAULTS))
        worker = rng.choice(workers)
        if worker.process is None or worker.process.poll() is not None:
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
    store = JobStore(redis_at(broker_url))
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
    s3: S3Server,
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
    manifests = {key for key in keys if key.endswith(MANIFEST_SUFFIX)}
    keys = [key for key in keys if key not in manifests]
    # Every completed export has its manifest; a manifest without its export is extra too.
    missing_manifests = sum(manifest_key(s["key"]) not in manifests for s in summaries)
    partial = unsealed = 0
    for summary in summaries:
        stored = client.get_object(Bucket=BUCKET, Key=summary["key"])
        sealed = {k.lower(): v for k, v in stored["Metadata"].items()}.get("sha256")
        digest = hashlib.sha256(stored["Body"].read()).hexdigest()
        partial += digest != summary["sha256"]  # bytes that are not the export
        unsealed += sealed != summary["sha256"]  # never sealed with its sha256
    try:
        uploads = client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    except client.exceptions.NoSuchUpload:
        uploads = []
    times = sorted(seconds(s) for s in summaries) or [0.0]
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(
        f"\nsoak: {args.exports} exports, {args.workers} workers x {args.concurrency}, "
        f"{args.store} on {s3.data_dir}, Redis Sentinel group, {elapsed:.0f} s"
    )
    print(
        f"| completed | failed | duplicate activities | extra objects | partial objects "
        f"| unsealed objects | missing manifests | open uploads | p50 s | p99 s |\n"
        f"|---|---|---|---|---|---|---|---|---|---|\n"
        f"| {len(summaries)} | {len(failures)} | {len(created) - len(summaries) - len(failures)} "
        f"| {len(keys) - len(summaries) + len(manifests) - len(summaries) + missing_manifests} "
        f"| {partial} | {unsealed} | {missing_manifests} | {len(uploads)} "
        f"| {statistics.median(times):.1f} | {p99:.1f} |"
    )
    for failure in failures[:10]:
        print("  failed:", failure)
    owned: set[str] = set()
    store = redis_at(broker_url)
    for key in store.scan_iter(f"{JOB_KEY_PREFIX}*"):
        if job_id_of(key.decode()) is not None:
            record = store.hgetall(key)
            owned |= {v.decode() for k, v in record.items() if k.startswith(b"activity_id")}
    for entry in sandbox.requests(endpoint="create_export"):
        if entry.get("activity_id") and entry["activity_id"] not in owned:
            print("  activity owned by no job:", entry)


if __name__ == "__main__":
    main()

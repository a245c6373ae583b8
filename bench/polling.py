"""Chain overhead, polling cost and latency, and worker capacity, measured on the sandbox.

    .venv/bin/python bench/polling.py            # overhead, 5 s and 60 s activities, capacity
    .venv/bin/python bench/polling.py --long     # adds 10-minute activities
    .venv/bin/python bench/polling.py --curves   # 5, 20, 60 s activities on every progress
                                                 # curve and timestamp resolution (--long: 10 min)
    .venv/bin/python bench/polling.py --curves --durations 600 --only late:seconds

The sandbox's and the project's rate limits are raised: this measures the chain and the poll
schedule, not the API budget. Results go to bench/results/polling.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
import requests
from celery import Celery

from contact_exports_client.keys import durations_key
from devstack.redis_server import RedisServer
from devstack.s3server import RcloneS3
from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess

TOKEN = "bench-token"  # noqa: S105 — the sandbox's fake token
BUCKET = "bench-polling"
RESULTS = Path(__file__).parent / "results" / "polling.md"


def when(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Bench:
    def __init__(self, sandbox: SandboxProcess, client: Celery) -> None:
        self.sandbox = sandbox
        self.client = client

    def run(self, count: int, processing: float, fields: list[str]) -> list[dict[str, Any]]:
        """Enqueue ``count`` exports at once; return per-export measurements."""
        self.sandbox.set_processing_seconds(processing)
        started = time.monotonic()
        results = [
            self.client.send_task(
                "contact_exports.export",
                kwargs={"export": {"fields": fields}},
                queue="contact_exports",
            )
            for _ in range(count)
        ]
        with ThreadPoolExecutor(16) as pool:
            summaries = list(pool.map(lambda r: r.get(timeout=3600), results))
        wall = time.monotonic() - started
        return [self.measure(s, wall) for s in summaries]

    def measure(self, summary: dict[str, Any], wall: float) -> dict[str, Any]:
        activity_id = summary["activity_id"]
        log = self.sandbox.requests(activity_id=activity_id)
        activity = requests.get(
            f"{self.sandbox.api_base}/activities/{activity_id}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        ).json()
        completed = when(activity["completed_at"])
        created = when(activity["created_at"])
        download = min(when(e["ts"]) for e in log if e["endpoint"] == "get_results")
        return {
            "calls": len(log),
            "polls": sum(e["endpoint"] == "get_activity" for e in log),
            "activity_seconds": completed - created,
            "delay": download - completed,
            "end_to_end": when(summary["finished_at"]) - when(summary["started_at"]),
            "wall": wall,
        }


def row(name: str, runs: list[dict[str, Any]]) -> str:
    def mean(key: str) -> float:
        return statistics.fmean(r[key] for r in runs)

    worst = max(r["delay"] for r in runs)
    return (
        f"| {name} | {len(runs)} | {mean('activity_seconds'):.1f} | {mean('polls'):.1f} "
        f"| {mean('calls'):.1f} | {mean('delay'):.2f} | {worst:.2f} "
        f"| {mean('end_to_end') - mean('activity_seconds'):.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="also 10-minute activities")
    parser.add_argument("--capacity", type=int, default=200, help="exports for the capacity run")
    parser.add_argument(
        "--curves", action="store_true", help="only the goal run: every curve and resolution"
    )
    parser.add_argument(
        "--only",
        default="",
        help="with --curves: these curve:resolution pairs, e.g. late:seconds,steps:seconds",
    )
    parser.add_argument(
        "--durations",
        default="",
        help="with --curves: activity seconds instead of 5,20,60 (and 600 with --long)",
    )
    args = parser.parse_args()
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-polling-")))
        broker = stack.enter_context(RedisServer(root / "redis"))
        s3 = stack.enter_context(RcloneS3(root / "s3", root / "rclone.log"))
        s3.create_bucket(BUCKET)
        sandbox = stack.enter_context(
            SandboxProcess(
                tokens=[TOKEN],
                contacts=1000,
                processing_seconds=0.0,
                rate_limit=0,
                extra_args=("--max-queued", "100000", "--daily-quota", "0", "--quiet"),
            )
        )
        env = {
            **s3.env(),
            "CELERY_BROKER_URL": broker.url,
            "CELERY_RESULT_BACKEND": broker.url,
            "CC_API_BASE_URL": sandbox.api_base,
            "CC_ACCESS_TOKEN": TOKEN,
            "CC_RATE_LIMIT_PER_SECOND": "1000",
            "CC_RATE_LIMIT_PER_DAY": "10000000",
            "S3_BUCKET": BUCKET,
            "LOG_FORMAT": "console",
        }
        stack.enter_context(WorkerProcess(env, root / "worker.log", name="bench", concurrency=2))
        client = Celery(broker=broker.url, backend=broker.url)
        bench = Bench(sandbox, client)
        if args.curves:
            durations = [float(d) for d in args.durations.split(",") if d] or None
            only = [tuple(pair.split(":", 1)) for pair in args.only.split(",") if pair]
            curves(bench, sandbox, args.long, durations=durations, only=only)
            client.close()
            return
        lines = [
            "| run | exports | activity s | polls/export | API calls/export "
            "| completion→download s (mean) | (worst) | overhead s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        # The worker's first export also pays for its cold start (the S3 client and its
        # credentials, first connections); it is shown on its own, and the overhead measured
        # after it.
        cold = bench.run(1, 0.0, ["email_address"])
        lines.append(row("first export after the worker started (cold)", cold))
        print(lines[-1], flush=True)
        # One at a time: the chain's own overhead, without queueing behind other exports.
        alone = [bench.run(1, 0.0, ["email_address"])[0] for _ in range(5)]
        lines.append(row("1,000 contacts, instant activity, one at a time", alone))
        print(lines[-1], flush=True)
        runs = [("5 s activity", 5, 5.0), ("60 s activity", 5, 60.0)]
        if args.long:
            runs.append(("10 min activity", 3, 600.0))
        for name, count, processing in runs:
            lines.append(row(name, bench.run(count, processing, ["email_address"])))
            print(lines[-1], flush=True)
        capacity = bench.run(args.capacity, 60.0, ["email_address"])
        lines.append(row(f"capacity: {args.capacity} at once, 1 worker x 2", capacity))
        print(lines[-1])
        wall = capacity[0]["wall"]
        text = (
            "\n".join(lines) + f"\n\nCapacity run: all {len(capacity)} finished in {wall:.0f} s.\n"
        )
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(text)
        print(text)
        client.close()


#: The goal: at most this many polls per export, and the download at most this long after the
#: activity completed: max(2 s, 10 % of the activity's duration).
MAX_POLLS = 6


def curves(
    bench: Bench,
    sandbox: SandboxProcess,
    long: bool,
    *,
    durations: list[float] | None = None,
    only: list[tuple[str, ...]] | None = None,
) -> None:
    """Every progress curve the sandbox serves, with timestamps in milliseconds or whole
    seconds, for 5, 20 and 60 s activities (and 10 min with ``long``), 3 exports each;
    ``durations`` and ``only`` (curve, resolution) narrow it, for a 10-minute run of a few
    curves (each row takes twice its activity's duration).

    Each row runs twice: *cold*, with no history of the request (its durations are deleted
    first, as for a request never sent before), then *warm*, the same request again, polled
    with the duration hint the cold run left (``workers.state.durations``).
    """
    print(
        "| curve | timestamps | activity s | run | polls/export (worst) | completion→download s "
        "(worst) | goal: polls ≤ 6, delay ≤ max(2 s, 10 %) |\n|---|---|---:|---|---:|---:|---|"
    )
    jobs = redis.Redis.from_url(bench.client.conf.result_backend)
    durations = durations or [5.0, 20.0, 60.0] + ([600.0] if long else [])
    for curve in ("linear", "steps", "late"):
        for resolution in ("millis", "seconds"):
            if only and (curve, resolution) not in only:
                continue
            sandbox.configure(progress_curve=curve, timestamp_resolution=resolution)
            for seconds in durations:
                for key in jobs.scan_iter(durations_key("*", "*")):
                    jobs.delete(key)
                for run in ("cold", "warm"):
                    runs = bench.run(3, seconds, ["email_address"])
                    polls = max(r["polls"] for r in runs)
                    delay = max(r["delay"] for r in runs)
                    met = polls <= MAX_POLLS and delay <= max(2.0, 0.1 * seconds)
                    print(
                        f"| {curve} | {resolution} | {seconds:.0f} | {run} | {polls} "
                        f"| {delay:.2f} | {'met' if met else 'missed'} |",
                        flush=True,
                    )
    jobs.close()


if __name__ == "__main__":
    main()

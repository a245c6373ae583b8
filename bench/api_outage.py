"""Constant Contact away for two minutes, at the default retry policy (not in CI).

    .venv/bin/python bench/api_outage.py --mode 503 --outage 120
    .venv/bin/python bench/api_outage.py --mode refuse --outage 120

One worker (4 slots) on its own Redis, rclone and sandbox; the sandbox is reached through
``devstack.tcpproxy.TcpProxy``. Half the exports are polling (their activities take 20 s) when
the API goes away (every answer 503, or every connection refused and the open ones reset), the
other half are submitted during the outage and meet it while creating. Printed: completed,
failed, duplicate activities, the most failures any export's stage counted (the policy allows
RETRY_MAX_ATTEMPTS = 8), the API requests made during the outage per export, and how long
after the API came back the last export finished (a step that met the outage may be in a
backoff of up to RETRY_MAX_SECONDS).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from contact_exports_client import make_app, submit_export
from devstack.redis_server import RedisServer
from devstack.s3server import RcloneS3
from devstack.tcpproxy import TcpProxy
from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess
from workers.state.jobs import JobStore

BUCKET = "outage-exports"
TOKEN = "outage-token"  # noqa: S105 — the sandbox's fake token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["503", "refuse"], default="503")
    parser.add_argument("--outage", type=float, default=120.0, help="seconds the API is away")
    parser.add_argument("--exports", type=int, default=20)
    args = parser.parse_args()
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="api-outage-")))
        broker = stack.enter_context(RedisServer(root / "redis", durable=False))
        s3 = stack.enter_context(RcloneS3(root / "s3", root / "rclone.log"))
        s3.create_bucket(BUCKET)
        sandbox = stack.enter_context(
            SandboxProcess(tokens=[TOKEN], contacts=400, processing_seconds=20.0, rate_limit=0)
        )
        host, _, rest = sandbox.api_base.split("//", 1)[1].partition("/")
        proxy = stack.enter_context(TcpProxy(int(host.rsplit(":", 1)[1])))
        env = {
            **s3.env(),
            "CELERY_BROKER_URL": broker.url,
            "CELERY_RESULT_BACKEND": broker.url,
            "CC_API_BASE_URL": proxy.url("/" + rest),
            "CC_ACCESS_TOKEN": TOKEN,
            "S3_BUCKET": BUCKET,
        }  # the retry and poll settings stay at their defaults
        stack.enter_context(WorkerProcess(env, root / "worker.log", name="outage", concurrency=4))
        client = make_app(broker.url)
        jobs = JobStore(redis.Redis.from_url(broker.url))
        half = args.exports // 2
        results = [submit_export({}, job_id=f"outage-{n}", app=client) for n in range(half)]
        waiting = {"", "queued", "creating"}  # until every one has its activity
        while any(jobs.record(f"outage-{n}").get("state", "") in waiting for n in range(half)):
            time.sleep(0.1)
        began = time.time()
        if args.mode == "503":
            sandbox.add_faults({"endpoint": "*", "status": 503, "times": None})
        else:
            proxy.refuse()
        results += [
            submit_export({}, job_id=f"outage-{n}", app=client) for n in range(half, args.exports)
        ]
        time.sleep(max(0.0, args.outage - (time.time() - began)))
        ended = time.time()
        if args.mode == "503":
            sandbox.clear_faults()
        else:
            proxy.accept()
        completed, failed = 0, []
        for result in results:
            try:
                result.get(timeout=3600)
                completed += 1
            except Exception as error:
                failed.append(f"{type(error).__name__}: {error}"[:160])
        last = time.time()
        report(args, sandbox, jobs, began, ended, last, completed, failed)
        client.close()


def report(
    args: argparse.Namespace,
    sandbox: SandboxProcess,
    jobs: JobStore,
    began: float,
    ended: float,
    last: float,
    completed: int,
    failed: list[str],
) -> None:
    log = sandbox.requests()
    created = [e for e in log if e["endpoint"] == "create_export" and e.get("activity_id")]
    during = [e for e in log if began <= _seconds(e["ts"]) <= ended]
    most = 0
    for n in range(args.exports):
        record: dict[str, Any] = jobs.record(f"outage-{n}")
        counts = [int(v) for k, v in record.items() if k.startswith("attempts:failures:")]
        most = max([most, *counts])
    # A refused connection never reaches the sandbox, so its log cannot count those attempts.
    during_cell = (
        f"{len(during) / args.exports:.1f}"
        if args.mode == "503"
        else "not seen (refused before the sandbox)"
    )
    print(
        f"\nAPI outage ({args.mode}) of {ended - began:.0f} s, {args.exports} exports, "
        "one worker x 4, default retry policy (2 s doubling to 120 s, 8 failures)\n"
        "| completed | failed | duplicate activities | most failures of a stage "
        "| requests during the outage per export | last finished after the API came back |\n"
        "|---|---|---|---|---|---|\n"
        f"| {completed} | {len(failed)} | {len(created) - completed - len(failed)} | {most} "
        f"| {during_cell} | {last - ended:.0f} s |"
    )
    for failure in failed[:5]:
        print("  failed:", failure)


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


if __name__ == "__main__":
    main()

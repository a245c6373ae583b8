"""``make demo``: the whole service on this machine, exporting the sandbox's contacts to S3.

Starts (or reuses) Redis, starts an S3 server (data under .demo/, git-ignored), the sandbox and
one worker; enqueues an export exactly as another application would (send_task by name); shows
its progress; prints where the CSV landed and its first lines; stops what it started.

The S3 server is rclone unless ``--s3 seaweedfs`` (``make demo S3_SERVER=seaweedfs``) asks for
SeaweedFS, which checks every checksum the worker sends.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import uuid
from pathlib import Path

import redis
from celery import Celery
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from devstack.s3server import RcloneS3, S3Server
from devstack.seaweedfs import SeaweedS3
from devstack.worker import WorkerProcess
from sandbox.testing import SandboxProcess

HERE = Path(".demo")
REDIS_URL = os.environ.get("DEMO_REDIS_URL", "redis://127.0.0.1:6379/8")
BUCKET = "contact-exports"
TOKEN = "demo-token"  # noqa: S105 — the sandbox's fake token
CONTACTS = int(os.environ.get("DEMO_CONTACTS", "10000"))
TIMEOUT = 300.0

console = Console()


def s3_server(name: str) -> S3Server:
    if name == "seaweedfs":
        return SeaweedS3(HERE.resolve() / "seaweedfs", HERE / "seaweedfs.log")
    return RcloneS3(HERE.resolve() / "s3", HERE / "rclone.log")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.demo", description=__doc__)
    parser.add_argument(
        "--s3", choices=("rclone", "seaweedfs"), default="rclone", help="the S3 server to start"
    )
    args = parser.parse_args(argv)
    HERE.mkdir(exist_ok=True)
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.ConnectionError:
        console.print(f"[red]Redis is not answering at {REDIS_URL}; run `make redis`.")
        return 1
    with contextlib.ExitStack() as stack:
        console.print(f"starting the S3 server ({args.s3}), the sandbox and a worker …")
        s3 = stack.enter_context(s3_server(args.s3))
        s3.create_bucket(BUCKET)
        sandbox = stack.enter_context(
            SandboxProcess(tokens=[TOKEN], contacts=CONTACTS, processing_seconds=3.0)
        )
        env = {
            **s3.env(),
            "CELERY_BROKER_URL": REDIS_URL,
            "CELERY_RESULT_BACKEND": REDIS_URL,
            "CC_API_BASE_URL": sandbox.api_base,
            "CC_ACCESS_TOKEN": TOKEN,
            "S3_BUCKET": BUCKET,
            "POLL_INITIAL_SECONDS": "0.5",
            "POLL_MAX_SECONDS": "2",
        }
        stack.enter_context(WorkerProcess(env, HERE / "worker.log", name="demo", concurrency=2))
        client = Celery(broker=REDIS_URL, backend=REDIS_URL)
        stack.callback(client.close)
        job_id = f"demo-{uuid.uuid4().hex[:8]}"
        console.print(f"enqueueing export [bold]{job_id}[/] of {CONTACTS:,} sandbox contacts")
        result = client.send_task(
            "contact_exports.export",
            kwargs={"export": {}, "job_id": job_id},
            queue="contact_exports",
        )
        summary = follow(result)
        show(summary, s3)
    return 0


def follow(result: object) -> dict[str, object]:
    from celery.result import AsyncResult

    assert isinstance(result, AsyncResult)
    columns = (
        TextColumn("{task.description:<12}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%  {task.fields[size]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("queued", total=100, size="")
        deadline = time.monotonic() + TIMEOUT
        while not result.ready():
            if time.monotonic() > deadline:
                raise TimeoutError("the export did not finish in time; see .demo/worker.log")
            state: str = result.state
            info = result.info if state == "PROGRESS" else None
            if isinstance(info, dict):
                size = f"{int(info.get('bytes') or 0) / 1e6:.1f} MB" if info.get("bytes") else ""
                progress.update(
                    bar,
                    description=str(info.get("stage")),
                    completed=int(info.get("percent_done") or 0),
                    size=size,
                )
            time.sleep(0.1)
        summary: dict[str, object] = result.get(timeout=5)
        progress.update(bar, description="stored", completed=100, size="")
    return summary


def show(summary: dict[str, object], s3: S3Server) -> None:
    console.print(f"\n[green]done[/]: {summary['uri']}")
    console.print(
        f"  bytes {summary['bytes']:,}  rows {summary['rows']:,}  sha256 {summary['sha256']}"
    )
    client = s3.client()
    body = client.get_object(Bucket=str(summary["bucket"]), Key=str(summary["key"]))["Body"]
    head = body.read(2048).decode("utf-8", errors="replace").splitlines()[:5]
    console.print("  first lines:")
    for line in head:
        console.print(
            f"    {line}", markup=False, highlight=False, no_wrap=True, overflow="ellipsis"
        )


if __name__ == "__main__":
    sys.exit(main())

"""Enqueue a contact export and follow it, from an application that cannot import this project.

Only ``celery[redis]`` is needed: the task goes by name (docs/contract.md §1), progress arrives as
Celery PROGRESS states (§2) and a failure raises an exception whose type name is one of §3.
The request's shape is ``schemas/export-task-kwargs.schema.json``; the result's is
``schemas/export-result.schema.json``.

    CELERY_BROKER_URL=redis://localhost:6379/0 python examples/enqueue_export.py \
        --status active --field email_address --field first_name --job-id crm-sync-1

Progress goes to stderr, one line per report; the result dict to stdout, as JSON. Exit codes:
0 stored, 1 the export failed, 5 still running after --timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeoutError

EXPORT_TASK = "contact_exports.export"
QUEUE = "contact_exports"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Enqueue a contact export and follow it.")
    parser.add_argument("--list-id", action="append", default=[], help="a list's UUID")
    parser.add_argument("--status", choices=["active", "unsubscribed", "removed"])
    parser.add_argument("--field", action="append", default=[], help="a column to export")
    parser.add_argument("--job-id", help="idempotency key: sending it again is safe")
    parser.add_argument("--account", help="whose Constant Contact credentials (default)")
    parser.add_argument("--bucket", help="destination bucket (default: the workers' S3_BUCKET)")
    parser.add_argument("--key", help="destination key (default: the workers' key template)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait")
    return parser.parse_args(argv)


def task_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The kwargs of contact_exports.export; what is left out takes the worker's default."""
    export: dict[str, Any] = {}
    if args.list_id:
        export["list_ids"] = args.list_id
    if args.status:
        export["status"] = args.status
    if args.field:
        export["fields"] = args.field
    kwargs: dict[str, Any] = {"export": export}
    if args.job_id:
        kwargs["job_id"] = args.job_id
    if args.account:
        kwargs["account"] = args.account
    destination = {k: v for k, v in (("bucket", args.bucket), ("key", args.key)) if v}
    if destination:
        kwargs["destination"] = destination
    return kwargs


def show_progress(meta: dict[str, Any]) -> None:
    """Called by Celery for each state the worker publishes while we wait."""
    info = meta.get("result")
    if meta.get("status") == "PROGRESS" and isinstance(info, dict):
        print(
            f"{info.get('stage')}: {info.get('percent_done')}% done, {info.get('bytes')} bytes",
            file=sys.stderr,
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    broker = os.environ.get("CELERY_BROKER_URL", DEFAULT_REDIS_URL)
    backend = os.environ.get("CELERY_RESULT_BACKEND", broker)
    client = Celery(broker=broker, backend=backend)
    client.conf.update(
        task_serializer="json", accept_content=["json"], result_accept_content=["json"]
    )
    try:
        result = client.send_task(
            EXPORT_TASK,
            kwargs=task_kwargs(args),
            queue=QUEUE,
            # The job id as task id lets `contact-exports status <job id>` find this job's
            # Celery state too; without a job id, the worker uses the task id as job id.
            task_id=args.job_id,
        )
        print(f"enqueued job {args.job_id or result.id}", file=sys.stderr, flush=True)
        try:
            summary = result.get(timeout=args.timeout, on_message=show_progress, propagate=True)
        except CeleryTimeoutError:
            print(f"still running after {args.timeout:g}s", file=sys.stderr)
            return 5
        except Exception as error:  # the worker's error, rebuilt by Celery from its name
            print(f"export failed: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
        print(json.dumps(summary, indent=2))
        return 0
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())

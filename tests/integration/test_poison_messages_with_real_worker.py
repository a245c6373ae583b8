"""Malformed messages on the queue never stop a worker: each is refused (or fails as a task),
and the same worker process then runs an export. A real worker, since the point is that its
process survives; the messages are pushed onto the Redis list as any producer could.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
import redis
from celery import Celery

from devstack.worker import WorkerProcess
from tests.integration.helpers import RESULT_TIMEOUT, enqueue, wait_for_log, wait_until

pytestmark = pytest.mark.integration

QUEUE = "contact_exports"


def envelope(task: str, body: bytes) -> bytes:
    """A protocol 2 message as kombu's Redis transport stores it, around the given body."""
    task_id = str(uuid.uuid4())
    return json.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"lang": "py", "task": task, "id": task_id, "root_id": task_id},
            "properties": {
                "correlation_id": task_id,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": QUEUE},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    ).encode()


def proto2(args: list[Any], kwargs: dict[str, Any]) -> bytes:
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    return json.dumps([args, kwargs, embed]).encode()


POISON = {
    "valid JSON, not [args, kwargs, embed]": envelope("contact_exports.export", b'{"a": 1}'),
    "a list too short": envelope("contact_exports.export", b"[[]]"),
    "not JSON at all": envelope("contact_exports.export", b"\x00not json{"),
    "an unknown task": envelope("contact_exports.no_such_task", proto2([], {})),
    "a step with wrong positional arguments": envelope(
        "contact_exports.create_export", proto2([1, 2, 3], {})
    ),
    "kwargs of 10 MB": envelope(
        "contact_exports.export", proto2([], {"export": {"fields": ["x" * 10_000_000]}})
    ),
}


def test_poison_messages_are_refused_and_the_worker_goes_on(
    worker: WorkerProcess, redis_url: str, client: Celery
) -> None:
    broker = redis.Redis.from_url(redis_url)
    for message in POISON.values():
        broker.lpush(QUEUE, message)
    wait_until(lambda: broker.llen(QUEUE) == 0, what="the worker to take every message")
    wait_for_log(worker, "malformed message", timeout=RESULT_TIMEOUT)
    result = enqueue(client, export={"fields": ["email_address"]}, job_id=uuid.uuid4().hex)
    summary = result.get(timeout=RESULT_TIMEOUT)
    assert summary["rows"] > 0
    assert worker.process is not None and worker.process.poll() is None, "the worker stopped"
    assert "Unrecoverable error" not in worker.log()

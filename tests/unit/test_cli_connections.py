"""The command line's Celery client: an export goes under its job id, its record written first."""

from __future__ import annotations

import json
from typing import Any

import redis
from celery import Celery

from contact_exports_cli.connections import Endpoints, celery_app, close_app
from contact_exports_client import EXPORT_TASK, QUEUE
from workers.state.jobs import JobStore


def send(app: Celery, name: str, **kwargs: Any) -> str:
    """The task id alone: a result dropped after close_app would reconnect to unsubscribe."""
    return str(app.send_task(name, kwargs=kwargs, queue=QUEUE).id)


def test_an_export_is_sent_under_its_job_id_after_its_record(
    r: redis.Redis, redis_url: str
) -> None:
    app = celery_app(Endpoints("memory://", redis_url, redis_url))
    try:
        named = send(app, EXPORT_TASK, export={}, job_id="ops-1")
        anonymous = send(app, EXPORT_TASK, export={})
        other = send(app, "celery.ping")
    finally:
        close_app(app)
    store = JobStore(r)
    assert named == "ops-1"
    assert store.record("ops-1")["result_id"] == "ops-1"
    assert json.loads(store.record(anonymous)["kwargs"]) == {"export": {}, "job_id": anonymous}
    assert store.record(other) == {}

"""The typed client on Celery's in-memory broker and result backend (no services).

The Redis path (results pushed by pub/sub) is exercised against a real worker in
tests/integration/test_client_with_real_worker.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from celery.result import AsyncResult

from contact_exports_client import (
    EXPORT_TASK,
    QUEUE,
    Progress,
    WaitTimeoutError,
    export_kwargs,
    make_app,
    snapshot,
    submit_export,
    wait,
)
from workers.state.jobs import JobStore

RESULT = {"job_id": "j", "uri": "s3://b/k.csv", "bytes": 10}


class ActivityFailed(Exception):  # noqa: N818 — named like the worker's, as callers see it
    pass


@pytest.fixture
def memory_app() -> Iterator[Celery]:
    app = Celery("t", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"])
    sent_messages(app)  # the in-memory broker is one per process: start with an empty queue
    yield app
    app.close()


def sent_messages(app: Celery) -> list[tuple[dict[str, Any], Any]]:
    """Headers and body of every message waiting in the workers' queue."""
    messages = []
    with app.connection_for_read() as connection, connection.SimpleQueue(QUEUE) as queue:
        while queue.qsize():
            message = queue.get(timeout=1)
            messages.append((message.headers, message.payload))
            message.ack()
    return messages


def test_only_the_given_kwargs_are_sent() -> None:
    assert export_kwargs({"status": "active"}) == {"export": {"status": "active"}}
    assert export_kwargs(
        {}, account="acme", job_id="j-1", destination={"bucket": "b", "key": "k.csv"}
    ) == {
        "export": {},
        "account": "acme",
        "job_id": "j-1",
        "destination": {"bucket": "b", "key": "k.csv"},
    }


def test_submit_sends_the_export_task_by_name_under_the_job_id(memory_app: Celery) -> None:
    result = submit_export({"status": "active"}, job_id="crm-1", account="acme", app=memory_app)
    [(headers, body)] = sent_messages(memory_app)
    assert headers["task"] == EXPORT_TASK
    assert headers["id"] == result.id == "crm-1"
    args, kwargs, _ = body
    assert args == []
    assert kwargs == {"export": {"status": "active"}, "account": "acme", "job_id": "crm-1"}


def test_without_job_id_celery_picks_the_id(memory_app: Celery) -> None:
    result = submit_export({}, app=memory_app)
    [(headers, body)] = sent_messages(memory_app)
    assert headers["id"] == result.id
    assert body[1] == {"export": {}}


def test_the_job_is_recorded_before_its_message_is_sent(r: redis.Redis, redis_url: str) -> None:
    """A message the broker loses is then found by the workers' janitor and sent again."""
    app = Celery("t", broker="memory://", backend=redis_url, set_as_current=False)
    sent_messages(app)
    try:
        named = submit_export({"status": "active"}, job_id="crm-7", app=app)
        anonymous = submit_export({}, app=app)
        store = JobStore(r)
        assert store.record("crm-7")["result_id"] == named.id == "crm-7"
        # Without a job id the task id is chosen here, and the workers use it as the job id.
        assert store.record(anonymous.id)["result_id"] == anonymous.id
        assert json.loads(store.record(anonymous.id)["kwargs"])["job_id"] == anonymous.id
        assert len(sent_messages(app)) == 2
    finally:
        app.close()


def test_without_a_redis_job_store_the_export_is_still_sent(memory_app: Celery) -> None:
    submit_export({}, job_id="crm-8", app=memory_app)
    assert len(sent_messages(memory_app)) == 1


def test_app_and_broker_url_exclude_each_other(memory_app: Celery) -> None:
    with pytest.raises(TypeError):
        submit_export({}, app=memory_app, broker_url="redis://x:6379/0")


def test_urls_come_from_the_environment_and_the_backend_falls_back_to_the_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CELERY_RESULT_BACKEND", raising=False)
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://broker-host:6379/3")
    app = make_app()
    assert app.conf.broker_write_url == "redis://broker-host:6379/3"
    backend: Any = app.backend  # a RedisBackend; the stubs know only Backend
    assert (backend.connparams["host"], backend.connparams["db"]) == ("broker-host", 3)
    assert make_app() is app  # one app (and its pools) per URL pair
    assert app.conf.accept_content == ["json"]


def test_urls_given_in_code_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Celery alone would let CELERY_BROKER_URL win: an app's own broker would get exports."""
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://apps-own-broker:6379/0")
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://apps-own-broker:6379/0")
    app = make_app("redis://exports-broker:6379/1", "redis://exports-backend:6379/2")
    assert app.conf.broker_write_url == "redis://exports-broker:6379/1"
    assert app.conf.broker_read_url == "redis://exports-broker:6379/1"
    with app.connection_for_write() as connection:
        assert connection.hostname == "exports-broker"
    backend: Any = app.backend
    assert backend.connparams["host"] == "exports-backend"


def test_wait_relays_each_progress_report_then_returns_the_result(memory_app: Celery) -> None:
    backend = memory_app.backend
    backend.store_result("t-1", {"stage": "polling", "percent_done": 40}, "PROGRESS")
    seen: list[Progress] = []

    def on_progress(progress: Progress) -> None:
        seen.append(progress)
        if len(seen) == 1:
            backend.store_result("t-1", {"stage": "downloading", "bytes": 7}, "PROGRESS")
        else:
            backend.store_result("t-1", RESULT, "SUCCESS")

    summary = wait(AsyncResult("t-1", app=memory_app), timeout=10, on_progress=on_progress)
    assert summary == RESULT
    assert [p.get("stage") for p in seen] == ["polling", "downloading"]


def test_snapshot_pairs_state_and_info_from_one_read(
    memory_app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export finishes between two reads: state and info must still belong together."""
    backend = memory_app.backend
    backend.store_result("t-4", {"stage": "polling", "percent_done": 40}, "PROGRESS")
    read = backend.get_task_meta

    def read_then_finish(task_id: str, cache: bool = True) -> dict[str, Any]:
        meta = read(task_id, cache=cache)
        backend.store_result(task_id, RESULT, "SUCCESS")
        return meta

    monkeypatch.setattr(backend, "get_task_meta", read_then_finish)
    assert snapshot(AsyncResult("t-4", app=memory_app)) == (
        "PROGRESS",
        {"stage": "polling", "percent_done": 40},
    )
    # What the check guards against: result.state then result.info tear the pair apart.
    backend.store_result("t-5", {"stage": "polling", "percent_done": 40}, "PROGRESS")
    torn = AsyncResult("t-5", app=memory_app)
    assert (torn.state, torn.info) == ("PROGRESS", RESULT)


def test_wait_raises_the_workers_error(memory_app: Celery) -> None:
    memory_app.backend.mark_as_failure("t-2", ActivityFailed("activity a ended cancelled"))
    with pytest.raises(Exception) as caught:
        wait(AsyncResult("t-2", app=memory_app), timeout=10)
    assert type(caught.value).__name__ == "ActivityFailed"
    assert "ended cancelled" in str(caught.value)


def test_wait_gives_up_after_the_timeout(memory_app: Celery) -> None:
    with pytest.raises(WaitTimeoutError, match="did not finish within"):
        wait(AsyncResult("t-never", app=memory_app), timeout=0.05)


def test_importing_the_client_needs_no_worker_settings_and_loads_no_worker_code() -> None:
    script = (
        "import json, sys, contact_exports_client\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'workers', 'tasks', 'celeryconfig', 'contact_exports_cli'})\n"
        "print(json.dumps(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []

"""Redis restarted in the middle of an export: workers reconnect and the export finishes once.

A Redis of the test's own (with an append-only file, as production's broker must have), rclone
S3, the sandbox and a real worker process.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from celery.result import AsyncResult
from redis.backoff import NoBackoff
from redis.retry import Retry

from devstack.redis_server import RedisServer
from sandbox.testing import SandboxProcess
from tests.integration.conftest import WorkerFactory
from tests.integration.helpers import (
    RESULT_TIMEOUT,
    assert_stored_once,
    created_activities,
    enqueue,
    wait_for_log,
    wait_until,
)

pytestmark = pytest.mark.integration


def get_across_reconnects(result: AsyncResult[Any]) -> dict[str, Any]:
    """The caller's own connection also broke; like a careful app, it asks again."""
    deadline = time.monotonic() + RESULT_TIMEOUT
    while True:
        try:
            summary: dict[str, Any] = result.get(timeout=RESULT_TIMEOUT)
            return summary
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class OwnRedis(RedisServer):
    """Shuts down as RedisServer does, with a client that does not reconnect: redis-py (8.x)
    retries a command whose connection the server closed, as SHUTDOWN's always is, for about
    4.5 s before raising. How long Redis stays down is the test's to say."""

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        with contextlib.suppress(redis.ConnectionError):
            redis.Redis(port=self.port, retry=Retry(NoBackoff(), 0)).shutdown(nosave=False)
        self._process.wait(timeout=20)
        self._process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with OwnRedis(tmp_path / "redis") as server:
        yield server


def test_redis_restart_mid_export(
    own_redis: RedisServer,
    start_worker: WorkerFactory,
    sandbox: SandboxProcess,
    s3: Any,
) -> None:
    worker = start_worker(
        concurrency=1,
        CELERY_BROKER_URL=own_redis.url,
        CELERY_RESULT_BACKEND=own_redis.url,
        # What the broker lost track of in the restart runs again after this long.
        BROKER_VISIBILITY_TIMEOUT="6",
        BROKER_RESTORE_INTERVAL="1",
        POLL_INITIAL_SECONDS="1",
        POLL_MAX_SECONDS="2",
    )
    client = Celery(broker=own_redis.url, backend=own_redis.url)
    client.conf.update(task_serializer="json", accept_content=["json"])
    sandbox.set_processing_seconds(8.0)
    before = created_activities(sandbox)
    job_id = f"restart-{uuid.uuid4().hex[:8]}"
    result = enqueue(client, export={"fields": ["email_address"]}, job_id=job_id)
    # Restart while the poll's retry waits out its countdown in the worker: the message is then
    # held in the broker's unacked hash. (A message caught between Redis handing it out and kombu
    # recording it as unacked is lost to any Redis restart — a limit of the Redis transport.)
    wait_until(
        lambda: worker.log().count("Task contact_exports.poll_activity[") >= 3,
        what="a poll retry to be received",
    )
    own_redis.stop()
    # Down until the worker has found it gone and failed to reconnect at least once.
    wait_for_log(worker, "Cannot connect to redis://")
    own_redis.start()

    summary = get_across_reconnects(result)
    assert summary["job_id"] == job_id
    assert created_activities(sandbox)[len(before) :] == [summary["activity_id"]]
    assert_stored_once(s3, sandbox, summary)
    worker.leave()
    client.close()

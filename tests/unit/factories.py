"""Records and collaborators the unit tests build again and again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from tests.unit.conftest import UNIT_REDIS_URL
from workers.export.job import Job
from workers.services import Services, build_services
from workers.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def a_job(job_id: str = "j1", **changes: Any) -> Job:
    """A job with one request and a minute to run, as ``export`` hands it on."""
    fields: dict[str, Any] = {
        "job_id": job_id,
        "result_id": "r1",
        "account": "default",
        "requests": [{}],
        "bucket": "b",
        "key": "k.csv",
        "deadline": time.time() + 60,
        "started_at": "2026-11-26T00:00:00Z",
    }
    return Job(**{**fields, **changes})


def a_settings(**changes: Any) -> Settings:
    """A worker's settings with a static token and its job records in the unit tests' Redis
    (the environment still applies to what is not given here)."""
    values: dict[str, Any] = {"cc_access_token": "t", "jobs_redis_url": UNIT_REDIS_URL}
    return Settings(**{**values, **changes})


@dataclass
class Sent:
    """Records what a Celery app (``send_task``) and its result backend (``store_result``) would
    be asked to do."""

    tasks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    results: list[tuple[str, Any, str]] = field(default_factory=list)

    def send_task(self, name: str, *args: Any, **options: Any) -> None:
        assert not args, "tasks are sent with keyword options only"
        self.tasks.append((name, options))

    def store_result(self, task_id: str, result: Any, state: str, *_: Any, **__: Any) -> None:
        self.results.append((task_id, result, state))


@contextmanager
def unit_services(
    settings: Settings | None = None, *, s3: object | None = None, sent: Sent | None = None
) -> Iterator[Services]:
    """Services as a pool process builds them (``build_services``), on the unit tests' Redis;
    ``s3`` may be a fake standing in for the S3 client, ``sent`` records the messages."""
    recorder = sent if sent is not None else Sent()
    services = build_services(
        settings or a_settings(),
        sender=recorder,
        results=recorder,
        s3=cast("S3Client", s3) if s3 is not None else None,
    )
    try:
        yield services
    finally:
        services.redis.close()

"""What a pool process does before its first task, and whose services a process uses.

Each test wires a fresh ``Celery()`` app by hand: ``connect`` on the real app would leave its
signal handlers behind in the test process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from celery import Celery

from tests.unit.conftest import UNIT_REDIS_URL
from tests.unit.factories import unit_services
from workers.lifecycle import Handlers, ProcessServices, services_of
from workers.settings import get_settings


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The worker's settings as a pool process reads them: from its environment, once."""
    monkeypatch.setenv("CC_ACCESS_TOKEN", "t")
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("JOBS_REDIS_URL", UNIT_REDIS_URL)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_a_pool_process_builds_its_s3_client_before_the_first_task(environment: None) -> None:
    app = Celery()
    holder = ProcessServices(app)
    Handlers(app, holder).process_init()
    services = holder.get()
    try:
        assert services.s3.meta.endpoint_url.rstrip("/") == "http://127.0.0.1:9"
        assert services.sender is app
        assert holder.get() is services  # built once per process, not per task
    finally:
        services.redis.close()


def test_a_forked_process_builds_its_own_services(
    environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sessions, the S3 client and the Redis pool may not cross a fork."""
    holder = ProcessServices(Celery())
    parent = holder.get()
    child_pid = os.getpid() + 1
    monkeypatch.setattr(os, "getpid", lambda: child_pid)
    child = holder.get()
    try:
        assert child is not parent
        assert child.s3 is not parent.s3 and child.redis is not parent.redis
        assert holder.get() is child
    finally:
        parent.redis.close()
        child.redis.close()


def test_a_process_can_be_given_its_services() -> None:
    holder = ProcessServices(Celery())
    with unit_services(s3=object()) as services:
        holder.use(services)
        assert holder.get() is services


def test_an_app_nobody_connected_has_no_services() -> None:
    with pytest.raises(RuntimeError, match="connect"):
        services_of(Celery())

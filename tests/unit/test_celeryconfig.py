"""The Celery settings the contract and the design depend on, read from a fresh import."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import pytest

from workers.settings import get_settings


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    monkeypatch.setenv("CC_ACCESS_TOKEN", "t")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    sys.modules.pop("celeryconfig", None)
    try:
        return importlib.import_module("celeryconfig")
    finally:
        get_settings.cache_clear()


def test_every_task_goes_to_the_export_queue_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(monkeypatch)
    assert config.task_default_queue == "contact_exports"
    assert config.task_routes == {"contact_exports.*": {"queue": "contact_exports"}}
    assert config.accept_content == ["json"] and config.task_serializer == "json"
    assert config.task_acks_late and config.task_reject_on_worker_lost
    assert config.worker_prefetch_multiplier == 1
    assert config.broker_connection_retry_on_startup


def test_visibility_timeout_and_sentinel_master(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(monkeypatch, BROKER_VISIBILITY_TIMEOUT="900", BROKER_MASTER_NAME="mymaster")
    assert config.broker_transport_options["visibility_timeout"] == 900
    assert config.broker_transport_options["master_name"] == "mymaster"
    assert config.result_backend_transport_options["master_name"] == "mymaster"

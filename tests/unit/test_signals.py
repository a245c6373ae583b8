"""What a pool process does before its first task."""

from __future__ import annotations

import pytest

from workers.services import s3_client
from workers import signals
from workers.settings import get_settings


def test_a_pool_process_builds_its_s3_client_before_the_first_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CC_ACCESS_TOKEN", "t")
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9")
    get_settings.cache_clear()
    s3_client.cache_clear()
    try:
        signals._prepare_pool_process()
        assert s3_client.cache_info().currsize == 1
        assert s3_client().meta.endpoint_url.rstrip("/") == "http://127.0.0.1:9"
    finally:
        s3_client.cache_clear()
        get_settings.cache_clear()

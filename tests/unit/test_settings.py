from __future__ import annotations

import pytest

from workers.exceptions import ConfigurationError
from workers.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "CC_ACCESS_TOKEN",
        "CC_REFRESH_TOKEN",
        "CC_CLIENT_ID",
        "CC_CLIENT_SECRET",
        "CC_API_BASE_URL",
        "BROKER_VISIBILITY_TIMEOUT",
        "POLL_MAX_SECONDS",
        "EXPORT_KEY_TEMPLATE",
        "S3_PART_SIZE_MIB",
    ):
        monkeypatch.delenv(name, raising=False)


def test_missing_credentials_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="CC_ACCESS_TOKEN"):
        load_settings()


def test_malformed_value_names_the_variable_without_echoing_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CC_ACCESS_TOKEN", "tok-very-secret")
    monkeypatch.setenv("CC_API_BASE_URL", "not a url")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "CC_API_BASE_URL" in str(caught.value)
    assert "tok-very-secret" not in str(caught.value)


def test_visibility_timeout_must_exceed_the_longest_countdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CC_ACCESS_TOKEN", "t")
    monkeypatch.setenv("BROKER_VISIBILITY_TIMEOUT", "100")
    with pytest.raises(ConfigurationError, match="BROKER_VISIBILITY_TIMEOUT"):
        load_settings()


def test_key_template_must_name_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC_ACCESS_TOKEN", "t")
    monkeypatch.setenv("EXPORT_KEY_TEMPLATE", "exports/latest.csv")
    with pytest.raises(ConfigurationError, match="EXPORT_KEY_TEMPLATE"):
        load_settings()


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC_ACCESS_TOKEN", "t")
    settings = load_settings()
    assert settings.api_base_url == "https://api.cc.email/v3"
    assert settings.part_size == 16 * 1024 * 1024
    assert settings.s3_parts_in_flight == 1
    assert settings.celery_broker_url == "redis://localhost:6379/0"

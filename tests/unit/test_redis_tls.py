"""Redis over TLS: masked URLs, the TLS settings and where they go, and which start-up problems
stop a worker (bad credentials, an untrusted certificate) and which do not (Redis down)."""

from __future__ import annotations

import importlib
import logging
import ssl
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis

from contact_exports_cli.connections import Endpoints, celery_app, close_app, redact
from contact_exports_client.client import make_app
from contact_exports_client.redis_tls import RedisTls, mask_url, uses_tls
from devstack.ports import free_port
from devstack.redis_server import SERVICE_ACL
from workers import startup
from workers.exceptions import ConfigurationError
from workers.services import redis_client
from workers.settings import get_settings, load_settings

#: A test password, checked never to appear in a message.
SECRET = "s3cr3t-Pa55"
TLS_URL = f"rediss://svc:{SECRET}@redis.example:6380/2"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC_ACCESS_TOKEN", "t")
    for name in (
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
        "JOBS_REDIS_URL",
        "REDIS_CA_FILE",
        "REDIS_CERT_FILE",
        "REDIS_KEY_FILE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("not read by these tests\n")
    return path


# -- masking -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (TLS_URL, "rediss://svc:***@redis.example:6380/2"),
        (f"redis://:{SECRET}@localhost:6379/0", "redis://:***@localhost:6379/0"),
        (f"rediss://svc:{SECRET}@[::1]:6380/0", "rediss://svc:***@[::1]:6380/0"),
        (f"rediss://svc:{SECRET}@host/0", "rediss://svc:***@host/0"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://user@localhost:6379/0", "redis://user@localhost:6379/0"),
        (
            f"rediss://host:6380/0?password={SECRET}&ssl_ca_certs=/etc/ca.pem",
            "rediss://host:6380/0?password=***&ssl_ca_certs=/etc/ca.pem",
        ),
    ],
)
def test_a_password_never_leaves_a_masked_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert redact(url) == masked
    assert SECRET not in mask_url(url)


def test_a_malformed_url_is_masked_whole() -> None:
    assert SECRET not in mask_url(f"redis://u:{SECRET}@host:notaport/0")


# -- options -----------------------------------------------------------------------------------


def test_tls_options_apply_to_rediss_urls_only() -> None:
    tls = RedisTls(ca_file="/ca.pem", cert_file="/c.pem", key_file="/k.pem")
    assert tls.options("redis://localhost:6379/0") is None
    assert tls.options("sentinel://localhost:26379") is None
    assert tls.options(TLS_URL) == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": "/ca.pem",
        "ssl_certfile": "/c.pem",
        "ssl_keyfile": "/k.pem",
    }
    # Without a CA the system's CAs are used; verification stays on.
    assert RedisTls().options("REDISS://h/0") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert uses_tls(TLS_URL) and not uses_tls("redis://h/0")


def test_tls_files_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_CA_FILE", "/ca.pem")
    monkeypatch.setenv("REDIS_CERT_FILE", "")
    assert RedisTls.from_env() == RedisTls(ca_file="/ca.pem")
    assert Endpoints.from_env().tls == RedisTls(ca_file="/ca.pem")


def test_the_service_client_verifies_rediss_and_leaves_redis_alone(ca_file: Path) -> None:
    tls = RedisTls(ca_file=str(ca_file))
    secure = redis_client(TLS_URL, tls)
    plain = redis_client("redis://localhost:6379/0", tls)
    try:
        kwargs = secure.connection_pool.connection_kwargs
        assert issubclass(secure.connection_pool.connection_class, redis.SSLConnection)
        assert kwargs["ssl_cert_reqs"] == ssl.CERT_REQUIRED
        assert kwargs["ssl_ca_certs"] == str(ca_file)
        assert (kwargs["username"], kwargs["password"]) == ("svc", SECRET)
        assert not issubclass(plain.connection_pool.connection_class, redis.SSLConnection)
        assert not any(k.startswith("ssl") for k in plain.connection_pool.connection_kwargs)
    finally:
        secure.close()
        plain.close()


def test_a_urls_own_ca_wins_for_that_url() -> None:
    client = redis_client(TLS_URL + "?ssl_ca_certs=/own.pem", RedisTls(ca_file="/env.pem"))
    try:
        assert client.connection_pool.connection_kwargs["ssl_ca_certs"] == "/own.pem"
    finally:
        client.close()


def test_the_client_helper_and_the_cli_configure_tls_for_rediss(ca_file: Path) -> None:
    tls = RedisTls(ca_file=str(ca_file))
    app = make_app(TLS_URL, "redis://localhost:6379/0", tls=tls)
    assert app.conf.broker_use_ssl == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": str(ca_file),
    }
    assert not app.conf.redis_backend_use_ssl  # a plain backend gets no TLS setting
    cli = celery_app(Endpoints("redis://localhost:6379/0", TLS_URL, TLS_URL, tls))
    try:
        assert not cli.conf.broker_use_ssl
        assert cli.conf.redis_backend_use_ssl["ssl_ca_certs"] == str(ca_file)
        backend: Any = cli.backend
        assert backend.connparams["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    finally:
        close_app(cli)
        close_app(app)


# -- settings ----------------------------------------------------------------------------------


def load_celeryconfig(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    sys.modules.pop("celeryconfig", None)
    try:
        return importlib.import_module("celeryconfig")
    finally:
        get_settings.cache_clear()
        sys.modules.pop("celeryconfig", None)


def test_celery_gets_tls_settings_for_rediss_urls(
    monkeypatch: pytest.MonkeyPatch, ca_file: Path
) -> None:
    config = load_celeryconfig(
        monkeypatch,
        CELERY_BROKER_URL=TLS_URL,
        CELERY_RESULT_BACKEND=TLS_URL,
        REDIS_CA_FILE=str(ca_file),
    )
    expected = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(ca_file)}
    assert config.broker_use_ssl == expected
    assert config.redis_backend_use_ssl == expected


def test_plain_redis_gets_no_tls_settings(monkeypatch: pytest.MonkeyPatch, ca_file: Path) -> None:
    config = load_celeryconfig(monkeypatch, REDIS_CA_FILE=str(ca_file))
    assert not hasattr(config, "broker_use_ssl")
    assert not hasattr(config, "redis_backend_use_ssl")


def test_a_missing_ca_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REDIS_CA_FILE", str(tmp_path / "nowhere.pem"))
    with pytest.raises(ConfigurationError, match="REDIS_CA_FILE"):
        load_settings()


def test_a_client_certificate_needs_its_key(monkeypatch: pytest.MonkeyPatch, ca_file: Path) -> None:
    monkeypatch.setenv("REDIS_CERT_FILE", str(ca_file))
    with pytest.raises(ConfigurationError, match="REDIS_CERT_FILE and REDIS_KEY_FILE"):
        load_settings()


@pytest.mark.parametrize("reqs", ["none", "optional", "CERT_NONE"])
def test_no_url_may_turn_verification_off(monkeypatch: pytest.MonkeyPatch, reqs: str) -> None:
    monkeypatch.setenv("JOBS_REDIS_URL", f"{TLS_URL}?ssl_cert_reqs={reqs}")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value.code)
    assert "JOBS_REDIS_URL" in message and "ssl_cert_reqs" in message
    assert SECRET not in message


def test_ssl_parameters_need_a_rediss_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://u:{SECRET}@h:6379/0?ssl_ca_certs=/ca.pem")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value.code)
    assert "CELERY_BROKER_URL" in message and "rediss://" in message
    assert SECRET not in message and "u:***@h:6379" in message


def test_valid_tls_settings(monkeypatch: pytest.MonkeyPatch, ca_file: Path) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", TLS_URL + "?ssl_cert_reqs=required")
    monkeypatch.setenv("CELERY_RESULT_BACKEND", TLS_URL)
    monkeypatch.setenv("JOBS_REDIS_URL", TLS_URL)
    monkeypatch.setenv("REDIS_CA_FILE", str(ca_file))
    settings = load_settings()
    assert settings.redis_tls == RedisTls(ca_file=str(ca_file))
    assert settings.redis_urls() == {
        TLS_URL + "?ssl_cert_reqs=required": ["CELERY_BROKER_URL"],
        TLS_URL: ["CELERY_RESULT_BACKEND", "JOBS_REDIS_URL"],
    }


# -- the start-up check --------------------------------------------------------------------------


def failing_ping(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    def ping(self: redis.Redis, **_: object) -> bool:
        raise error

    monkeypatch.setattr(redis.Redis, "ping", ping)


def test_refused_credentials_stop_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    failing_ping(monkeypatch, redis.AuthenticationError("invalid username-password pair"))
    monkeypatch.setenv("CELERY_BROKER_URL", TLS_URL)
    with pytest.raises(ConfigurationError) as caught:
        startup.check_redis(load_settings())
    message = str(caught.value.code)
    assert message.startswith("CELERY_BROKER_URL: Redis at rediss://svc:***@redis.example:6380/2")
    assert "refused the credentials" in message and SECRET not in message


def test_an_untrusted_certificate_stops_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    error = redis.ConnectionError("Error 1 connecting")
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_message = "self-signed certificate in certificate chain"
    error.__cause__ = cause
    failing_ping(monkeypatch, error)
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "JOBS_REDIS_URL"):
        monkeypatch.setenv(name, TLS_URL)
    with pytest.raises(ConfigurationError) as caught:
        startup.check_redis(load_settings())
    message = str(caught.value.code)
    assert message.startswith(
        "CELERY_BROKER_URL / CELERY_RESULT_BACKEND / JOBS_REDIS_URL: the server's TLS certificate "
        "at rediss://svc:***@redis.example:6380/2 is not trusted"
    )
    assert "not trusted (self-signed certificate in certificate chain)" in message
    assert "set REDIS_CA_FILE" in message and SECRET not in message


def test_a_missing_client_certificate_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    error = redis.ConnectionError("Error 1 connecting")
    cause = ssl.SSLError(1, "tlsv13 alert certificate required")
    cause.reason = "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    error.__cause__ = cause
    failing_ping(monkeypatch, error)
    monkeypatch.setenv("CELERY_RESULT_BACKEND", TLS_URL)
    with pytest.raises(ConfigurationError, match="REDIS_CERT_FILE and REDIS_KEY_FILE"):
        startup.check_redis(load_settings())


def test_a_redis_that_is_down_does_not_stop_the_worker(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"rediss://svc:{SECRET}@127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    monkeypatch.setenv("CELERY_RESULT_BACKEND", url)
    with caplog.at_level(logging.WARNING, logger="workers.startup"):
        startup.check_redis(load_settings())  # no exception: Celery keeps retrying
    assert "not reachable yet" in caplog.text
    assert "CELERY_BROKER_URL / CELERY_RESULT_BACKEND" in caplog.text
    assert SECRET not in caplog.text


def test_the_documented_acl_is_the_one_the_tls_suites_run_with() -> None:
    """docs/configuration.md gives operators one ACL line; the unit suite's ``tls-acl`` runs and
    tests/integration/test_redis_tls_acl.py grant exactly SERVICE_ACL, so the two must agree."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    [line] = [row for row in docs.splitlines() if row.startswith("user contact_exports on ")]
    assert line == f"user contact_exports on >PASSWORD {SERVICE_ACL}"

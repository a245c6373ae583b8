"""Sentinel URLs as the service reads them (``contact_exports_client.sentinel``): parsed with
kombu's syntax, refused with a clear message before anything connects, masked in messages.
The failover itself runs on real processes in
tests/integration/test_sentinel_failover_with_real_workers.py."""

from __future__ import annotations

import ssl

import pytest
from celery import Celery

from contact_exports_client.redis_tls import RedisTls, mask_url, redis_at, use_redis_tls
from contact_exports_client.sentinel import (
    FAILOVER_PUBLISH_RETRY,
    SentinelUrl,
    master_name,
    use_sentinel,
    uses_sentinel,
)
from tests.unit.factories import a_settings

THREE = "sentinel://:s3cret@s1:26379/2;sentinel://s2:26380/2;sentinel://s3/2"


def test_kombus_syntax_is_read_whole() -> None:
    parsed = SentinelUrl.parse(THREE)
    assert parsed.sentinels == (("s1", 26379), ("s2", 26380), ("s3", 26379))
    assert (parsed.db, parsed.username, parsed.password) == (2, None, "s3cret")
    assert uses_sentinel(THREE) and not uses_sentinel("redis://s1:6379/0")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sentinel://s1:26379;redis://s2:6379", "must be sentinel://"),
        ("sentinel:///0", "names no host"),
        ("sentinel://s1:26379/zero", "must be a number"),
    ],
)
def test_a_malformed_sentinel_url_is_refused_by_name(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SentinelUrl.parse(url)


def test_every_part_is_masked() -> None:
    masked = mask_url("sentinel://u:pw1@s1:26379/0;sentinel://u:pw2@s2:26379/0")
    assert masked == "sentinel://u:***@s1:26379/0;sentinel://u:***@s2:26379/0"


def test_without_a_master_name_nothing_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BROKER_MASTER_NAME", raising=False)
    with pytest.raises(ValueError, match="BROKER_MASTER_NAME"):
        redis_at(THREE)
    with pytest.raises(ValueError, match="BROKER_MASTER_NAME"):
        master_name()


def test_the_worker_refuses_a_sentinel_url_without_its_master_at_start() -> None:
    with pytest.raises(ValueError, match=r"CELERY_BROKER_URL.*needs BROKER_MASTER_NAME"):
        a_settings(celery_broker_url=THREE, celery_result_backend="redis://r:6379/0")
    with pytest.raises(ValueError, match=r"s2:6380/0: every part"):
        a_settings(
            celery_broker_url="sentinel://s1:26379/0;rediss://s2:6380/0",
            broker_master_name="m",
        )
    settings = a_settings(celery_broker_url=THREE, broker_master_name="m")
    assert settings.broker_master_name == "m"


def test_a_caller_on_sentinel_urls_names_the_master_and_rides_out_a_failover() -> None:
    app = Celery("t", set_as_current=False)
    use_sentinel(app, THREE, "redis://r:6379/0", name="m")
    assert app.conf.broker_transport_options["master_name"] == "m"
    assert app.conf.task_publish_retry_policy == FAILOVER_PUBLISH_RETRY
    assert "master_name" not in (app.conf.result_backend_transport_options or {})
    use_sentinel(app, "redis://r:6379/0", THREE, name="m")
    assert app.conf.result_backend_transport_options["master_name"] == "m"


def test_with_sentinel_tls_the_sentinels_and_their_master_are_verified() -> None:
    """REDIS_SENTINEL_TLS gives the master's connections and the Sentinels' (kombu's and
    Celery's ``sentinel_kwargs``) the same verified TLS; without it a Sentinel URL has none."""
    tls = RedisTls.from_env({"REDIS_SENTINEL_TLS": "true", "REDIS_CA_FILE": "/ca.pem"})
    master = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/ca.pem"}
    assert tls.options(THREE) == master
    assert tls.sentinel_options(THREE) == {"ssl": True, **master}
    assert tls.sentinel_options("rediss://r:6380/0") is None
    assert RedisTls(ca_file="/ca.pem").options(THREE) is None
    assert RedisTls(ca_file="/ca.pem").sentinel_options(THREE) is None

    app = Celery("t", set_as_current=False)
    use_redis_tls(app, THREE, THREE, tls)
    assert app.conf.broker_use_ssl == master and app.conf.redis_backend_use_ssl == master
    assert app.conf.broker_transport_options["sentinel_kwargs"]["ssl"] is True
    assert app.conf.result_backend_transport_options["sentinel_kwargs"]["ssl"] is True


def test_sentinel_tls_without_a_sentinel_url_is_refused() -> None:
    with pytest.raises(ValueError, match="REDIS_SENTINEL_TLS is set but no Redis URL"):
        a_settings(redis_sentinel_tls=True)
    settings = a_settings(celery_broker_url=THREE, broker_master_name="m", redis_sentinel_tls=True)
    assert settings.redis_tls.sentinel

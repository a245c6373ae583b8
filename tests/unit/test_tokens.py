"""Account credentials in a real Redis (db 15, flushed around each test), refreshed against a
token endpoint that rotates refresh tokens like Constant Contact's (an injected transport)."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any
from urllib.parse import parse_qs

import pytest
import redis
import requests
from cryptography.fernet import Fernet

from contact_exports_client.redis_tls import redis_at
from tests.unit.test_constant_contact import Transport
from workers.constant_contact.client import Grant, OAuthClient, StaticToken
from workers.constant_contact.tokens import (
    REFRESH_AHEAD_SECONDS,
    AccountState,
    AccountStore,
    Credentials,
    RedisTokens,
    make_cipher,
    refresh_time,
    seed_fingerprint,
)
from workers.exceptions import (
    ConfigurationError,
    ConstantContactError,
    TransientApiError,
    TransientError,
)
from workers.settings import load_settings

TOKEN_URL = "https://authz.example/oauth2/default/v1/token"
CLIENT_ID, CLIENT_SECRET = "client-id", "client-secret-value"
KEY = Fernet.generate_key().decode()


class RotatingEndpoint:
    """A token endpoint: one valid refresh token at a time, each refresh replaces it."""

    def __init__(self, refresh_token: str, delay: float = 0.0) -> None:
        self.valid = refresh_token
        self.delay = delay
        self.calls = 0
        self.issued: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, Any]:
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        assert request.headers["Authorization"] == f"Basic {basic}"
        form = parse_qs(str(request.body))
        assert form["grant_type"] == ["refresh_token"]
        time.sleep(self.delay)  # a slow endpoint widens the window for a racing refresh
        with self._lock:
            self.calls += 1
            if form["refresh_token"] != [self.valid]:
                return 400, {"error": "invalid_grant", "error_description": "already used"}
            n = len(self.issued) + 1
            self.valid = f"refresh-{n}"
            self.issued.append(f"access-{n}")
            body = {"access_token": f"access-{n}", "refresh_token": self.valid, "expires_in": 86400}
            return 200, body


@pytest.fixture
def store(r: redis.Redis) -> AccountStore:
    return AccountStore(r, make_cipher(KEY))


def oauth(answer: Any) -> OAuthClient:
    session = Transport(answer).session()
    return OAuthClient(TOKEN_URL, CLIENT_ID, CLIENT_SECRET, session=session)


def test_credentials_are_encrypted_at_rest(r: redis.Redis, store: AccountStore) -> None:
    store.put("acct", Credentials("access-secret", "refresh-secret", 123.0))
    dump = b"".join(
        field + value
        for key in r.scan_iter()
        if r.type(key) == b"hash"
        for field, value in r.hgetall(key).items()
    )
    assert b"access-secret" not in dump and b"refresh-secret" not in dump
    record = store.load("acct")
    assert record is not None and record.credentials.refresh_token == "refresh-secret"
    assert store.names() == ["acct"] and store.exists("acct")
    rotated = AccountStore(r, make_cipher(f"{Fernet.generate_key().decode()},{KEY}"))
    assert rotated.load("acct") == record
    with pytest.raises(ConstantContactError, match="cannot be decrypted") as caught:
        AccountStore(r, make_cipher(Fernet.generate_key().decode())).load("acct")
    assert "secret" not in str(caught.value).replace("store them again", "")


@pytest.mark.parametrize(
    "keys", ["", "not-a-key", f"{KEY},short"], ids=["empty", "not-a-key", "one-good-one-short"]
)
def test_bad_keys_are_refused(keys: str) -> None:
    with pytest.raises(ValueError, match="key"):
        make_cipher(keys)


def test_the_environment_seeds_once_and_never_undoes_a_rotation(store: AccountStore) -> None:
    env = Credentials(
        "env-access", "env-refresh", seed=seed_fingerprint("env-access", "env-refresh")
    )
    assert store.seed("default", env)
    record = store.load("default")
    assert record is not None
    rotated = Credentials("access-2", "refresh-2", seed=env.seed)
    assert store.swap("default", rotated, version=record.version, holder=None)
    assert not store.seed("default", env)  # every worker start seeds again: a no-op
    assert store.load("default").credentials.refresh_token == "refresh-2"  # type: ignore[union-attr]
    store.put("default", Credentials("operator-access", "operator-refresh"))
    assert not store.seed("default", env)  # an operator's put wins over unchanged variables
    changed = Credentials(
        "new-access", "new-refresh", seed=seed_fingerprint("new-access", "new-refresh")
    )
    assert store.seed("default", changed)  # the operator changed the variables
    assert store.load("default").credentials.refresh_token == "new-refresh"  # type: ignore[union-attr]
    store.put("other", Credentials("a", "b"))
    assert not store.seed("other", changed)


def test_concurrent_refreshes_call_the_endpoint_once(r: redis.Redis, redis_url: str) -> None:
    endpoint = RotatingEndpoint("refresh-0", delay=0.2)
    AccountStore(r, make_cipher(KEY)).put("acct", Credentials("access-0", "refresh-0"))
    workers = 12
    start = threading.Barrier(workers)
    got: list[str] = []

    def worker() -> None:
        # Each "worker" has its own connection, store and HTTP session, as processes would.
        connection = redis_at(redis_url)
        tokens = RedisTokens(AccountStore(connection, make_cipher(KEY)), "acct", oauth(endpoint))
        start.wait()
        got.append(tokens.refresh("access-0"))
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert endpoint.calls == 1
    assert got == ["access-1"] * workers
    stored = AccountStore(r, make_cipher(KEY)).load("acct")
    assert stored is not None and stored.credentials.refresh_token == endpoint.valid == "refresh-1"
    assert not r.exists("contact_exports:account:acct:refresh-lock")


def test_a_late_refresh_reuses_the_newer_token(store: AccountStore) -> None:
    endpoint = RotatingEndpoint("refresh-0")
    store.put("acct", Credentials("access-0", "refresh-0"))
    tokens = RedisTokens(store, "acct", oauth(endpoint))
    assert tokens.refresh("access-0") == "access-1"
    assert tokens.refresh("access-0") == "access-1"  # another worker's 401 on the old token
    assert tokens.access_token() == "access-1"
    assert endpoint.calls == 1


def test_invalid_grant_asks_for_reauthorization_and_never_loops(store: AccountStore) -> None:
    endpoint = RotatingEndpoint("refresh-elsewhere")
    store.put("acct", Credentials("access-0", "refresh-0"))
    tokens = RedisTokens(store, "acct", oauth(endpoint))
    with pytest.raises(ConstantContactError, match="re-authorized") as caught:
        tokens.refresh("access-0")
    assert caught.value.error_key == "invalid_grant"
    assert "python -m workers.tokens put acct" in str(caught.value)
    assert "refresh-0" not in str(caught.value)
    assert store.load("acct").state is AccountState.REAUTHORIZE  # type: ignore[union-attr]
    for _ in range(3):  # every later request of every worker fails at once
        with pytest.raises(ConstantContactError, match="re-authorized"):
            RedisTokens(store, "acct", oauth(endpoint)).access_token()
    assert endpoint.calls == 1
    store.put("acct", Credentials("access-9", "refresh-elsewhere"))
    assert tokens.access_token() == "access-9"
    assert tokens.refresh("access-9") == "access-1"


def test_a_token_about_to_expire_is_refreshed_ahead(store: AccountStore) -> None:
    now = 1_800_000_000.0
    endpoint = RotatingEndpoint("refresh-0")
    store.put("acct", Credentials("access-0", "refresh-0", refresh_time(now, 3600)))
    tokens = RedisTokens(store, "acct", oauth(endpoint), clock=lambda: now)
    assert tokens.access_token() == "access-0"
    now += 3600 - REFRESH_AHEAD_SECONDS  # five minutes before it expires
    assert tokens.access_token() == "access-1"
    assert tokens.access_token() == "access-1" and endpoint.calls == 1
    refresh_at = store.load("acct").credentials.refresh_at  # type: ignore[union-attr]
    assert refresh_at == now + 86400 - REFRESH_AHEAD_SECONDS
    assert refresh_time(now, 60) == now + 30  # a short-lived token: at half its life


def test_a_record_lost_by_redis_is_seeded_again_from_the_environment(
    store: AccountStore,
) -> None:
    env = Credentials("env-access", "env-refresh", seed=seed_fingerprint("env-access", "x"))
    tokens = RedisTokens(store, "default", None, reseed=lambda: store.seed("default", env))
    assert tokens.access_token() == "env-access"  # nothing stored yet, e.g. after a restart
    store.remove("default")
    assert tokens.access_token() == "env-access"


def test_nothing_to_refresh_with_is_final(store: AccountStore) -> None:
    store.put("acct", Credentials("access-0", None))
    with pytest.raises(ConstantContactError) as caught:
        RedisTokens(store, "acct", oauth(RotatingEndpoint("x"))).refresh("access-0")
    assert caught.value.status == 401
    with pytest.raises(ConstantContactError, match="no stored credentials"):
        RedisTokens(store, "nobody", None).access_token()
    with pytest.raises(ConstantContactError, match="re-authorize"):
        StaticToken("t").refresh("t")


def test_a_refresh_held_elsewhere_is_awaited_then_given_up(store: AccountStore) -> None:
    store.put("acct", Credentials("access-0", "refresh-0"))
    assert store.lock("acct", ttl=30) is not None  # a worker that hangs while holding it
    endpoint = RotatingEndpoint("refresh-0")
    started = time.monotonic()
    with pytest.raises(TransientError, match="stuck"):
        RedisTokens(store, "acct", oauth(endpoint), lock_wait=0.3).refresh("access-0")
    assert 0.3 <= time.monotonic() - started < 2 and endpoint.calls == 0


def test_writes_need_the_version_and_the_lock_they_saw(store: AccountStore) -> None:
    store.put("acct", Credentials("a", "b"))
    record = store.load("acct")
    assert record is not None
    assert not store.swap("acct", Credentials("x", "y"), version=record.version + 1, holder=None)
    assert not store.swap("acct", Credentials("x", "y"), version=record.version, holder="nobody")
    holder = store.lock("acct")
    assert holder is not None and store.lock("acct") is None
    assert store.swap("acct", Credentials("x", "y"), version=record.version, holder=holder)
    store.unlock("acct", "somebody-else")
    assert store.lock("acct") is None
    store.unlock("acct", holder)
    assert store.lock("acct") is not None


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        ((503, {"error": "unavailable"}), TransientApiError, "503"),
        ((429, {"error": "slow_down"}, {"Retry-After": "4"}), TransientApiError, "429"),
        (requests.ReadTimeout(), TransientError, "timed out"),
        (requests.ConnectionError(), TransientError, "connection failed"),
        ((401, {"error": "invalid_client"}), ConstantContactError, "CC_CLIENT_ID"),
        ((200, b"<html>"), ConstantContactError, "unexpected"),
    ],
)
def test_token_endpoint_failures(answer: Any, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        oauth(answer).refresh("refresh-0")


def test_no_secret_reaches_a_message_or_a_repr() -> None:
    echo = {"error": "invalid_grant", "error_description": f"refresh-0 from {CLIENT_SECRET}"}
    with pytest.raises(ConstantContactError) as caught:
        oauth((400, echo)).refresh("refresh-0")
    assert "refresh-0" not in str(caught.value) and CLIENT_SECRET not in str(caught.value)
    shown = repr(Credentials("access-x", "refresh-x")) + repr(Grant("access-x", "refresh-x", 1))
    shown += repr(oauth((200, {}))) + repr(StaticToken("access-x"))
    assert "access-x" not in shown and "refresh-x" not in shown and CLIENT_SECRET not in shown


def test_settings_want_a_valid_key_to_keep_refresh_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CC_ACCESS_TOKEN", "CC_TOKEN_ENCRYPTION_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CC_REFRESH_TOKEN", "refresh-secret")
    monkeypatch.setenv("CC_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("CC_CLIENT_SECRET", CLIENT_SECRET)
    with pytest.raises(ConfigurationError, match="CC_TOKEN_ENCRYPTION_KEY is required") as caught:
        load_settings()
    monkeypatch.setenv("CC_TOKEN_ENCRYPTION_KEY", "bad-key-secret")
    with pytest.raises(ConfigurationError, match="32 url-safe") as bad:
        load_settings()
    for text in (str(caught.value), str(bad.value)):
        assert "refresh-secret" not in text and "bad-key-secret" not in text
    monkeypatch.setenv("CC_TOKEN_ENCRYPTION_KEY", f"{KEY},{Fernet.generate_key().decode()}")
    assert load_settings().cc_token_encryption_key is not None

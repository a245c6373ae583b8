"""The adapters a task needs, built from settings once per worker process.

Built lazily, so each prefork child makes its own HTTP sessions, S3 client and Redis pool after
the fork (none of them may be shared across processes).

Accounts live in the Redis account store (``workers.tokens``), encrypted with
CC_TOKEN_ENCRYPTION_KEY; the ``default`` account is seeded there from the CC_* variables. Without
a key there is no store: the default account's CC_ACCESS_TOKEN is used as it is, and it is the
only account.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import redis
import requests
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from workers import metrics
from workers.constant_contact import ConstantContactClient, OAuthClient, StaticToken, TokenSource
from workers.exceptions import InvalidExportRequest
from workers.jobs import JobStore
from workers.ratelimit import Budget, RateLimiter
from workers.settings import get_settings
from workers.storage import make_s3_client
from workers.tokens import (
    AccountStore,
    Credentials,
    RedisTokens,
    make_cipher,
    seed_fingerprint,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DEFAULT_ACCOUNT = "default"
#: Attempts of one Redis command across a restart (backoff 0.1 s doubling to 2 s: about 50 s).
REDIS_RETRIES = 30


def check_account(account: str) -> None:
    """Refuse an account nobody stored credentials for, before any API call."""
    store = account_store()
    if store is not None and store.exists(account):
        return
    if store is None and account == DEFAULT_ACCOUNT and get_settings().cc_access_token:
        return
    raise InvalidExportRequest(f"account: unknown account {account!r}")


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    """The service's own Redis (job records, accounts, the rate limit).

    Commands retry through a Redis restart of up to about a minute, like the broker's publishes
    (celeryconfig): a job must not fail because its record could not be written for a moment.
    """
    return redis.Redis.from_url(
        get_settings().jobs_url,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), REDIS_RETRIES),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


@lru_cache(maxsize=1)
def account_store() -> AccountStore | None:
    settings = get_settings()
    if settings.cc_token_encryption_key is None:
        return None
    store = AccountStore(
        redis_client(), make_cipher(settings.cc_token_encryption_key.get_secret_value())
    )
    _seed_default(store)
    return store


def _seed_default(store: AccountStore) -> None:
    """Store the default account's CC_* values unless Redis holds newer ones from them."""
    settings = get_settings()
    access = settings.cc_access_token.get_secret_value() if settings.cc_access_token else None
    refresh = settings.cc_refresh_token.get_secret_value() if settings.cc_refresh_token else None
    if access or refresh:
        seed = seed_fingerprint(access, refresh)
        store.seed(DEFAULT_ACCOUNT, Credentials(access, refresh, seed=seed))


@lru_cache(maxsize=1)
def oauth_client() -> OAuthClient | None:
    """The application's token endpoint client; None without CC_CLIENT_ID/CC_CLIENT_SECRET."""
    settings = get_settings()
    if not settings.cc_client_id or settings.cc_client_secret is None:
        return None
    return OAuthClient(
        str(settings.cc_token_url),
        settings.cc_client_id,
        settings.cc_client_secret.get_secret_value(),
    )


@lru_cache(maxsize=1)
def rate_limiter() -> RateLimiter:
    settings = get_settings()
    budget = Budget(
        per_second=settings.cc_rate_limit_per_second,
        per_day=settings.cc_rate_limit_per_day,
        max_countdown=settings.retry_max_seconds,
    )
    return RateLimiter(redis_client(), budget, clock_offset=settings.cc_rate_limit_clock_offset)


def _tokens(account: str) -> TokenSource:
    check_account(account)
    store = account_store()
    if store is None:
        token = get_settings().cc_access_token
        assert token is not None  # check_account admitted the default account
        return StaticToken(token.get_secret_value())
    reseed = (lambda: _seed_default(store)) if account == DEFAULT_ACCOUNT else None
    return RedisTokens(store, account, oauth_client(), reseed=reseed)


def _count_call(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """A requests hook: every API answer counted by endpoint and status, for the metrics."""
    request = response.request
    path = urlsplit(response.url).path
    if request.method == "POST":
        endpoint = "create_export"
    elif "/contact_exports/" in path:
        endpoint = "get_results"
    elif path.rstrip("/").endswith("/activities"):
        endpoint = "list_activities"
    else:
        endpoint = "get_activity"
    metrics.API_CALLS.labels(endpoint, str(response.status_code)).inc()


@lru_cache(maxsize=32)
def api_client(account: str) -> ConstantContactClient:
    settings = get_settings()
    session = requests.Session()
    session.hooks["response"].append(_count_call)
    return ConstantContactClient(
        settings.api_base_url,
        _tokens(account),
        session=session,
        account=account,
        budget=rate_limiter(),
        connect_timeout=settings.cc_connect_timeout,
        read_timeout=settings.cc_read_timeout,
    )


@lru_cache(maxsize=1)
def s3_client() -> S3Client:
    return make_s3_client(get_settings())


@lru_cache(maxsize=1)
def job_store() -> JobStore:
    return JobStore(redis_client())

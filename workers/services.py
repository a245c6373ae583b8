"""Everything a step works with, built once per worker process and handed to the steps.

Built after the fork (``workers.lifecycle``), so each prefork child makes its own HTTP
sessions, S3 client and Redis pool: none of them may be shared across processes. Tests build
one on the real Redis, S3 server and sandbox with ``build_services`` and call the steps with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import redis
import requests

from contact_exports_client.redis_tls import RedisTls, reconnecting, redis_at
from workers import metrics
from workers.constant_contact.accounts import Accounts
from workers.constant_contact.client import ConstantContactClient
from workers.constant_contact.ratelimit import Budget, RateLimiter
from workers.retry import RetryPolicy
from workers.s3.objectmeta import EncodingCheck
from workers.s3.storage import make_s3_client
from workers.settings import Settings
from workers.state.durations import Durations
from workers.state.jobs import JobStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: API clients kept per process, one per account (the least recently used go first).
MAX_API_CLIENTS = 32
#: Attempts of one Redis command across a restart (backoff 0.1 s doubling to 2 s: about 50 s).
REDIS_RETRIES = 30


class Sender(Protocol):
    """Sends a task message by name: a Celery app (``Celery.send_task``) is one."""

    def send_task(self, name: str, *args: Any, **kwargs: Any) -> Any: ...


class ResultStore(Protocol):
    """Stores a state at a result id: a Celery result backend (``store_result``) is one."""

    def store_result(
        self, task_id: str, result: Any, state: str, *args: Any, **kwargs: Any
    ) -> Any: ...


@dataclass
class Services:
    """The collaborators of the export steps; one per worker process."""

    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    #: Recent activity durations: the poll schedule's hint (``workers.state.durations``).
    durations: Durations
    accounts: Accounts
    limiter: RateLimiter
    s3: S3Client
    #: Where the next messages go (the chain's side tasks: seal, notify; the janitor's resends).
    sender: Sender
    #: Where PROGRESS is stored for the id the caller holds.
    results: ResultStore
    retry: RetryPolicy
    clock: Callable[[], float] = time.time
    #: What this process learnt of its S3 store's handling of aws-chunked uploads.
    encoding: EncodingCheck = field(default_factory=EncodingCheck)
    _api: dict[str, ConstantContactClient] = field(default_factory=dict, repr=False)

    def api(self, account: str) -> ConstantContactClient:
        """The API client of an account (checked with ``accounts.check`` first); the clients of
        the MAX_API_CLIENTS accounts used last are kept, each with its connection pool."""
        client = self._api.pop(account, None)
        if client is None:
            if len(self._api) >= MAX_API_CLIENTS:
                del self._api[next(iter(self._api))]  # the least recently used
            client = api_client(self.settings, self.accounts, self.limiter, account)
        self._api[account] = client  # now the most recently used
        return client


def jobs_redis(settings: Settings) -> redis.Redis:
    """The service's own Redis where the settings put it (JOBS_REDIS_URL, else the result
    backend), with their TLS files and Sentinel master name."""
    return redis_client(settings.jobs_url, settings.redis_tls, settings.broker_master_name)


def redis_client(url: str, tls: RedisTls | None = None, master: str | None = None) -> redis.Redis:
    """The service's own Redis (job records, accounts, the rate limit).

    Commands retry through a Redis restart of up to about a minute, like the broker's publishes
    (celeryconfig): a job must not fail because its record could not be written for a moment.
    A ``rediss://`` URL is verified against ``tls`` (REDIS_CA_FILE, ...; the system's CAs when
    None); a ``sentinel://`` URL reaches the master the Sentinels name ``master``, and follows a
    failover through the same retries; any other URL is used exactly as given.
    """
    return redis_at(
        url,
        tls or RedisTls(),
        master=master,
        **reconnecting(REDIS_RETRIES),
    )


def rate_limiter(settings: Settings, client: redis.Redis) -> RateLimiter:
    budget = Budget(
        per_second=settings.cc_rate_limit_per_second,
        per_day=settings.cc_rate_limit_per_day,
        max_countdown=settings.retry_max_seconds,
    )
    return RateLimiter(client, budget, clock_offset=settings.cc_rate_limit_clock_offset)


def api_client(
    settings: Settings, accounts: Accounts, limiter: RateLimiter, account: str
) -> ConstantContactClient:
    """An account's API client: its tokens, the cluster's budget, every answer counted."""
    return ConstantContactClient(
        settings.api_base_url,
        accounts.tokens(account),
        session=requests.Session(),
        account=account,
        budget=limiter,
        connect_timeout=settings.cc_connect_timeout,
        read_timeout=settings.cc_read_timeout,
        on_answer=_count_answer,
    )


def _count_answer(endpoint: str, status: int) -> None:
    metrics.API_CALLS.labels(endpoint, str(status)).inc()


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        initial=settings.retry_initial_seconds,
        cap=settings.retry_max_seconds,
        max_attempts=settings.retry_max_attempts,
    )


def build_services(
    settings: Settings,
    *,
    sender: Sender,
    results: ResultStore,
    s3: S3Client | None = None,
    clock: Callable[[], float] = time.time,
) -> Services:
    """Everything from settings; the Celery parts (``sender``, ``results``) come from the app."""
    client = jobs_redis(settings)
    return Services(
        settings=settings,
        redis=client,
        jobs=JobStore(client),
        durations=Durations(client),
        accounts=Accounts(settings, client),
        limiter=rate_limiter(settings, client),
        s3=s3 if s3 is not None else make_s3_client(settings),
        sender=sender,
        results=results,
        retry=retry_policy(settings),
        clock=clock,
    )

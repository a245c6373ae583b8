"""The adapters a task needs, built from settings once per worker process.

Built lazily, so each prefork child makes its own HTTP sessions, S3 client and Redis pool after
the fork (none of them may be shared across processes).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import redis

from workers.constant_contact import ConstantContactClient, StaticToken, TokenSource
from workers.exceptions import ConstantContactError, InvalidExportRequest
from workers.jobs import JobStore
from workers.settings import get_settings
from workers.storage import make_s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DEFAULT_ACCOUNT = "default"


def check_account(account: str) -> None:
    if account != DEFAULT_ACCOUNT:
        raise InvalidExportRequest(
            f"account: unknown account {account!r}; this worker knows only {DEFAULT_ACCOUNT!r}"
        )


def _tokens(account: str) -> TokenSource:
    check_account(account)
    token = get_settings().cc_access_token
    if token is None:
        raise ConstantContactError(
            "no access token for the default account: set CC_ACCESS_TOKEN", status=401
        )
    return StaticToken(token.get_secret_value())


@lru_cache(maxsize=32)
def api_client(account: str) -> ConstantContactClient:
    settings = get_settings()
    return ConstantContactClient(
        settings.api_base_url,
        _tokens(account),
        connect_timeout=settings.cc_connect_timeout,
        read_timeout=settings.cc_read_timeout,
    )


@lru_cache(maxsize=1)
def s3_client() -> S3Client:
    return make_s3_client(get_settings())


@lru_cache(maxsize=1)
def job_store() -> JobStore:
    return JobStore(redis.Redis.from_url(get_settings().jobs_url))

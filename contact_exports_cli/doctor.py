"""``contact-exports doctor``: is everything a worker needs there, and if not, what to do.

Each check uses what a worker uses — its settings, its S3 client, its API client and the shared
rate limit — so a green doctor means a worker would get as far. It never refreshes a token: with
rotating refresh tokens that would log every worker out of the account.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import redis
import requests
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from contact_exports_cli.connections import connect_redis, redact
from contact_exports_cli.exceptions import ServiceUnreachableError
from contact_exports_cli.exitcodes import ExitCode
from workers.constant_contact.client import ConstantContactClient, StaticToken
from workers.constant_contact.ratelimit import Budget, RateLimiter
from workers.constant_contact.tokens import (
    AccountState,
    AccountStore,
    Credentials,
    Record,
    make_cipher,
)
from workers.exceptions import (
    ConstantContactError,
    RateLimited,
    StorageError,
    StreamRefused,
    TransientApiError,
    TransientError,
)
from workers.s3.checksums import Checksum, body_checksum
from workers.s3.objectmeta import EncodingCheck
from workers.s3.storage import (
    MIN_PART_SIZE,
    MultipartWriter,
    answer_of,
    forbidden,
    make_s3_client,
    untrusted_certificate,
)
from workers.s3.streamput import ChunkedBody, put_stream, single_put_allowed
from workers.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: Where the probe object goes; a crashed doctor leaves at most this one small object behind.
PROBE_PREFIX = "contact-exports-doctor/probe-"
PROBE_BODY = b"written and deleted by contact-exports doctor\n"
#: Seconds to wait for the API's answer: an operator is waiting at the prompt.
API_READ_TIMEOUT = 15.0
DEFAULT_ACCOUNT = "default"


class Outcome(StrEnum):
    OK = "ok"
    #: Not verified, or fine for now: nothing the operator must fix.
    WARNING = "warning"
    PROBLEM = "problem"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Outcome
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


def exit_code(checks: list[Check]) -> ExitCode:
    outcomes = {check.outcome for check in checks}
    if Outcome.UNREACHABLE in outcomes:
        return ExitCode.UNREACHABLE
    if Outcome.PROBLEM in outcomes:
        return ExitCode.CHECK_FAILED
    return ExitCode.OK


def run(settings: Settings, *, bucket: str | None, accounts: list[str]) -> list[Check]:
    checks, jobs_redis = check_redis(settings)
    checks.append(check_bucket(settings, bucket or settings.s3_bucket))
    checks.extend(check_accounts(settings, jobs_redis, accounts))
    if jobs_redis is not None:
        jobs_redis.close()
    return checks


# -- Redis ---------------------------------------------------------------------------------


def check_redis(settings: Settings) -> tuple[list[Check], redis.Redis | None]:
    """Every Redis the workers use; returns a client of the one holding accounts, if it answers."""
    roles: dict[str, list[str]] = {}
    for role, url in (
        ("broker", settings.celery_broker_url),
        ("result backend", settings.celery_result_backend),
        ("job records and accounts", settings.jobs_url),
    ):
        roles.setdefault(url, []).append(role)
    checks, jobs_redis = [], None
    for url, names in roles.items():
        what = ", ".join(names)
        try:
            client = connect_redis(url, what)
        except ServiceUnreachableError as error:
            checks.append(
                Check(f"Redis ({what})", Outcome.UNREACHABLE, error.message, _redis_fix())
            )
            continue
        checks.append(Check(f"Redis ({what})", Outcome.OK, f"{redact(url)} answers"))
        if url == settings.jobs_url:
            jobs_redis = client
        else:
            client.close()
    return checks, jobs_redis


def _redis_fix() -> str:
    return (
        "start Redis there, or set CELERY_BROKER_URL, CELERY_RESULT_BACKEND (and JOBS_REDIS_URL) "
        "to the Redis the workers use"
    )


# -- S3 ------------------------------------------------------------------------------------


def check_bucket(settings: Settings, bucket: str | None, s3: S3Client | None = None) -> Check:
    """The bucket exists and takes an object: a small one is put, then deleted."""
    name = "S3 bucket"
    if not bucket:
        return Check(
            name,
            Outcome.PROBLEM,
            "no bucket to check: S3_BUCKET is not set and --bucket was not given",
            "set S3_BUCKET to the bucket exports land in (or check one with --bucket)",
        )
    where = str(settings.s3_endpoint_url) if settings.s3_endpoint_url else "AWS S3"
    if s3 is not None:
        return _probe(name, s3, bucket, where, settings)
    client = make_s3_client(settings)
    try:
        return _probe(name, client, bucket, where, settings)
    finally:
        client.close()


def _probe(name: str, client: S3Client, bucket: str, where: str, settings: Settings) -> Check:
    """The bucket is there, then takes each kind of write a worker makes: a PUT (the manifest),
    a multipart upload and, where exports may go in one, a streaming PUT; each probe object is
    deleted."""
    checksum = settings.checksum  # as the workers send it
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as error:
        return _bucket_refused(name, bucket, where, error)
    except NoCredentialsError:
        return Check(
            name,
            Outcome.PROBLEM,
            "no AWS credentials found",
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or another boto3 credential source)",
        )
    except BotoCoreError as error:
        untrusted = untrusted_certificate(error)
        if untrusted is not None:
            return Check(
                name,
                Outcome.PROBLEM,
                f"cannot use S3 at {where}: {untrusted}",
                "set AWS_CA_BUNDLE to a PEM file of the CA that signed the S3 server's certificate "
                "(for the workers too), or give the server a certificate this machine trusts",
            )
        return Check(
            name,
            Outcome.UNREACHABLE,
            f"cannot reach S3 at {where}: {error}",
            "check S3_ENDPOINT_URL and that the S3 server is up and reachable from here",
        )
    probe = f"{PROBE_PREFIX}{uuid.uuid4().hex}.txt"
    try:
        client.put_object(
            Bucket=bucket, Key=probe, Body=PROBE_BODY, **body_checksum(client, checksum, PROBE_BODY)
        )
    except (ClientError, BotoCoreError) as error:
        return Check(
            name,
            Outcome.PROBLEM,
            f"bucket {bucket} exists at {where} but refuses a test object: {error}",
            "let these credentials write to it (s3:PutObject, s3:AbortMultipartUpload) and, if "
            "the store rejects checksum headers, set S3_CHECKSUM_ALGORITHM=crc32 (a store that "
            "knows no CRC32C) or S3_CHECKSUM=when_required (one that takes none)",
        )
    deleted = _delete_probe(name, client, bucket, probe)
    if deleted is not None:
        return deleted
    probe = f"{PROBE_PREFIX}{uuid.uuid4().hex}.txt"
    try:
        with MultipartWriter(
            client,
            bucket,
            probe,
            part_size=MIN_PART_SIZE,
            parts_in_flight=1,
            content_type="text/plain",
            checksum=checksum,
        ) as writer:
            writer.write(PROBE_BODY)
            writer.complete()
    except StorageError as error:
        return Check(
            name,
            Outcome.PROBLEM,
            f"bucket {bucket} at {where} takes a PUT but refuses a multipart upload: {error}",
            "let these credentials make multipart uploads (s3:PutObject, "
            "s3:AbortMultipartUpload) and, if the store rejects checksums, set "
            "S3_CHECKSUM_ALGORITHM=crc32 or S3_CHECKSUM=when_required",
        )
    deleted = _delete_probe(name, client, bucket, probe)
    if deleted is not None:
        return deleted
    if single_put_allowed(settings, len(PROBE_BODY)):
        return _probe_streaming_put(name, client, bucket, where, checksum)
    return Check(name, Outcome.OK, f"{bucket} at {where} exists and takes every write")


def _probe_streaming_put(
    name: str, client: S3Client, bucket: str, where: str, checksum: Checksum
) -> Check:
    """One streaming PUT, as exports up to S3_SINGLE_PUT_MAX_MIB go, and its size read back:
    a store that refuses it, or stores its framing, costs each worker process one try of it
    (``workers.s3.objectmeta.EncodingCheck``) before it sends parts."""
    probe = f"{PROBE_PREFIX}{uuid.uuid4().hex}.txt"
    body = ChunkedBody(io.BytesIO(PROBE_BODY), len(PROBE_BODY), checksum=checksum)
    outcome = Check(name, Outcome.OK, f"{bucket} at {where} exists and takes every write")
    try:
        _, stored = put_stream(client, bucket, probe, body, metadata={})
        EncodingCheck().keeps_chunked(client, stored)
    except StreamRefused as refused:
        outcome = Check(
            name,
            Outcome.WARNING,
            f"{bucket} at {where} is writable, but exports cannot go in one streaming PUT:"
            f" {refused}",
            "set S3_SINGLE_PUT_MAX_MIB=0: the workers send parts then, where each process "
            "otherwise tries one streaming PUT first",
        )
    except (StorageError, TransientError) as error:
        if isinstance(error, StorageError) and error.permanent:
            outcome = Check(
                name,
                Outcome.PROBLEM,
                f"bucket {bucket} at {where} takes parts but not a streaming PUT: {error}",
                "set S3_SINGLE_PUT_MAX_MIB=0 to send every export in parts",
            )
        else:
            outcome = Check(
                name,
                Outcome.WARNING,
                f"{bucket} at {where} takes a PUT and parts; a streaming PUT was not checked:"
                f" {error}",
                "run doctor again: the store failed for now",
            )
    return _delete_probe(name, client, bucket, probe) or outcome


def _delete_probe(name: str, client: S3Client, bucket: str, probe: str) -> Check | None:
    try:
        client.delete_object(Bucket=bucket, Key=probe)
    except (ClientError, BotoCoreError) as error:
        return Check(
            name,
            Outcome.PROBLEM,
            f"bucket {bucket} takes objects but the probe {probe} could not be deleted: {error}",
            "delete the probe object by hand and let these credentials use s3:DeleteObject",
        )
    return None


def _bucket_refused(name: str, bucket: str, where: str, error: ClientError) -> Check:
    status, code = answer_of(error)
    if status == 404 or code in ("404", "NoSuchBucket"):
        return Check(
            name,
            Outcome.PROBLEM,
            f"bucket {bucket} does not exist at {where}",
            f"create it (aws s3 mb s3://{bucket}) or set S3_BUCKET to a bucket that exists",
        )
    if forbidden(error):
        return Check(
            name,
            Outcome.PROBLEM,
            f"access to bucket {bucket} at {where} is denied",
            "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, and let them list and write it",
        )
    return Check(name, Outcome.PROBLEM, f"bucket {bucket} at {where}: {error}", "see the error")


# -- Constant Contact ----------------------------------------------------------------------


def check_accounts(settings: Settings, client: redis.Redis | None, only: list[str]) -> list[Check]:
    """One GET /activities?limit=1 per account, with the token a worker would send."""
    if client is None:
        return [
            Check(
                "Constant Contact API",
                Outcome.WARNING,
                "not checked: accounts and the shared rate limit live in Redis, which is down",
            )
        ]
    entries = _account_entries(settings, client)
    names = only or sorted(entries)
    if not names:
        return [
            Check(
                "Constant Contact API",
                Outcome.PROBLEM,
                "no account has credentials",
                "set CC_ACCESS_TOKEN, or add an account: contact-exports accounts add NAME",
            )
        ]
    limiter = RateLimiter(
        client,
        Budget(
            per_second=settings.cc_rate_limit_per_second,
            per_day=settings.cc_rate_limit_per_day,
            max_countdown=settings.retry_max_seconds,
        ),
        clock_offset=settings.cc_rate_limit_clock_offset,
    )
    checks = []
    for name in names:
        entry = entries.get(name)
        if entry is None:
            checks.append(
                Check(
                    _account_check(name),
                    Outcome.PROBLEM,
                    f"no credentials stored for account {name!r}",
                    f"store them: contact-exports accounts add {name}",
                )
            )
        elif isinstance(entry, Check):
            checks.append(entry)
        else:
            checks.append(check_token(settings, limiter, name, entry))
    return checks


def _account_check(name: str) -> str:
    return f"account {name}"


def _account_entries(settings: Settings, client: redis.Redis) -> dict[str, Record | Check]:
    """Per account, the credentials a worker would use, or the problem that stops it reading
    them. The default account's record in Redis wins over CC_ACCESS_TOKEN (workers keep
    refreshed tokens there); without CC_TOKEN_ENCRYPTION_KEY it is the only account."""
    entries: dict[str, Record | Check] = {}
    key = settings.cc_token_encryption_key
    if key is not None:
        store = AccountStore(client, make_cipher(key.get_secret_value()))
        for name in store.names():
            try:
                record = store.load(name)
            except ConstantContactError as error:
                entries[name] = Check(
                    _account_check(name),
                    Outcome.PROBLEM,
                    str(error),
                    f"store the tokens again: contact-exports accounts add {name}",
                )
                continue
            if record is not None:
                entries[name] = record
    if DEFAULT_ACCOUNT not in entries and settings.cc_access_token is not None:
        access = settings.cc_access_token.get_secret_value()
        refresh = settings.cc_refresh_token
        credentials = Credentials(access, refresh.get_secret_value() if refresh else None)
        entries[DEFAULT_ACCOUNT] = Record(credentials, 0, AccountState.ACTIVE)
    return entries


def check_token(settings: Settings, limiter: RateLimiter, name: str, record: Record) -> Check:
    check = _account_check(name)
    store_again = (
        "set CC_ACCESS_TOKEN (and restart the workers) or "
        if name == DEFAULT_ACCOUNT
        else "store new tokens: "
    ) + f"contact-exports accounts add {name}"
    if record.state is AccountState.REAUTHORIZE:
        return Check(
            check,
            Outcome.PROBLEM,
            "Constant Contact refused its refresh token (invalid_grant): it must be re-authorized",
            store_again,
        )
    token = record.credentials.access_token
    if not token:
        return Check(
            check,
            Outcome.WARNING,
            "only a refresh token is stored: a worker gets an access token on first use "
            "(not tried here, a refresh may rotate the refresh token)",
        )
    try:
        _list_one_activity(settings, limiter, name, token)
    except RateLimited as error:
        return Check(check, Outcome.WARNING, f"not checked: {error}", "run doctor again later")
    except TransientApiError as error:
        if error.status == 429:
            return Check(check, Outcome.WARNING, f"not checked: {error}", "run doctor again later")
        return _api_down(check, settings, str(error))
    except TransientError as error:
        return _api_down(check, settings, str(error))
    except ConstantContactError as error:
        return _api_refused(check, settings, record, error, store_again)
    return Check(check, Outcome.OK, f"{settings.api_base_url} accepts its access token")


def _list_one_activity(settings: Settings, limiter: RateLimiter, name: str, token: str) -> None:
    """The cheapest request that needs a valid token, sent as a worker sends its own."""
    with requests.Session() as session:
        api = ConstantContactClient(
            settings.api_base_url,
            StaticToken(token),
            account=name,
            budget=limiter,
            session=session,
            connect_timeout=settings.cc_connect_timeout,
            read_timeout=min(settings.cc_read_timeout, API_READ_TIMEOUT),
        )
        api.list_activities(limit=1)


def _api_down(check: str, settings: Settings, error: str) -> Check:
    return Check(
        check,
        Outcome.UNREACHABLE,
        f"cannot reach the Constant Contact API at {settings.api_base_url}: {error}",
        "check CC_API_BASE_URL and the network (proxy, firewall); if it answered 5xx, retry later",
    )


def _api_refused(
    check: str, settings: Settings, record: Record, error: ConstantContactError, fix: str
) -> Check:
    if error.status == 401 and record.credentials.refresh_token:
        return Check(
            check,
            Outcome.WARNING,
            "the access token was refused (expired?); workers renew it with the refresh token",
            "nothing, unless exports of this account fail with ConstantContactError 401",
        )
    if error.status == 401:
        return Check(
            check,
            Outcome.PROBLEM,
            "Constant Contact refused the access token (401) and there is no refresh token",
            fix,
        )
    if error.status == 403:
        return Check(
            check,
            Outcome.PROBLEM,
            f"the token may not read activities (403): {error}",
            "authorize the application with the contact_data scope, then " + fix,
        )
    return Check(
        check,
        Outcome.PROBLEM,
        f"the API refused the check request: {error}",
        f"check CC_API_BASE_URL (now {settings.api_base_url})",
    )


def report(checks: list[Check]) -> list[dict[str, Any]]:
    return [check.to_json() for check in checks]

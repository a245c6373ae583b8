"""Typed settings read from the environment (docs/contract.md §5 plus documented extras).

Everything is validated when a worker starts, so a missing or malformed value stops it with a
message naming the variable instead of failing later inside a task.
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from cryptography.fernet import Fernet
from pydantic import Field, FilePath, HttpUrl, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contact_exports_client.redis_tls import RedisTls, mask_url
from contact_exports_client.sentinel import SentinelUrl, uses_sentinel
from contact_exports_client.signing import MessageSigning
from workers.constant_contact.ratelimit import DEFAULT_PER_DAY, DEFAULT_PER_SECOND
from workers.exceptions import ConfigurationError
from workers.export.keytemplate import placeholders
from workers.s3.checksums import Algorithm, Checksum
from workers.s3.destinations import AllowedDestinations
from workers.s3.objectoptions import ObjectOptions, parse_tags

#: Constant Contact's production API root.
DEFAULT_API_BASE_URL = "https://api.cc.email/v3"
#: Constant Contact's OAuth2 token endpoint.
DEFAULT_TOKEN_URL = "https://authz.constantcontact.com/oauth2/default/v1/token"  # noqa: S105 — a URL, not a secret
#: Broker and backend when nothing is configured: a Redis next to the worker.
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
#: The only ``ssl_cert_reqs`` a URL may carry: certificate verification is never turned off.
REQUIRED = frozenset({"required", "cert_required"})
#: Where an export lands when the job names no key; ``{account}`` and ``{job_id}`` are filled in.
DEFAULT_KEY_TEMPLATE = "contact-exports/{account}/{job_id}.{ext}"


class Settings(BaseSettings):
    """One field per environment variable; the variable is the field name in upper case."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    celery_broker_url: str = DEFAULT_REDIS_URL
    celery_result_backend: str = DEFAULT_REDIS_URL
    #: Redis Sentinel's master name, when the broker/backend URLs are ``sentinel://`` URLs.
    broker_master_name: str | None = None
    #: Where job records live; the result backend's Redis when unset.
    jobs_redis_url: str | None = None
    #: Seconds before Redis hands an unacknowledged message to another worker. It must stay well
    #: above the longest countdown, or waiting polls are delivered twice; it is also how long a
    #: message held by a dead worker (or lost in a broker restart) waits before it runs again.
    broker_visibility_timeout: int = Field(default=600, ge=2)
    #: Seconds between a worker's sweeps for such messages (kombu's unacked_restore_interval).
    broker_restore_interval: float = Field(default=10.0, gt=0)
    #: For every ``rediss://`` URL above: the CA that signed the server's certificate (unset: the
    #: system's CAs), and a client certificate and its key if the server asks for one. The
    #: server's certificate is always verified.
    redis_ca_file: FilePath | None = None
    redis_cert_file: FilePath | None = None
    redis_key_file: FilePath | None = None
    #: Behind ``sentinel://`` URLs the Sentinels and the servers they name speak TLS only, with
    #: the files above.
    redis_sentinel_tls: bool = False
    #: Signed task messages (contact_exports_client.signing): this worker's RSA key and
    #: certificate, and the certificates whose signatures it accepts. Unset: plain JSON.
    message_signing_key: FilePath | None = None
    message_signing_cert: FilePath | None = None
    message_signing_trusted: str | None = None

    cc_api_base_url: HttpUrl = HttpUrl(DEFAULT_API_BASE_URL)
    cc_access_token: SecretStr | None = None
    cc_refresh_token: SecretStr | None = None
    cc_client_id: str | None = None
    cc_client_secret: SecretStr | None = None
    cc_token_url: HttpUrl = HttpUrl(DEFAULT_TOKEN_URL)
    #: Seconds to wait for a connection, then for each read, on every API request.
    cc_connect_timeout: float = Field(default=10.0, gt=0)
    cc_read_timeout: float = Field(default=60.0, gt=0)
    #: Fernet key(s) encrypting the credentials stored in Redis, comma-separated: the first
    #: encrypts, all decrypt (rotation). Needed for CC_REFRESH_TOKEN and for accounts in Redis.
    cc_token_encryption_key: SecretStr | None = None
    #: The application's request budget, shared by every worker and every account.
    cc_rate_limit_per_second: float = Field(default=DEFAULT_PER_SECOND, gt=0)
    cc_rate_limit_per_day: int = Field(default=DEFAULT_PER_DAY, ge=1)
    #: Test only: seconds added to the rate limiter's clock, to reach 00:00 UTC on cue.
    cc_rate_limit_clock_offset: float = 0.0

    s3_endpoint_url: HttpUrl | None = None
    s3_bucket: str | None = None
    #: Buckets (each with an optional key prefix) jobs may name; unset: S3_BUCKET alone
    #: (workers.s3.destinations).
    s3_allowed_buckets: str | None = None
    #: Defaults of every export's object (workers.s3.objectoptions): server-side encryption
    #: (AES256 or aws:kms, with S3_KMS_KEY_ID), storage class, and tags as key=value,key=value.
    s3_sse: str | None = None
    s3_kms_key_id: str | None = None
    s3_storage_class: str | None = None
    s3_tags: str = ""
    aws_default_region: str = "us-east-1"
    #: boto3's request checksums: ``when_supported`` (a checksum on every part, checked by the
    #: server) or ``when_required`` for S3-compatible stores that reject checksum headers.
    s3_checksum: Literal["when_supported", "when_required"] = "when_supported"
    #: Which checksum: ``crc32c`` (computed in hardware, a fifth to half of CRC32's CPU) or
    #: ``crc32`` for stores that know no other (``workers.s3.checksums``).
    s3_checksum_algorithm: Algorithm = "crc32c"
    #: 16 MiB, one part uploading while the next downloads. More parts in flight never beat one
    #: in the levers measured on rclone (bench/stream.py --levers) in three sessions on two
    #: machines (2, 3 or 6): rclone streams parts to disk in order and holds the part it
    #: needs next, so a second part in flight only waits inside it. Between 8 and 16 MiB the
    #: evidence is split: in-process, 8 MiB led in nine of ten side-by-side rounds; in the worker
    #: (bench/stream.py, two full runs each) 16 MiB reached 87-88 % of curl at 2 GiB against 81-84 %
    #: for 8 MiB, and the worker's figure is the one that counts. In production the Constant
    #: Contact download, not the upload, bounds the rate, and one part uploading while the next
    #: one downloads keeps both busy; raise S3_PARTS_IN_FLIGHT where the upload is the slower side
    #: and the store takes parts in parallel, as SeaweedFS does (docs/performance.md).
    s3_part_size_mib: int = Field(default=16, ge=5, le=512)
    s3_parts_in_flight: int = Field(default=1, ge=1, le=16)
    #: Exports up to this size (the results link announces it) go in one streaming PUT, with a
    #: checksum trailer, instead of a multipart upload (``workers.s3.streamput``); 0 turns it off.
    #: One PUT was ahead of parts at 64 and 512 MiB (bench/stream.py --levers: 89 against 79 %, 91
    #: against 83 % of curl) and holds 1 MiB instead of two parts. What it risks is a failed PUT
    #: starting the download over, at most 1 GiB at this default, where a failed part is sent again
    #: on its own; a broken download starts over either way.
    s3_single_put_max_mib: int = Field(default=1024, ge=0, le=5120)
    #: Whether SigV4 signs the sha256 of every part: ``auto`` only where neither TLS (https) nor a
    #: checksum the server checks (S3_CHECKSUM=when_supported, S3_CONTENT_MD5) protects the body;
    #: ``always`` on every part (a second full hash pass over the stream).
    s3_payload_signing: Literal["auto", "always"] = "auto"
    #: Send Content-MD5 with every part: the one checksum every S3 store checks (``rclone serve
    #: s3`` checks no other); costs an MD5 pass per part, outside the GIL.
    s3_content_md5: bool = False

    #: Seconds a step's lease lives without a heartbeat: how long a killed worker's step blocks
    #: the next delivery of the same step.
    lease_ttl_seconds: float = Field(default=30.0, ge=1.0)

    #: Seconds between sweeps for jobs whose messages were lost (0 turns the janitor off).
    janitor_interval_seconds: float = Field(default=60.0, ge=0)
    #: ``json`` (one object per line, for log pipelines) or ``console`` (for people).
    log_format: Literal["json", "console"] = "json"
    #: Port of the worker's Prometheus endpoint; unset, no endpoint.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)

    #: Secret that signs completion webhooks (HMAC-SHA256); jobs with notify_url need it.
    webhook_secret: SecretStr | None = None
    #: Hosts a job's notify_url may name, comma-separated; empty, no webhooks are sent.
    webhook_allowed_hosts: str = ""

    export_key_template: str = DEFAULT_KEY_TEMPLATE
    #: Seconds from enqueueing to give up with ExportTimedOut.
    export_deadline_seconds: int = Field(default=6 * 3600, ge=10)
    #: Seconds before the first poll (small exports complete in a fraction of a second), and the
    #: shortest wait between polls.
    poll_initial_seconds: float = Field(default=0.3, gt=0)
    #: Longest countdown of a poll task. Waits for a predicted completion may be longer and are
    #: slept in parts without requests; waits while an activity reports no progress are capped
    #: here, so this bounds how late such an activity is seen.
    poll_max_seconds: float = Field(default=240.0, gt=0)
    #: Seconds to wait before retrying a transient failure, doubled per attempt up to the max.
    retry_initial_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=120.0, gt=0)
    retry_max_attempts: int = Field(default=8, ge=0)

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        longest = max(self.poll_max_seconds, self.retry_max_seconds)
        if longest * 2 > self.broker_visibility_timeout:
            raise ValueError(
                f"BROKER_VISIBILITY_TIMEOUT ({self.broker_visibility_timeout}s) must be at least "
                f"twice the longest countdown ({longest}s), or waiting tasks are delivered twice"
            )
        has_refresh = self.cc_refresh_token and self.cc_client_id and self.cc_client_secret
        if not self.cc_access_token and not has_refresh:
            raise ValueError(
                "CC_ACCESS_TOKEN is required (or CC_REFRESH_TOKEN with CC_CLIENT_ID and "
                "CC_CLIENT_SECRET) for the default account"
            )
        try:
            used = placeholders(self.export_key_template)
        except ValueError as error:
            raise ValueError(f"EXPORT_KEY_TEMPLATE: {error}") from None
        if "job_id" not in used:
            raise ValueError("EXPORT_KEY_TEMPLATE must contain {job_id}, or exports overwrite")
        return self

    @model_validator(mode="after")
    def _redis_urls(self) -> Settings:
        """TLS is verified or not used: no URL may turn certificate checks off. A Sentinel URL
        is well formed and has its master's name."""
        if (self.redis_cert_file is None) != (self.redis_key_file is None):
            raise ValueError("REDIS_CERT_FILE and REDIS_KEY_FILE go together: set both or neither")
        for url, names in self.redis_urls().items():
            name = " / ".join(names)
            try:
                scheme = urlsplit(url).scheme.lower()
                query = dict(parse_qsl(urlsplit(url).query))
            except ValueError:
                raise ValueError(f"{name}: not a valid URL") from None
            reqs = query.get("ssl_cert_reqs")
            if scheme == "rediss" and reqs is not None and reqs.lower() not in REQUIRED:
                raise ValueError(
                    f"{name}: ssl_cert_reqs={reqs} turns certificate verification off; drop it "
                    "(the server's certificate is always verified: set REDIS_CA_FILE to its CA)"
                )
            if scheme == "redis" and any(k.startswith("ssl_") for k in query):
                raise ValueError(
                    f"{name}: {mask_url(url)} has ssl_* parameters but is not a rediss:// URL"
                )
            if uses_sentinel(url):
                self._check_sentinel(url, name)
        if self.redis_sentinel_tls and not any(map(uses_sentinel, self.redis_urls())):
            raise ValueError(
                "REDIS_SENTINEL_TLS is set but no Redis URL is sentinel://; for TLS to one "
                "server use rediss://"
            )
        return self

    def _check_sentinel(self, url: str, name: str) -> None:
        if not self.broker_master_name:
            raise ValueError(
                f"{name}: a sentinel:// URL needs BROKER_MASTER_NAME, the master's name in the "
                "Sentinels' configuration"
            )
        try:
            SentinelUrl.parse(url)
        except ValueError as error:
            raise ValueError(f"{name}: {mask_url(url)}: {error}") from None

    @property
    def message_signing(self) -> MessageSigning | None:
        if self.message_signing_key is None or self.message_signing_cert is None:
            return None
        return MessageSigning(
            str(self.message_signing_key),
            str(self.message_signing_cert),
            self.message_signing_trusted or "",
        )

    @model_validator(mode="after")
    def _signing(self) -> Settings:
        """All three signing variables or none, and a worker that trusts its own signature."""
        names = ("message_signing_key", "message_signing_cert", "message_signing_trusted")
        given = [name for name in names if getattr(self, name)]
        if given and len(given) < len(names):
            missing = ", ".join(n.upper() for n in names if n not in given)
            raise ValueError(f"signed messages need {missing} too (or none of the three)")
        signing = self.message_signing
        problem = signing.problem() if signing else None
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _credentials_at_rest(self) -> Settings:
        """Refreshed tokens are shared through Redis, which only ever holds them encrypted."""
        if self.cc_token_encryption_key is None:
            if self.cc_refresh_token:
                raise ValueError("CC_TOKEN_ENCRYPTION_KEY is required with CC_REFRESH_TOKEN")
            return self
        keys = [k for k in self.cc_token_encryption_key.get_secret_value().split(",") if k]
        try:
            [Fernet(k.strip()) for k in keys or [""]]
        except ValueError:
            raise ValueError(
                "CC_TOKEN_ENCRYPTION_KEY: each key must be 32 url-safe base64-encoded bytes "
                "(make one with `python -m workers.tokens new-key`)"
            ) from None
        return self

    @cached_property
    def allowed_destinations(self) -> AllowedDestinations:
        """Parsed once, when the settings are checked at start; every job reads it."""
        return AllowedDestinations.parse(self.s3_allowed_buckets, self.s3_bucket)

    @property
    def object_options(self) -> ObjectOptions:
        """The defaults of every export's object options (a job's own win)."""
        return ObjectOptions.of(
            self.s3_sse, self.s3_kms_key_id, self.s3_storage_class, parse_tags(self.s3_tags)
        )

    @model_validator(mode="after")
    def _object_defaults(self) -> Settings:
        try:
            problem = self.object_options.problem()
        except ValueError as error:  # S3_TAGS not key=value
            raise ValueError(str(error)) from None
        if problem:
            raise ValueError(f"S3_{problem.split(':', 1)[0].upper()}: {problem}")
        return self

    @model_validator(mode="after")
    def _destinations(self) -> Settings:
        self.allowed_destinations  # noqa: B018  # raises ValueError for a list that allows nothing
        return self

    @property
    def api_base_url(self) -> str:
        return str(self.cc_api_base_url).rstrip("/")

    @property
    def webhook_hosts(self) -> frozenset[str]:
        return frozenset(
            h.strip().lower() for h in self.webhook_allowed_hosts.split(",") if h.strip()
        )

    @property
    def jobs_url(self) -> str:
        return self.jobs_redis_url or self.celery_result_backend

    @property
    def redis_tls(self) -> RedisTls:
        """The TLS files of every ``rediss://`` connection (broker, backend, job records)."""
        ca, cert, key = (
            str(f) if f else None
            for f in (self.redis_ca_file, self.redis_cert_file, self.redis_key_file)
        )
        return RedisTls(ca, cert, key, sentinel=self.redis_sentinel_tls)

    def redis_urls(self) -> dict[str, list[str]]:
        """Each distinct Redis URL, with the variables that name it (for messages)."""
        urls: dict[str, list[str]] = {}
        urls.setdefault(self.celery_broker_url, []).append("CELERY_BROKER_URL")
        urls.setdefault(self.celery_result_backend, []).append("CELERY_RESULT_BACKEND")
        if self.jobs_redis_url:
            urls.setdefault(self.jobs_redis_url, []).append("JOBS_REDIS_URL")
        return urls

    @property
    def part_size(self) -> int:
        return self.s3_part_size_mib * 1024 * 1024

    @property
    def checksum(self) -> Checksum:
        """The checksum every body the worker stores carries (when S3_CHECKSUM sends one)."""
        return Checksum(self.s3_checksum_algorithm)


def describe(error: ValidationError) -> str:
    """Name each offending variable as the operator would type it, never echoing its value."""
    lines = []
    for item in error.errors():
        name = "_".join(str(part) for part in item["loc"]).upper() or "configuration"
        lines.append(f"  {name}: {item['msg']}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        raise ConfigurationError(describe(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once: workers are configured by their environment at start."""
    return load_settings()

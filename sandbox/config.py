"""Sandbox settings and their defaults.

The defaults are named constants so the CLI, the in-process server, the test
helpers and the documentation all point at one value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

READY_LINE_PREFIX = "sandbox listening on "
"""The CLI's one stdout line is this prefix plus the base URL; launchers wait for it."""

DEFAULT_HOST = "127.0.0.1"
"""Loopback only: static tokens and plain HTTP must never face a real network."""

DEFAULT_PORT = 0
"""Port 0 lets the kernel pick a free port, so parallel test runs never collide."""

DEFAULT_CONTACTS = 10_000
"""Big enough for a multi-megabyte export, small enough to render in about a second."""

DEFAULT_SEED = 1

DEFAULT_PROCESSING_SECONDS = 3.0
"""Minimum lifetime of an activity, so clients really have to poll."""

DEFAULT_RATE_LIMIT = 4
"""Constant Contact's documented limit: 4 requests per second per access token."""

DEFAULT_DAILY_QUOTA = 10_000
"""Constant Contact's documented daily limit per access token."""

DEFAULT_MAX_QUEUED = 1_000
"""The swagger's 429 text: at most 1,000 queued activities per account."""

DEFAULT_ACCESS_TOKEN_TTL = 86_400.0
"""Seconds an access token from the token endpoint stays valid (a day, like production)."""

DEFAULT_CLIENT_ID = "sandbox-client-id"
DEFAULT_CLIENT_SECRET = "sandbox-client-secret"  # noqa: S105 - a sandbox default, not a secret
DEFAULT_REFRESH_TOKEN = "sandbox-refresh-token"  # noqa: S105 - a sandbox default, not a secret
"""OAuth works out of the box with these; pass the CLI flags to change them."""


@dataclass(frozen=True)
class SandboxConfig:
    """Everything fixed at start-up; runtime knobs live in :class:`sandbox.state.Settings`."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    tokens: tuple[str, ...] = ()
    contacts: int = DEFAULT_CONTACTS
    seed: int = DEFAULT_SEED
    processing_seconds: float = DEFAULT_PROCESSING_SECONDS
    spool_dir: Path | None = None
    bom: bool = False
    crlf: bool = False
    chunked: bool = False
    rate_limit: int = DEFAULT_RATE_LIMIT
    daily_quota: int = DEFAULT_DAILY_QUOTA
    max_queued: int = DEFAULT_MAX_QUEUED
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    refresh_token: str = DEFAULT_REFRESH_TOKEN
    rotating_refresh_tokens: bool = False
    access_token_ttl: float = DEFAULT_ACCESS_TOKEN_TTL
    faults: tuple[dict[str, Any], ...] = ()
    ready_file: Path | None = None
    quiet: bool = False

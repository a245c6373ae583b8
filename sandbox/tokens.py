"""Access tokens and the OAuth refresh-token grant.

Static tokens (``--token``) never expire on their own, so tests are not at the
mercy of the clock; issued tokens expire after the configured TTL.  With
rotation on, each refresh invalidates every earlier refresh token, which is
what catches clients that persist the old one or refresh concurrently.
Tokens are only ever logged as :func:`fingerprint`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

FINGERPRINT_HEX_DIGITS = 12
TOKEN_BYTES = 32
OAUTH_SCOPE = "contact_data offline_access"


def fingerprint(token: str) -> str:
    """A short sha256 prefix: enough to tell tokens apart in logs, useless to an attacker."""
    return hashlib.sha256(token.encode()).hexdigest()[:FINGERPRINT_HEX_DIGITS]


class OAuthError(Exception):
    """A refused grant, carrying the RFC 6749 error code and the HTTP status to use."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    refresh_token: str
    expires_in: int


class TokenStore:
    """Valid access tokens (with expiry) and refresh tokens of the single sandbox account."""

    def __init__(
        self,
        static_tokens: tuple[str, ...],
        *,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        rotating: bool,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._client_id = client_id
        self._client_secret = client_secret
        self._rotating = rotating
        self._ttl = ttl
        self._access: dict[str, float | None] = dict.fromkeys(static_tokens)
        self._refresh: set[str] = {refresh_token} if refresh_token else set()

    def is_valid(self, access_token: str) -> bool:
        with self._lock:
            if access_token not in self._access:
                return False
            expires = self._access[access_token]
            return expires is None or self._clock() < expires

    def expire(self, access_token: str | None = None) -> int:
        """Make one token (or all) answer 401 from now on; return how many were affected."""
        with self._lock:
            now = self._clock()
            targets = [access_token] if access_token is not None else list(self._access)
            hit = [t for t in targets if t in self._access]
            for token in hit:
                self._access[token] = now
            return len(hit)

    def _client_ok(self, client_id: str | None, client_secret: str | None) -> bool:
        return (
            client_id is not None
            and client_secret is not None
            and hmac.compare_digest(client_id.encode(), self._client_id.encode())
            and hmac.compare_digest(client_secret.encode(), self._client_secret.encode())
        )

    def refresh(
        self, client_id: str | None, client_secret: str | None, refresh_token: str | None
    ) -> TokenGrant:
        """Exchange a refresh token for a new access token (and, rotating, a new refresh token)."""
        if not self._client_ok(client_id, client_secret):
            raise OAuthError(401, "invalid_client", "Client authentication failed")
        if not refresh_token:
            raise OAuthError(400, "invalid_request", "The refresh_token parameter is required")
        with self._lock:
            if refresh_token not in self._refresh:
                raise OAuthError(
                    400, "invalid_grant", "The refresh token is invalid, expired or already used"
                )
            access = secrets.token_urlsafe(TOKEN_BYTES)
            self._access[access] = self._clock() + self._ttl
            if self._rotating:
                refresh_token = secrets.token_urlsafe(TOKEN_BYTES)
                self._refresh = {refresh_token}
            return TokenGrant(access, refresh_token, int(self._ttl))

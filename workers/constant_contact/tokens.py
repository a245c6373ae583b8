"""OAuth2 credentials per account, shared by every worker through Redis and encrypted at rest.

Constant Contact's refresh tokens may rotate: each refresh hands out a new refresh token and
invalidates every earlier one, so two workers refreshing at once log the account out
(``invalid_grant``). Hence, per account, across the cluster:

* one refresh at a time — a Redis lock; the others wait and reuse what the holder stored;
* the new refresh token is stored (compare-and-swap on the record's version, and only while
  the lock is still ours) before the new access token is used;
* ``invalid_grant`` marks the account as needing re-authorization: every later request fails at
  once with ConstantContactError, without calling the token endpoint again.

Records are Fernet-encrypted with ``CC_TOKEN_ENCRYPTION_KEY`` (several comma-separated keys
rotate: the first encrypts, all decrypt). No token is ever logged or put in a message.

Operators manage accounts with ``contact-exports accounts`` or ``python -m workers.tokens``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from enum import StrEnum

import redis
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from contact_exports_client.keys import ACCOUNTS_KEY, account_key, refresh_lock_key
from workers import metrics
from workers.constant_contact.client import OAuthClient
from workers.exceptions import ConstantContactError, TransientError

log = logging.getLogger(__name__)

#: What an account name looks like (the export request's ``account`` rule).
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: Refresh this many seconds before a known expiry (at most half the token's life), so no
#: request leaves with a dying token.
REFRESH_AHEAD_SECONDS = 300.0
#: How long one worker may hold an account's refresh lock: well over the token request's
#: timeouts (TOKEN_CONNECT_TIMEOUT + TOKEN_READ_TIMEOUT in workers.constant_contact.client), so it
#: cannot lapse while the holder still waits for the answer.
REFRESH_LOCK_SECONDS = 60.0
#: How often a worker waiting for another's refresh looks at the record again.
REFRESH_POLL_SECONDS = 0.05


def reauthorize_message(name: str) -> str:
    return (
        f"account {name!r} must be re-authorized: Constant Contact refused its refresh token "
        f"(invalid_grant). Store new credentials with `python -m workers.tokens put {name}`"
        + (" (or set CC_REFRESH_TOKEN and restart the workers)" if name == "default" else "")
    )


class AccountState(StrEnum):
    ACTIVE = "active"
    REAUTHORIZE = "reauthorize"


@dataclass(frozen=True, repr=False)
class Credentials:
    """One account's tokens: ``refresh_at`` is when the access token should be replaced (None:
    when it is refused), ``seed`` fingerprints the environment values the record came from."""

    access_token: str | None
    refresh_token: str | None
    refresh_at: float | None = None
    seed: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(<redacted>, refresh_at={self.refresh_at})"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Credentials:
        return cls(**json.loads(data))


def refresh_time(now: float, expires_in: float | None) -> float | None:
    """When a token issued ``now`` for ``expires_in`` seconds should be replaced."""
    if not expires_in:
        return None
    return now + expires_in - min(REFRESH_AHEAD_SECONDS, expires_in / 2)


def seed_fingerprint(access_token: str | None, refresh_token: str | None) -> str:
    """Tells whether the environment changed since the record was seeded (never a token)."""
    return hashlib.sha256(f"{access_token}\0{refresh_token}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Record:
    credentials: Credentials
    version: int
    state: AccountState


def make_cipher(keys: str) -> MultiFernet:
    """``key1,key2``: the first encrypts, every one decrypts (for key rotation)."""
    parts = [k.strip() for k in keys.split(",") if k.strip()]
    if not parts:
        raise ValueError("no Fernet key given")
    try:
        return MultiFernet([Fernet(k) for k in parts])
    except ValueError:
        raise ValueError("each key must be 32 url-safe base64-encoded bytes (Fernet)") from None


# KEYS: record, lock, accounts. ARGV: expected version ('' = any), holder ('' = no lock needed),
# secret, state, name. Writes only if the version (and the lock) are still what the caller saw.
_SWAP = """
if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if ARGV[1] ~= '' and version ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'secret', ARGV[3], 'version', version + 1, 'state', ARGV[4])
redis.call('SADD', KEYS[3], ARGV[5])
return version + 1
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class AccountStore:
    """Credentials of every account in Redis, shared by all workers on all machines."""

    def __init__(self, client: redis.Redis, cipher: MultiFernet) -> None:
        self._redis = client
        self._cipher = cipher
        self._swap = client.register_script(_SWAP)
        self._unlock = client.register_script(_UNLOCK)

    def names(self) -> list[str]:
        return sorted(_text(n) for n in self._redis.smembers(ACCOUNTS_KEY))

    def exists(self, name: str) -> bool:
        return bool(self._redis.exists(account_key(name)))

    def load(self, name: str) -> Record | None:
        values = self._redis.hmget(account_key(name), ["secret", "version", "state"])
        if values[0] is None:
            return None
        try:
            credentials = Credentials.from_json(self._cipher.decrypt(values[0]))
        except InvalidToken:
            raise ConstantContactError(
                f"the stored credentials of account {name!r} cannot be decrypted with "
                "CC_TOKEN_ENCRYPTION_KEY (was the key changed?): store them again"
            ) from None
        state = AccountState(_text(values[2] or AccountState.ACTIVE.value))
        return Record(credentials, int(values[1] or 0), state)

    def put(self, name: str, credentials: Credentials) -> None:
        """Store credentials unconditionally (an operator re-authorized the account). The
        record keeps the seed mark it had, so unchanged CC_* variables do not overwrite it."""
        if not ACCOUNT_NAME.match(name):
            raise ValueError(f"not an account name: {name!r}")
        try:
            record = self.load(name)
        except ConstantContactError:
            record = None
        seed = record.credentials.seed if record else None
        self.swap(name, replace(credentials, seed=seed), version=None, holder=None)

    def seed(self, name: str, credentials: Credentials) -> bool:
        """Store credentials from the environment unless the record came from the same values
        (a rotated refresh token in Redis is newer than the one still in the environment) or
        from an operator's ``put``, which wins over the environment."""
        try:
            record = self.load(name)
            version: int | None = record.version if record else 0
        except ConstantContactError:
            record, version = None, None  # undecryptable: the environment's values replace it
        if record is not None and record.credentials.seed in (None, credentials.seed):
            return False
        return self.swap(name, credentials, version=version, holder=None)

    def swap(
        self,
        name: str,
        credentials: Credentials,
        *,
        version: int | None,
        holder: str | None,
        state: AccountState = AccountState.ACTIVE,
    ) -> bool:
        """Write if the record is still at ``version`` (and ``holder`` still holds the lock)."""
        secret = self._cipher.encrypt(credentials.to_json())
        keys = [account_key(name), refresh_lock_key(name), ACCOUNTS_KEY]
        expected = "" if version is None else str(version)
        args: list[bytes | str] = [expected, holder or "", secret, state.value, name]
        return bool(self._swap(keys=keys, args=args))

    def remove(self, name: str) -> None:
        self._redis.delete(account_key(name), refresh_lock_key(name))
        self._redis.srem(ACCOUNTS_KEY, name)

    def lock(self, name: str, ttl: float = REFRESH_LOCK_SECONDS) -> str | None:
        """Take the account's refresh lock; the returned holder id releases it."""
        holder = secrets.token_hex(16)
        taken = self._redis.set(refresh_lock_key(name), holder, nx=True, px=int(ttl * 1000))
        return holder if taken else None

    def unlock(self, name: str, holder: str) -> None:
        self._unlock(keys=[refresh_lock_key(name)], args=[holder])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisTokens:
    """The ``TokenSource`` of one account: its tokens in Redis, refreshed once for everyone."""

    def __init__(
        self,
        store: AccountStore,
        account: str,
        oauth: OAuthClient | None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        lock_wait: float = REFRESH_LOCK_SECONDS,
        reseed: Callable[[], object] | None = None,
    ) -> None:
        self._store = store
        self._reseed = reseed
        self._account = account
        self._oauth = oauth
        self._clock = clock
        self._sleep = sleep
        self._lock_wait = lock_wait

    def __repr__(self) -> str:
        return f"RedisTokens({self._account!r})"

    def access_token(self) -> str:
        credentials = self._record().credentials
        usable = self._usable(credentials, rejected="")
        return usable or self.refresh(credentials.access_token or "")

    def refresh(self, rejected: str) -> str:
        """A token other than ``rejected``: refreshed by this worker if it gets the lock, else
        by the worker that has it (this one waits and reuses its result)."""
        give_up = self._clock() + self._lock_wait
        while True:
            usable = self._usable(self._record().credentials, rejected)
            if usable:
                return usable
            holder = self._store.lock(self._account)
            if holder is not None:
                try:
                    return self._refresh_holding(holder, rejected)
                finally:
                    self._store.unlock(self._account, holder)
            if self._clock() > give_up:
                raise TransientError(f"account {self._account!r}: a token refresh is stuck")
            self._sleep(REFRESH_POLL_SECONDS)

    def _refresh_holding(self, holder: str, rejected: str) -> str:
        record = self._record()  # another worker may have finished just before we locked
        usable = self._usable(record.credentials, rejected)
        if usable:
            return usable
        old = record.credentials
        if not old.refresh_token or self._oauth is None:
            raise ConstantContactError(
                f"account {self._account!r}: the access token was refused or has expired, and "
                "there is no refresh token (and CC_CLIENT_ID/CC_CLIENT_SECRET) to renew it",
                status=401,
                error_key="unauthorized",
            )
        try:
            grant = self._oauth.refresh(old.refresh_token)
            metrics.TOKEN_REFRESHES.inc()
        except ConstantContactError as error:
            if error.error_key != "invalid_grant":
                raise
            self._store.swap(
                self._account,
                old,
                version=record.version,
                holder=holder,
                state=AccountState.REAUTHORIZE,
            )
            log.error("account %s: refresh token refused; re-authorize it", self._account)
            raise self._reauthorize() from None
        new = Credentials(
            grant.access_token,
            grant.refresh_token or old.refresh_token,
            refresh_time(self._clock(), grant.expires_in),
            old.seed,
        )
        if not self._store.swap(self._account, new, version=record.version, holder=holder):
            log.error("account %s: refresh lock lost before new tokens were stored", self._account)
            raise TransientError(f"account {self._account!r}: token refresh lost its lock")
        log.info("account %s: access token refreshed", self._account)
        return grant.access_token

    def _usable(self, credentials: Credentials, rejected: str) -> str | None:
        token = credentials.access_token
        due = credentials.refresh_at is not None and credentials.refresh_at <= self._clock()
        return token if token and token != rejected and not due else None

    def _record(self) -> Record:
        record = self._store.load(self._account)
        if record is None and self._reseed is not None:
            # Redis lost the record (a restart without persistence): the environment's values
            # are all there is. A rotated refresh token is gone with it, and that shows as
            # invalid_grant on the next refresh.
            self._reseed()
            record = self._store.load(self._account)
        if record is None:
            raise ConstantContactError(f"account {self._account!r} has no stored credentials")
        if record.state is AccountState.REAUTHORIZE:
            raise self._reauthorize()
        return record

    def _reauthorize(self) -> ConstantContactError:
        return ConstantContactError(
            reauthorize_message(self._account), status=401, error_key="invalid_grant"
        )

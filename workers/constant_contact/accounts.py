"""Whose credentials a request uses: the accounts a worker may export for, and their tokens.

Accounts live in the Redis account store (``workers.constant_contact.tokens``), encrypted with
CC_TOKEN_ENCRYPTION_KEY; the ``default`` account is seeded there from the CC_* variables.
Without a key there is no store: the default account's CC_ACCESS_TOKEN is used as it is, and it
is the only account.
"""

from __future__ import annotations

import redis

from workers.constant_contact.client import DEFAULT_ACCOUNT, OAuthClient, StaticToken, TokenSource
from workers.constant_contact.tokens import (
    AccountStore,
    Credentials,
    RedisTokens,
    make_cipher,
    seed_fingerprint,
)
from workers.exceptions import InvalidExportRequest
from workers.settings import Settings


class Accounts:
    """The accounts of one worker process, from its settings and its Redis."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self._settings = settings
        self.store: AccountStore | None = None
        if settings.cc_token_encryption_key is not None:
            cipher = make_cipher(settings.cc_token_encryption_key.get_secret_value())
            self.store = AccountStore(client, cipher)
        self._oauth = _oauth_client(settings)
        self._seeded = False

    def check(self, account: str) -> None:
        """Refuse an account nobody stored credentials for, before any API call."""
        store = self._seeded_store()
        if store is not None and store.exists(account):
            return
        if store is None and account == DEFAULT_ACCOUNT and self._settings.cc_access_token:
            return
        raise InvalidExportRequest(f"account: unknown account {account!r}")

    def tokens(self, account: str) -> TokenSource:
        """The account's token source; a checked account's (``check``), or one that fails on
        its first request."""
        store = self._seeded_store()
        if store is None:
            token = self._settings.cc_access_token
            if account != DEFAULT_ACCOUNT or token is None:
                raise InvalidExportRequest(f"account: unknown account {account!r}")
            return StaticToken(token.get_secret_value())
        reseed = (lambda: self._seed(store)) if account == DEFAULT_ACCOUNT else None
        return RedisTokens(store, account, self._oauth, reseed=reseed)

    def _seeded_store(self) -> AccountStore | None:
        if self.store is not None and not self._seeded:
            self._seed(self.store)
            self._seeded = True
        return self.store

    def _seed(self, store: AccountStore) -> None:
        """Store the default account's CC_* values unless Redis holds newer ones from them."""
        settings = self._settings
        access = settings.cc_access_token.get_secret_value() if settings.cc_access_token else None
        refresh = (
            settings.cc_refresh_token.get_secret_value() if settings.cc_refresh_token else None
        )
        if access or refresh:
            seed = seed_fingerprint(access, refresh)
            store.seed(DEFAULT_ACCOUNT, Credentials(access, refresh, seed=seed))


def _oauth_client(settings: Settings) -> OAuthClient | None:
    """The application's token endpoint client; None without CC_CLIENT_ID/CC_CLIENT_SECRET."""
    if not settings.cc_client_id or settings.cc_client_secret is None:
        return None
    return OAuthClient(
        str(settings.cc_token_url),
        settings.cc_client_id,
        settings.cc_client_secret.get_secret_value(),
    )

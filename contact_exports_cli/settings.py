"""The workers' settings, for the commands that act on what the workers use (accounts, doctor).

Loaded per command, not cached: the operator may fix the environment and run again, and tests
run commands in one process under different environments.
"""

from __future__ import annotations

from cryptography.fernet import MultiFernet

from contact_exports_cli.exceptions import InvalidUsageError
from workers.constant_contact.tokens import make_cipher
from workers.exceptions import ConfigurationError
from workers.settings import Settings, load_settings


def worker_settings() -> Settings:
    """The settings a worker would start with, or InvalidUsageError naming the wrong variable."""
    try:
        return load_settings()
    except ConfigurationError as error:
        raise InvalidUsageError(
            str(error.code),
            hint="this command reads the workers' settings: run it with the workers' environment",
        ) from None


def token_cipher(settings: Settings) -> MultiFernet:
    if settings.cc_token_encryption_key is None:
        raise InvalidUsageError(
            "CC_TOKEN_ENCRYPTION_KEY is not set: accounts are stored encrypted with it",
            hint="make one with `python -m workers.tokens new-key` and give the workers the same",
        )
    try:
        return make_cipher(settings.cc_token_encryption_key.get_secret_value())
    except ValueError as error:
        raise InvalidUsageError(f"CC_TOKEN_ENCRYPTION_KEY: {error}") from None

"""``contact-exports accounts``: the Constant Contact credentials the workers use, per account.

Tokens come from a hidden prompt or from stdin, never from arguments: arguments end up in shell
history and in ``ps`` for every user of the machine. They are stored Fernet-encrypted
through ``workers.constant_contact.tokens.AccountStore``, exactly as the workers read them, and
never printed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from contact_exports_cli import render
from contact_exports_cli.connections import connect_redis
from contact_exports_cli.exceptions import InvalidUsageError, NotFoundError
from contact_exports_cli.exitcodes import EXIT_CODES_HELP
from contact_exports_cli.handling import handled
from contact_exports_cli.settings import token_cipher, worker_settings
from workers.constant_contact.tokens import ACCOUNT_NAME, AccountStore, Credentials, refresh_time
from workers.exceptions import ConstantContactError
from workers.settings import Settings

app = typer.Typer(
    help="Store, list and remove the Constant Contact credentials of each account.",
    no_args_is_help=True,
)


@dataclass(frozen=True, repr=False)
class Tokens:
    access_token: str | None
    refresh_token: str | None
    #: Seconds the access token stays valid, when the issuer said.
    expires_in: float | None = None

    def __repr__(self) -> str:
        return "Tokens(<redacted>)"


@contextmanager
def open_store(settings: Settings) -> Iterator[AccountStore]:
    cipher = token_cipher(settings)
    client = connect_redis(settings.jobs_url, "accounts")
    try:
        yield AccountStore(client, cipher)
    finally:
        client.close()


def parse_tokens(text: str) -> Tokens:
    """A JSON object ``{"access_token", "refresh_token"}`` (what ``python -m workers.tokens put``
    reads), or lines: the access token, then optionally the refresh token."""
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise InvalidUsageError("stdin starts with '{' but is not a JSON object") from None
        if not isinstance(data, dict):
            raise InvalidUsageError("stdin must hold a JSON object")
        unknown = set(data) - {"access_token", "refresh_token", "expires_in"}
        if unknown:
            raise InvalidUsageError(f"unknown keys on stdin: {', '.join(sorted(unknown))}")
        return Tokens(
            _token(data.get("access_token")),
            _token(data.get("refresh_token")),
            _seconds(data.get("expires_in")),
        )
    lines = [line.strip() for line in text.splitlines()]
    if len(lines) > 2:
        raise InvalidUsageError("stdin: expected the access token, then at most a refresh token")
    return Tokens(_token(lines[0] if lines else None), _token(lines[1] if len(lines) > 1 else None))


def _token(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or any(c.isspace() for c in value):
        raise InvalidUsageError("a token must be a string without spaces")
    return value


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise InvalidUsageError("expires_in must be a positive number of seconds")
    return float(value)


def prompt_tokens() -> Tokens:
    access = typer.prompt(
        "Access token (hidden; empty if you only have a refresh token)",
        default="",
        show_default=False,
        hide_input=True,
        err=True,
    )
    refresh = typer.prompt(
        "Refresh token (hidden; empty for none)",
        default="",
        show_default=False,
        hide_input=True,
        err=True,
    )
    return Tokens(_token(access.strip()), _token(refresh.strip()))


@app.command("add", epilog=EXIT_CODES_HELP)
@handled
def add(
    name: Annotated[str, typer.Argument(help="Account name, as jobs give it in `account`.")],
    stdin: Annotated[
        bool,
        typer.Option(
            "--stdin",
            help='Read the tokens from stdin: {"access_token", "refresh_token", "expires_in"} '
            "as JSON, or the access token then the refresh token, one a line.",
        ),
    ] = False,
    expires_in: Annotated[
        float | None,
        typer.Option(min=1, help="Seconds the access token stays valid, if known."),
    ] = None,
) -> None:
    """Store (or replace) an account's tokens, encrypted with CC_TOKEN_ENCRYPTION_KEY.

    Replacing the tokens also clears a "must re-authorize" mark.
    """
    if not ACCOUNT_NAME.match(name):
        raise InvalidUsageError(f"not an account name: {name!r} (letters, digits, _ . -; up to 64)")
    settings = worker_settings()
    # Connected before asking: an operator should not type a token into a command that fails.
    with open_store(settings) as store:
        tokens = parse_tokens(sys.stdin.read()) if stdin else prompt_tokens()
        if not tokens.access_token and not tokens.refresh_token:
            raise InvalidUsageError("no token given: an access token, a refresh token or both")
        replaced = store.exists(name)
        lifetime = (expires_in or tokens.expires_in) if tokens.access_token else None
        renew_at = refresh_time(time.time(), lifetime)
        store.put(name, Credentials(tokens.access_token, tokens.refresh_token, renew_at))
    verb = "replaced" if replaced else "stored"
    render.stdout().print(f"{verb} the credentials of account {name!r} (encrypted)")
    if tokens.refresh_token and not (settings.cc_client_id and settings.cc_client_secret):
        render.note("note: workers refresh tokens only with CC_CLIENT_ID and CC_CLIENT_SECRET set")


@app.command("list", epilog=EXIT_CODES_HELP)
@handled
def list_accounts(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Account names and states; never their tokens."""
    with open_store(worker_settings()) as store:
        rows = [describe(store, name) for name in store.names()]
    if as_json:
        render.print_json(rows)
        return
    render.stdout().print(
        render.table(
            "accounts",
            ["account", "state", "refresh token", "access token renewed at"],
            [
                [
                    str(row["account"]),
                    str(row["state"]),
                    "yes" if row["refresh_token"] else "no",
                    render.when(row["renew_at"]) if row["renew_at"] else "",
                ]
                for row in rows
            ],
        )
    )


def describe(store: AccountStore, name: str) -> dict[str, Any]:
    """What may be shown of an account: never a token, only whether there is one."""
    row: dict[str, Any] = {"account": name, "refresh_token": None, "renew_at": None}
    try:
        record = store.load(name)
    except ConstantContactError:
        return {**row, "state": "undecryptable"}
    if record is None:
        return {**row, "state": "missing"}
    return {
        **row,
        "state": record.state.value,
        "refresh_token": record.credentials.refresh_token is not None,
        "renew_at": record.credentials.refresh_at,
    }


@app.command("remove", epilog=EXIT_CODES_HELP)
@handled
def remove(
    name: Annotated[str, typer.Argument(help="Account name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Forget an account's credentials: its jobs fail with InvalidExportRequest from then on."""
    with open_store(worker_settings()) as store:
        if not store.exists(name) and name not in store.names():
            raise NotFoundError(f"no account {name!r}")
        if not yes and not typer.confirm(f"remove the credentials of account {name!r}?", err=True):
            render.note("kept")
            return
        store.remove(name)
    render.stdout().print(f"removed account {name!r}")
    if name == "default":
        render.note("note: workers store the default account again from CC_* when they start")

"""``python -m workers.tokens put|list|remove|new-key``: the operators' account commands.

The credentials themselves live in ``workers.constant_contact.tokens``; this module is the
command line the documentation and the re-authorization message name.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from cryptography.fernet import Fernet

from workers.constant_contact.tokens import AccountStore, Credentials, make_cipher, refresh_time
from workers.services import jobs_redis
from workers.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    """``python -m workers.tokens``: store, list and remove accounts; make a key."""
    parser = argparse.ArgumentParser(prog="python -m workers.tokens")
    sub = parser.add_subparsers(dest="command", required=True)
    put = sub.add_parser(
        "put",
        help='store credentials read as JSON from stdin: {"access_token"'
        ', "refresh_token", "expires_in"}; clears a re-authorization mark',
    )
    put.add_argument("account")
    sub.add_parser("list", help="account names and states (never tokens)")
    remove = sub.add_parser("remove")
    remove.add_argument("account")
    sub.add_parser("new-key", help="print a new CC_TOKEN_ENCRYPTION_KEY")
    args = parser.parse_args(argv)
    if args.command == "new-key":
        print(Fernet.generate_key().decode())
        return 0
    store = _store_from_settings()
    if args.command == "put":
        body: dict[str, Any] = json.loads(sys.stdin.read())
        expires_in = body.get("expires_in")
        store.put(
            args.account,
            Credentials(
                body.get("access_token"),
                body.get("refresh_token"),
                refresh_time(time.time(), float(expires_in) if expires_in else None),
            ),
        )
    elif args.command == "remove":
        store.remove(args.account)
    else:
        for name in store.names():
            record = store.load(name)
            print(name, record.state.value if record else "missing")
    return 0


def _store_from_settings() -> AccountStore:
    settings = load_settings()
    if settings.cc_token_encryption_key is None:
        raise SystemExit("CC_TOKEN_ENCRYPTION_KEY is not set")
    cipher = make_cipher(settings.cc_token_encryption_key.get_secret_value())
    return AccountStore(jobs_redis(settings), cipher)


if __name__ == "__main__":
    sys.exit(main())

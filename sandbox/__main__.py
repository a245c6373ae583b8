"""``python -m sandbox``: run the Constant Contact export emulator until SIGTERM/SIGINT.

Prints exactly one line to stdout once listening (``sandbox listening on URL``),
which is what :class:`sandbox.testing.SandboxProcess` waits for; everything
else (request logs, errors) goes to stderr, and never contains a token.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from sandbox import config as defaults
from sandbox.config import READY_LINE_PREFIX, SandboxConfig
from sandbox.faults import FaultRuleError, parse_rule
from sandbox.server import Sandbox


def _fault(text: str) -> dict[str, Any]:
    try:
        rule = json.loads(text)
        parse_rule(rule, 0)
    except (ValueError, FaultRuleError) as exc:
        raise argparse.ArgumentTypeError(f"invalid fault rule {text!r}: {exc}") from exc
    assert isinstance(rule, dict)
    return rule


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Local emulator of the Constant Contact v3 contact-export API.",
    )
    p.add_argument("--host", default=defaults.DEFAULT_HOST)
    p.add_argument("--port", type=int, default=defaults.DEFAULT_PORT, help="0 = a free port")
    p.add_argument("--token", action="append", default=[], help="a valid Bearer token (repeatable)")
    p.add_argument("--contacts", type=_non_negative_int, default=defaults.DEFAULT_CONTACTS)
    p.add_argument("--seed", type=int, default=defaults.DEFAULT_SEED)
    p.add_argument(
        "--processing-seconds",
        type=_non_negative_float,
        default=defaults.DEFAULT_PROCESSING_SECONDS,
    )
    p.add_argument("--spool-dir", type=Path, help="keep and reuse rendered CSVs here")
    p.add_argument("--bom", action="store_true", help="start CSVs with a UTF-8 BOM")
    p.add_argument("--crlf", action="store_true", help="CRLF line endings (default LF)")
    p.add_argument("--chunked", action="store_true", help="send CSVs with chunked encoding")
    p.add_argument("--rate-limit", type=_non_negative_int, default=defaults.DEFAULT_RATE_LIMIT)
    p.add_argument("--daily-quota", type=_non_negative_int, default=defaults.DEFAULT_DAILY_QUOTA)
    p.add_argument("--max-queued", type=_non_negative_int, default=defaults.DEFAULT_MAX_QUEUED)
    p.add_argument("--client-id", default=defaults.DEFAULT_CLIENT_ID)
    p.add_argument("--client-secret", default=defaults.DEFAULT_CLIENT_SECRET)
    p.add_argument("--refresh-token", default=defaults.DEFAULT_REFRESH_TOKEN)
    p.add_argument("--rotating-refresh-tokens", action="store_true")
    p.add_argument(
        "--access-token-ttl", type=_non_negative_float, default=defaults.DEFAULT_ACCESS_TOKEN_TTL
    )
    p.add_argument("--fault", type=_fault, action="append", default=[], help="a fault rule (JSON)")
    p.add_argument("--ready-file", type=Path, help="write the base URL here once listening")
    p.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    return p


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    return SandboxConfig(
        host=args.host,
        port=args.port,
        tokens=tuple(args.token),
        contacts=args.contacts,
        seed=args.seed,
        processing_seconds=args.processing_seconds,
        spool_dir=args.spool_dir,
        bom=args.bom,
        crlf=args.crlf,
        chunked=args.chunked,
        rate_limit=args.rate_limit,
        daily_quota=args.daily_quota,
        max_queued=args.max_queued,
        client_id=args.client_id,
        client_secret=args.client_secret,
        refresh_token=args.refresh_token,
        rotating_refresh_tokens=args.rotating_refresh_tokens,
        access_token_ttl=args.access_token_ttl,
        faults=tuple(args.fault),
        ready_file=args.ready_file,
        quiet=args.quiet,
    )


def _write_ready_file(path: Path, url: str) -> None:
    """Write atomically, so a watcher never reads a half-written URL."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(url + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    sandbox = Sandbox(config_from_args(args))
    try:
        url = sandbox.start()
        if args.ready_file is not None:
            _write_ready_file(args.ready_file, url)
        sys.stdout.write(f"{READY_LINE_PREFIX}{url}\n")
        sys.stdout.flush()
        while not stop.wait(1.0):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

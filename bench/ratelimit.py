"""How much of Constant Contact's request budget the cluster-wide limiter uses, and never exceeds.

    .venv/bin/python bench/ratelimit.py                      # 1, 4 and 8 processes, 20 s each
    .venv/bin/python bench/ratelimit.py --processes 8 --seconds 60

Each run starts N worker processes that always have a request to make (work is queued): each
calls the real ``ConstantContactClient`` with the real Redis ``RateLimiter`` against the sandbox,
which enforces 4 requests per second like Constant Contact. A step the limiter turns away waits
the countdown it was given (as a Celery retry would) and asks again. Figures come from the
sandbox's request log: requests per second over the run, the most requests in any one-second
window, and 429s. A last run splits 8 processes 7 : 1 between two accounts, to show that the one
busy account does not starve the other. The table goes to stdout and ``bench/results/
ratelimit.md``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contact_exports_client.keys import RATELIMIT_KEY_PREFIX
from sandbox.testing import SandboxProcess
from workers.constant_contact.client import ConstantContactClient, StaticToken
from workers.constant_contact.ratelimit import Budget, RateLimiter
from workers.exceptions import RateLimited, TransientError

RESULTS = Path(__file__).resolve().parent / "results" / "ratelimit.md"
TOKEN = "bench-ratelimit-token"  # noqa: S105 — a local sandbox's fixed token
LIMIT = 4
REDIS_URL = "redis://127.0.0.1:6379/10"
#: The longest countdown a refused step gets (RETRY_MAX_SECONDS in the workers).
MAX_COUNTDOWN = 120.0


@dataclass(frozen=True)
class Row:
    label: str
    requests: int
    seconds: float
    worst_second: int
    throttled: int
    by_account: dict[str, int]

    @property
    def rate(self) -> float:
        """Requests per second from the first request to the last."""
        return (self.requests - 1) / self.seconds if self.requests > 1 else 0.0


def work(api_base: str, href: str, account: str, until: float, redis_url: str, done: Any) -> None:
    """One worker process: request after request until ``until``, as the limiter allows."""
    limiter = RateLimiter(redis.Redis.from_url(redis_url), Budget(max_countdown=MAX_COUNTDOWN))
    client = ConstantContactClient(
        api_base, StaticToken(TOKEN), account=account, budget=limiter, read_timeout=10
    )
    sent = 0
    while time.time() < until:
        try:
            client.get_activity(href)
            sent += 1
        except RateLimited as refused:
            time.sleep(min(refused.retry_after or 0.1, max(0.0, until - time.time())))
        except TransientError:
            time.sleep(1.0)
    done.put((account, sent))


def run(sandbox: SandboxProcess, accounts: list[str], seconds: float) -> Row:
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{RATELIMIT_KEY_PREFIX}*"):
        client.delete(key)
    client.close()
    sandbox.reset()
    href = create_activity(sandbox)
    until = time.time() + seconds
    context = multiprocessing.get_context("spawn")
    done = context.Queue()
    processes = [
        context.Process(target=work, args=(sandbox.api_base, href, account, until, REDIS_URL, done))
        for account in accounts
    ]
    for process in processes:
        process.start()
    by_account = dict.fromkeys(accounts, 0)
    for _ in processes:
        account, sent = done.get(timeout=seconds + 60)
        by_account[account] += sent
    for process in processes:
        process.join()
    log = [e for e in sandbox.requests() if e["endpoint"] == "get_activity"]
    times = sorted(datetime.fromisoformat(str(e["ts"])).timestamp() for e in log)
    ok = [e for e in log if e["status"] == 200]
    label = f"{len(accounts)} process" + ("es" if len(accounts) > 1 else "")
    if len(set(accounts)) > 1:
        label += (
            " (" + " : ".join(f"{accounts.count(a)} {a}" for a in dict.fromkeys(accounts)) + ")"
        )
    return Row(
        label=label,
        requests=len(ok),
        seconds=max(times[-1] - times[0], 1e-9) if times else 0.0,
        worst_second=most_in_one_second(times),
        throttled=sum(1 for e in log if e["status"] == 429),
        by_account=by_account,
    )


def most_in_one_second(times: list[float]) -> int:
    best, first = 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


def table(rows: list[Row]) -> str:
    lines = [
        f"Limit {LIMIT} requests/s (the sandbox enforces it like Constant Contact); the limiter "
        "spaces permits 5 % wider.",
        "",
        "| worker processes | requests | seconds | requests/s | of the budget | most in 1 s "
        "| 429s | per account |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        shares = ", ".join(f"{a} {n}" for a, n in row.by_account.items())
        lines.append(
            f"| {row.label} | {row.requests} | {row.seconds:.1f} | {row.rate:.2f} | "
            f"{row.rate / LIMIT:.0%} | {row.worst_second} | {row.throttled} | {shares} |"
        )
    return "\n".join(lines)


def create_activity(sandbox: SandboxProcess) -> str:
    response = requests.post(
        f"{sandbox.api_base}/activities/contact_exports",
        json={"fields": ["email_address"]},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return str(body["_links"]["self"]["href"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--processes", default="1,4,8", help="comma-separated counts")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--no-fairness", action="store_true", help="skip the two-account run")
    args = parser.parse_args()
    rows: list[Row] = []
    with SandboxProcess(tokens=[TOKEN], contacts=10, processing_seconds=0, rate_limit=LIMIT) as sb:
        for count in (int(n) for n in args.processes.split(",")):
            rows.append(run(sb, ["main"] * count, args.seconds))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
        if not args.no_fairness:
            rows.append(run(sb, ["busy"] * 7 + ["quiet"], args.seconds))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = table(rows)
    print()
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(f"# Rate limiter benchmark\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

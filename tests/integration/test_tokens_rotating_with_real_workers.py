"""Rotating refresh tokens shared by 3 real workers x 4 slots, against the sandbox with its rate
limit on: the stale access token is refreshed exactly once for the whole cluster (and once more
when the new one is revoked mid-run), every export completes, and no token ever shows up in a
log line, a result or Redis in clear. A results link to another host is refused unseen."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from celery import Celery
from cryptography.fernet import Fernet

from devstack.worker import WorkerProcess
from sandbox.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_REFRESH_TOKEN
from sandbox.testing import SandboxProcess
from sandbox.tokens import fingerprint
from tests.integration.conftest import WorkerFactory
from tests.integration.helpers import enqueue, wait_until
from workers.constant_contact.client import ConstantContactClient, StaticToken
from workers.constant_contact.ratelimit import RateLimiter
from workers.constant_contact.tokens import AccountStore, make_cipher
from workers.exceptions import ConstantContactError

pytestmark = pytest.mark.integration

STALE_TOKEN = f"stale-{uuid.uuid4().hex}"
KEY = Fernet.generate_key().decode()
#: Enough that exports are still in flight on every worker when the refreshed token is revoked.
EXPORTS = 8
RESULT_TIMEOUT = 120.0
MY_KEYS = ("contact_exports:account*", "contact_exports:ratelimit:*")


def forget_accounts_and_budget(url: str) -> None:
    client = redis.Redis.from_url(url)
    for pattern in MY_KEYS:
        for key in client.scan_iter(pattern):
            client.delete(key)
    client.close()


@pytest.fixture(scope="module")
def cc() -> Iterator[SandboxProcess]:
    """Constant Contact as production has it: 4 requests/s per token, rotating refresh tokens."""
    with SandboxProcess(
        tokens=[STALE_TOKEN],
        contacts=300,
        processing_seconds=0.3,
        rate_limit=4,
        extra_args=["--rotating-refresh-tokens"],
    ) as server:
        yield server


class ForeignHost:
    """Another host on the network: records any request that reaches it."""

    def __init__(self) -> None:
        seen = self.seen = []  # type: list[dict[str, str]]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(dict(self.headers))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@dataclass
class Run:
    workers: list[WorkerProcess]
    summaries: list[dict[str, Any]]


@pytest.fixture(scope="module")
def run(
    start_worker: WorkerFactory, client: Celery, cc: SandboxProcess, redis_url: str, s3: Any
) -> Iterator[Run]:
    forget_accounts_and_budget(redis_url)
    cc.expire_tokens(STALE_TOKEN)
    env = {
        "CC_API_BASE_URL": cc.api_base,
        "CC_TOKEN_URL": cc.token_url,
        "CC_ACCESS_TOKEN": STALE_TOKEN,
        "CC_REFRESH_TOKEN": DEFAULT_REFRESH_TOKEN,
        "CC_CLIENT_ID": DEFAULT_CLIENT_ID,
        "CC_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "CC_TOKEN_ENCRYPTION_KEY": KEY,
        "RETRY_MAX_ATTEMPTS": "50",
    }
    workers = start_worker.many(3, concurrency=4, **env)
    tag = uuid.uuid4().hex[:6]
    results = [
        enqueue(client, export={"fields": ["email_address"]}, job_id=f"rot-{tag}-{n}")
        for n in range(EXPORTS)
    ]
    # Revoke the refreshed token while the other exports are in flight.
    wait_until(lambda: any(r.ready() for r in results), RESULT_TIMEOUT, "a first export")
    assert cc.expire_tokens() >= 1
    summaries = [r.get(timeout=RESULT_TIMEOUT) for r in results]
    yield Run(workers, summaries)
    for worker in workers:
        worker.leave()
    forget_accounts_and_budget(redis_url)


def test_each_expired_token_is_refreshed_once_for_the_whole_cluster(
    run: Run, cc: SandboxProcess
) -> None:
    refreshes = cc.requests(endpoint="token")
    assert [e["status"] for e in refreshes] == [200, 200]
    api = [e for e in cc.requests() if e["endpoint"] != "token"]
    refused = [e for e in api if e["status"] == 401]
    assert refused and fingerprint(STALE_TOKEN) in {e["token_id"] for e in refused}
    # Requests that got through used exactly the two refreshed tokens, one after the other.
    used = [e["token_id"] for e in api if e["status"] < 400]
    assert len(set(used)) == 2 and fingerprint(STALE_TOKEN) not in used
    assert used == sorted(used, key=used.index)  # never back to the first after the second
    assert not [e for e in api if e["status"] == 429]


def test_every_export_completes(run: Run, cc: SandboxProcess) -> None:
    assert len(run.summaries) == EXPORTS
    activities = {s["activity_id"] for s in run.summaries}
    assert len(activities) == EXPORTS
    assert len(cc.requests(endpoint="create_export")) >= EXPORTS
    assert all(s["rows"] == cc.catalog()["contacts"] for s in run.summaries)


def test_no_token_in_logs_results_or_redis(run: Run, cc: SandboxProcess, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    stored = AccountStore(r, make_cipher(KEY)).load("default")
    everything = b"".join(value for key in r.scan_iter() for value in _values(r, key))
    r.close()
    assert stored is not None
    current = stored.credentials
    assert current.access_token and current.refresh_token != DEFAULT_REFRESH_TOKEN
    secrets = [STALE_TOKEN, DEFAULT_REFRESH_TOKEN, DEFAULT_CLIENT_SECRET, KEY]
    secrets += [current.access_token, current.refresh_token or ""]
    logs = "\n".join(w.log() for w in run.workers) + cc.stderr_text()
    assert "access token refreshed" in logs  # the logs were captured, and say what happened
    results = json.dumps(run.summaries)
    for secret in secrets:
        assert secret not in logs
        assert secret not in results
        assert secret.encode() not in everything


def _values(client: redis.Redis, key: bytes) -> list[bytes]:
    kind = client.type(key)
    if kind == b"string":
        return [client.get(key) or b""]
    if kind == b"hash":
        return [k + v for k, v in client.hgetall(key).items()]
    if kind == b"list":
        return list(client.lrange(key, 0, -1))
    if kind in (b"set", b"zset"):
        return list(client.zrange(key, 0, -1) if kind == b"zset" else client.smembers(key))
    return []


def test_a_results_link_to_another_host_is_refused_unseen(
    cc: SandboxProcess, redis_url: str
) -> None:
    """The worker's own client (real limiter, real HTTP): the foreign host sees nothing."""
    foreign = ForeignHost()
    budget_db = redis.Redis.from_url(redis_url)
    api = ConstantContactClient(
        cc.api_base, StaticToken(STALE_TOKEN), budget=RateLimiter(budget_db)
    )
    same_port_elsewhere = f"http://localhost:{urlsplit(cc.url).port}"
    try:
        for link in (f"{foreign.url}/v3/contact_exports/x", f"{same_port_elsewhere}/v3/x"):
            with (
                pytest.raises(ConstantContactError, match="off the API host"),
                api.open_results(link),
            ):
                pass
    finally:
        foreign.server.shutdown()
        foreign.server.server_close()
        budget_db.close()
    assert foreign.seen == []

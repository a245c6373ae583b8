"""Completion webhooks: the export's steps, run in this process on real Redis, rclone S3 and the
sandbox, POST the signed outcome to a receiver on loopback (the webhook task's step, delivered
from the outbox with its retries)."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sandbox.testing import SandboxProcess
from tests.integration.chain import run_export
from tests.integration.conftest import ServicesFactory
from tests.integration.helpers import RESULT_TIMEOUT
from workers.exceptions import ActivityFailed, InvalidExportRequest
from workers.services import Services
from workers.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

pytestmark = pytest.mark.integration

SECRET = "webhook-test-secret"


class Receiver:
    """Answers 503 to the first ``fail_first`` deliveries, then 204; records each one."""

    def __init__(self, fail_first: int = 0) -> None:
        self.deliveries: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(503)
                else:
                    receiver.deliveries.put((dict(self.headers), body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver(fail_first=1)
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


@pytest.fixture
def hooked(make_services: ServicesFactory) -> Services:
    return make_services(webhook_secret=SECRET, webhook_allowed_hosts="127.0.0.1,localhost")


def test_result_is_posted_signed_and_retried(
    hooked: Services, sandbox: SandboxProcess, receiver: Receiver
) -> None:
    summary = run_export(hooked, {"export": {}, "notify_url": receiver.url})
    headers, body = receiver.deliveries.get(timeout=RESULT_TIMEOUT)
    assert headers[SIGNATURE_HEADER] == sign(SECRET, headers[TIMESTAMP_HEADER], body)
    payload = json.loads(body)
    assert payload == {"status": "SUCCESS", "job_id": summary["job_id"], "result": summary}
    assert receiver.fail_first == 0, "the first delivery failed and was retried"


def test_failure_is_posted_too(
    hooked: Services, sandbox: SandboxProcess, receiver: Receiver
) -> None:
    missing = sandbox.catalog()["unknown_contact_id"]
    with pytest.raises(ActivityFailed, match=missing):
        run_export(hooked, {"export": {"contact_ids": [missing]}, "notify_url": receiver.url})
    headers, body = receiver.deliveries.get(timeout=RESULT_TIMEOUT)
    payload = json.loads(body)
    assert payload["status"] == "FAILURE"
    assert payload["error_type"] == "ActivityFailed"
    assert headers[SIGNATURE_HEADER] == sign(SECRET, headers[TIMESTAMP_HEADER], body)


def test_host_not_allowed_is_refused_before_any_call(
    hooked: Services, sandbox: SandboxProcess
) -> None:
    before = len(sandbox.requests())
    request = {"export": {}, "notify_url": "https://elsewhere.example/hook"}
    with pytest.raises(InvalidExportRequest, match="WEBHOOK_ALLOWED_HOSTS") as caught:
        run_export(hooked, request)
    assert type(caught.value).__name__ == "InvalidExportRequest"
    assert len(sandbox.requests()) == before

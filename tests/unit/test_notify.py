"""The completion webhook step against a receiver on a loopback ``http.server``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.unit.factories import Sent, a_settings, unit_services
from workers.export.notify import enqueue_notification, notify_step
from workers.export.outcome import Again
from workers.export.tasknames import NOTIFY_TASK
from workers.webhooks import SIGNATURE_HEADER

PAYLOAD = {"status": "SUCCESS", "job_id": "j1"}
#: Few attempts, so that a receiver that keeps failing is given up soon.
MAX_ATTEMPTS = 2


@dataclass
class Receiver:
    """Answers every POST with ``status`` and keeps each body and its signature."""

    url: str
    status: int = 204
    posts: list[tuple[dict[str, Any], str | None]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server: ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.posts.append((json.loads(body), self.headers.get(SIGNATURE_HEADER)))
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def deliver(receiver: Receiver) -> tuple[int | None, list[Again]]:
    """Run the step as the notify task does: again, with one more failure counted, for as long
    as it asks to come back. Returns its last outcome and the comebacks."""
    agains: list[Again] = []
    settings = a_settings(webhook_secret="s3cret", retry_max_attempts=MAX_ATTEMPTS)
    with unit_services(settings, s3=object()) as services:
        while isinstance(
            outcome := notify_step(services, receiver.url, PAYLOAD, failures=len(agains)), Again
        ):
            agains.append(outcome)
            assert len(agains) <= 10 * MAX_ATTEMPTS, "the webhook never gives up"
    return outcome, agains


def test_a_delivered_webhook_is_signed_and_returns_its_status(receiver: Receiver) -> None:
    assert deliver(receiver) == (204, [])
    [(body, signature)] = receiver.posts
    assert body == PAYLOAD
    assert signature is not None and signature.startswith("sha256=")


def test_a_receiver_that_keeps_failing_is_given_up_after_the_retry_limit(
    receiver: Receiver,
) -> None:
    """Guards 550567c's webhook, which gave up after a fixed 10 tries whatever
    RETRY_MAX_ATTEMPTS said: now RETRY_MAX_ATTEMPTS + 1 tries, then None."""
    receiver.status = 503
    outcome, agains = deliver(receiver)
    assert outcome is None
    assert len(agains) == MAX_ATTEMPTS and all(again.countdown > 0 for again in agains)
    assert len(receiver.posts) == MAX_ATTEMPTS + 1


def test_a_refusal_is_final_at_once(receiver: Receiver) -> None:
    receiver.status = 404
    assert deliver(receiver) == (404, [])
    assert len(receiver.posts) == 1


def test_a_notification_is_sent_by_name_only_when_the_job_has_a_url() -> None:
    sent = Sent()
    enqueue_notification(sent, None, PAYLOAD)
    enqueue_notification(sent, "https://hooks.example.com/x", PAYLOAD)
    assert sent.tasks == [
        (
            NOTIFY_TASK,
            {"args": ["https://hooks.example.com/x", PAYLOAD], "queue": "contact_exports"},
        )
    ]

"""Every API answer is counted under the endpoint the client called, whatever its URL says.

A small API on a loopback ``http.server`` whose results link does not look like Constant
Contact's (``/v3/files/…`` rather than ``/v3/contact_exports/…``): 550567c named the endpoint
from the URL (a POST, "/contact_exports/" in the path, a path ending in "/activities", else
get_activity), and counted this download as get_activity.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
import requests
from prometheus_client import REGISTRY

from tests.unit.factories import a_settings, unit_services
from workers.constant_contact.client import ConstantContactClient, Endpoint, StaticToken
from workers.exceptions import ConstantContactError

RESULTS = "/v3/files/f1.csv"
CSV = b"Email\r\nann@example.com\r\n"


def activity_body(state: str) -> dict[str, Any]:
    links: dict[str, Any] = {"self": {"href": "/v3/activities/a1"}}
    if state == "completed":
        links["results"] = {"href": RESULTS}
    return {"activity_id": "a1", "state": state, "percent_done": 0, "_links": links}


class Api(BaseHTTPRequestHandler):
    """Create, look at and list the one activity, and download its file; anything else is 404."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path == "/v3/activities/contact_exports":
            self.reply(201, activity_body("initialized"))
        else:
            self.reply(404, [{"error_key": "not.found", "error_message": self.path}])

    def do_GET(self) -> None:
        if self.path == "/v3/activities/a1":
            self.reply(200, activity_body("completed"))
        elif self.path.startswith("/v3/activities?"):
            self.reply(200, {"activities": [activity_body("completed")], "_links": {}})
        elif self.path == RESULTS:
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(CSV)))
            self.end_headers()
            self.wfile.write(CSV)
        else:
            self.reply(404, [{"error_key": "not.found", "error_message": self.path}])

    def reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    """The API's base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v3"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_every_answer_is_labelled_with_the_endpoint_called(api: str) -> None:
    answers: list[tuple[str, int]] = []
    with requests.Session() as session:
        client = ConstantContactClient(
            api,
            StaticToken("t"),
            session=session,
            on_answer=lambda endpoint, status: answers.append((endpoint, status)),
        )
        created = client.create_export({"fields": ["email_address"]})
        activity = client.get_activity(created.self_href)
        assert [a.activity_id for a in client.list_activities(limit=5)] == ["a1"]
        assert activity.results_href == RESULTS
        with client.open_results(RESULTS) as body:
            assert b"".join(bytes(chunk) for chunk in body.chunks(1024)) == CSV
        with pytest.raises(ConstantContactError):
            client.get_activity("/v3/activities/gone")
    assert answers == [
        ("create_export", 201),
        ("get_activity", 200),
        ("list_activities", 200),
        ("get_results", 200),
        ("get_activity", 404),
    ]


def api_calls(endpoint: Endpoint, status: int) -> float:
    labels = {"endpoint": endpoint.value, "status": str(status)}
    return REGISTRY.get_sample_value("contact_exports_api_calls_total", labels) or 0.0


def test_a_workers_api_client_counts_its_answers_in_the_metrics(api: str, r: redis.Redis) -> None:
    before = {e: api_calls(e, 200) for e in Endpoint}
    with unit_services(a_settings(cc_api_base_url=api), s3=object()) as services:
        client = services.api("default")
        with client.open_results(RESULTS) as body:
            assert b"".join(bytes(chunk) for chunk in body.chunks(1024)) == CSV
    after = {e: api_calls(e, 200) for e in Endpoint}
    assert {e: after[e] - before[e] for e in Endpoint} == {
        Endpoint.CREATE_EXPORT: 0,
        Endpoint.GET_ACTIVITY: 0,
        Endpoint.LIST_ACTIVITIES: 0,
        Endpoint.GET_RESULTS: 1,
    }

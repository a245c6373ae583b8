"""Fault injection: status bursts, delays, slow and dropped bodies, activity outcomes."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
from urllib.parse import urlsplit

import pytest
from sandbox_test_client import TOKEN, Api

from sandbox.testing import SandboxProcess


def test_status_burst_honours_skip_and_times(api: Api, sb: SandboxProcess) -> None:
    activity = api.create({}).json()
    [rule] = sb.add_faults({"endpoint": "get_activity", "skip": 1, "times": 2, "status": 503})
    assert rule["id"] and rule["fired"] == 0
    href = activity["_links"]["self"]["href"]
    responses = [api.get(href) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 503, 503, 200]
    assert responses[1].json() == [
        {"error_key": "service.unavailable", "error_message": "Service Unavailable"}
    ]
    [state] = sb.faults()
    assert (state["seen"], state["fired"]) == (3, 2)
    assert api.create({}).status_code == 201  # other endpoints untouched
    log = sb.requests(endpoint="get_activity")
    assert [r["faults"] for r in log] == [[], [rule["id"]], [rule["id"]], []]
    sb.clear_faults()
    assert sb.faults() == []


def test_429_fault_uses_the_single_object_shape(api: Api, sb: SandboxProcess) -> None:
    sb.add_faults(
        {"endpoint": "*", "status": 429, "error_key": "quota_exceeded"},
        {"endpoint": "list_activities", "status": 500},
    )
    first = api.get("/v3/activities")
    assert first.status_code == 429
    assert first.json()["error_key"] == "quota_exceeded"
    second = api.get("/v3/activities")
    assert second.status_code == 500
    assert second.json()[0]["error_key"] == "server.error"
    assert api.get("/v3/activities").status_code == 200


def test_drop_after_bytes_truncates_the_download(api: Api, sb: SandboxProcess) -> None:
    final, full = api.export({"fields": ["email_address", "notes"]})
    results = final["_links"]["results"]["href"]
    sb.add_faults({"endpoint": "get_results", "drop_after_bytes": 1000})
    logged_before = len(sb.requests(endpoint="get_results"))
    parts = urlsplit(sb.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.request("GET", results, headers={"Authorization": f"Bearer {TOKEN}"})
        response = connection.getresponse()
        assert response.status == 200
        assert int(response.headers["Content-Length"]) == len(full)
        with pytest.raises(http.client.IncompleteRead) as caught:
            response.read()
        assert caught.value.partial == full[:1000]
    finally:
        connection.close()
    # The server logs the request once its handler returns, which may be just after the client
    # saw the connection close: wait for the entry rather than read a stale log.
    deadline = time.monotonic() + 10
    while len(sb.requests(endpoint="get_results")) == logged_before:
        assert time.monotonic() < deadline, "the dropped download was never logged"
        time.sleep(0.02)
    [record] = sb.requests(endpoint="get_results")[-1:]
    assert record["bytes_sent"] == 1000
    assert api.get(results).content == full  # the next download is whole again


def test_delay_and_slow_body(api: Api, sb: SandboxProcess) -> None:
    final, full = api.export({"contact_ids": sb.catalog()["sample_contact_ids"]})
    sb.add_faults(
        {"endpoint": "get_activity", "delay_first_byte": 0.3},
        {"endpoint": "get_results", "bytes_per_second": len(full) * 4},
    )
    started = time.monotonic()
    assert api.get(final["_links"]["self"]["href"]).status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    slow = api.get(final["_links"]["results"]["href"])
    assert time.monotonic() - started >= 0.2
    assert slow.content == full


@pytest.mark.parametrize("outcome", ["failed", "cancelled", "timed_out"])
def test_activity_outcome_fault(api: Api, sb: SandboxProcess, outcome: str) -> None:
    sb.add_faults({"endpoint": "create_export", "activity_outcome": outcome})
    created = api.create({})
    assert created.status_code == 201
    assert created.json()["state"] == "initialized"
    final = api.wait(created.json())
    assert final["state"] == outcome
    assert final["activity_errors"]
    assert api.get(final["_links"]["results"]["href"]).status_code == 404
    assert api.wait(api.create({}).json())["state"] == "completed"  # times defaults to 1


def test_processed_fault_models_a_lost_response(api: Api, sb: SandboxProcess) -> None:
    sb.add_faults({"endpoint": "create_export", "status": 502, "process": True})
    lost = api.create({"status": "active"})
    assert lost.status_code == 502
    [found] = api.get("/v3/activities").json()["activities"]
    assert api.wait(found)["state"] == "completed"
    [record] = sb.requests(endpoint="create_export")
    assert record["status"] == 502 and record["activity_id"] == found["activity_id"]


def test_token_endpoint_fault(sb: SandboxProcess, api: Api) -> None:
    sb.add_faults({"endpoint": "token", "status": 503, "times": None})
    for _ in range(2):
        response = api.session.post(sb.token_url, data={"grant_type": "refresh_token"}, timeout=10)
        assert response.status_code == 503
    assert sb.faults()[0]["fired"] == 2


@pytest.mark.parametrize(
    "rule",
    [
        {"endpoint": "create_export"},
        {"endpoint": "nowhere", "status": 500},
        {"status": "500"},
        {"status": 500, "times": 0},
        {"endpoint": "get_activity", "activity_outcome": "failed"},
        {"activity_outcome": "exploded"},
        {"status": 500, "colour": "red"},
    ],
)
def test_invalid_rules_are_refused(sb: SandboxProcess, rule: dict[str, object]) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        sb.add_faults(rule)
    assert caught.value.code == 400
    assert "error" in json.loads(caught.value.read())
    caught.value.close()
    assert sb.faults() == []


def test_fault_rules_from_the_command_line() -> None:
    rule = json.dumps({"endpoint": "create_export", "status": 500, "times": 1})
    with SandboxProcess(tokens=["t"], rate_limit=0, extra_args=["--fault", rule]) as sb:
        api = Api(sb, token="t")
        try:
            assert api.create({}).status_code == 500
            assert api.create({}).status_code == 201
        finally:
            api.close()
        assert sb.faults()[0]["fired"] == 1

"""The emulated v3 endpoints over real HTTP, against the shared sandbox process."""

from __future__ import annotations

import csv
import hashlib
import io
import socket
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from sandbox_test_client import TOKEN, Api

from sandbox.contacts import ContactStatus, ContactUniverse
from sandbox.testing import SandboxProcess


def csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def assert_error_array(response: Any, status: int, key: str | None = None) -> list[dict[str, str]]:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, list) and body, body
    assert all(set(entry) == {"error_key", "error_message"} for entry in body)
    if key is not None:
        assert key in [entry["error_key"] for entry in body]
    return body


def test_create_poll_download(api: Api, sb: SandboxProcess) -> None:
    created = api.create({"fields": ["email_address", "first_name", "last_name", "updated_at"]})
    assert created.status_code == 201
    body = created.json()
    activity_id = body["activity_id"]
    assert uuid.UUID(activity_id).version == 4
    assert body["state"] == "initialized"
    assert body["percent_done"] == 0
    assert body["activity_errors"] == []
    assert set(body["status"]) == {"items_total_count", "items_completed_count"}
    assert body["_links"]["self"]["href"] == f"/v3/activities/{activity_id}"
    results = body["_links"]["results"]["href"]
    assert results.startswith("/v3/contact_exports/")
    file_export_id = results.rsplit("/", 1)[1]
    assert uuid.UUID(file_export_id) and file_export_id != activity_id

    final = api.wait(body)
    assert final["state"] == "completed"
    assert final["percent_done"] == 100
    assert final["started_at"] and final["completed_at"] and final["created_at"]
    download = api.get(results)
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "text/csv"
    assert int(download.headers["Content-Length"]) == len(download.content)

    info = sb.export_info(file_export_id)
    assert info["sha256"] == hashlib.sha256(download.content).hexdigest()
    assert info["bytes"] == len(download.content)
    rows = csv_rows(download.content)
    assert (
        rows[0]
        == info["columns"]
        == ["Email address - other", "First name", "Last name", "Updated At"]
    )
    assert len(rows) - 1 == info["rows"] == final["status"]["items_total_count"]
    assert final["status"]["items_completed_count"] == info["rows"]
    assert api.get(results).content == download.content  # byte-identical every time


def test_activity_progresses_through_processing(api: Api, sb: SandboxProcess) -> None:
    sb.set_processing_seconds(1.0)
    body = api.create({}).json()
    seen: list[tuple[str, int]] = []
    while not seen or seen[-1][0] != "completed":
        state = api.get(body["_links"]["self"]["href"]).json()
        seen.append((state["state"], state["percent_done"]))
        time.sleep(0.01)
    states = [s for s, _ in seen]
    assert "processing" in states
    percents = [p for _, p in seen]
    assert percents == sorted(percents)
    assert all(p < 100 for s, p in seen if s != "completed")


@pytest.mark.parametrize("curve", ["steps", "late"])
def test_progress_follows_the_configured_curve(api: Api, sb: SandboxProcess, curve: str) -> None:
    """The curves the worker's polling must cope with (issue: polling on any progress curve)."""
    sb.configure(processing_seconds=1.0, progress_curve=curve, timestamp_resolution="seconds")
    body = api.create({}).json()
    percents: set[int] = set()
    while True:
        state = api.get(body["_links"]["self"]["href"]).json()
        assert state["created_at"].endswith(".000Z") and state["updated_at"].endswith(".000Z")
        if state["state"] == "completed":
            break
        percents.add(state["percent_done"])
        time.sleep(0.01)
    allowed = {0, 25, 50, 75} if curve == "steps" else {0}
    assert percents and percents <= allowed, percents
    with pytest.raises(Exception, match="400"):  # refused by name: sandbox/control.py
        sb.configure(progress_curve="sideways")


def test_results_before_completion_are_404(api: Api, sb: SandboxProcess) -> None:
    sb.set_processing_seconds(30)
    body = api.create({}).json()
    response = api.get(body["_links"]["results"]["href"])
    assert_error_array(response, 404, "not.found")


def test_contact_ids_come_back_in_request_order(api: Api, universe: ContactUniverse) -> None:
    order = [1_999, 7, 1_024, 3, 512, 0]
    ids = [universe.contact_id(i) for i in order]
    _, data = api.export({"contact_ids": ids, "fields": ["email_address", "first_name"]})
    rows = csv_rows(data)[1:]
    assert [r[0] for r in rows] == [universe.contact(i).email_address for i in order]
    assert [r[1] for r in rows] == [universe.contact(i).first_name for i in order]


def test_list_and_status_filters(api: Api, universe: ContactUniverse) -> None:
    catalog_lists = universe.lists
    _, data = api.export(
        {"list_ids": [catalog_lists[0], catalog_lists[5]], "fields": ["email_address"]}
    )
    expected = [
        universe.contact(i).email_address
        for i in range(universe.size)
        if universe.traits(i).lists & 0b100001
    ]
    assert [r[0] for r in csv_rows(data)[1:]] == expected
    _, data = api.export({"status": "removed", "fields": ["email_address"]})
    expected = [
        universe.contact(i).email_address
        for i in range(universe.size)
        if universe.traits(i).status is ContactStatus.REMOVED
    ]
    assert expected
    assert [r[0] for r in csv_rows(data)[1:]] == expected
    _, data = api.export({"all_active_contacts": True, "fields": ["email_address"]})
    active = sum(universe.traits(i).status is ContactStatus.ACTIVE for i in range(universe.size))
    assert len(csv_rows(data)) - 1 == active


def test_unknown_fields_are_dropped(api: Api) -> None:
    _, data = api.export({"fields": ["email_address", "favourite_colour", "job_title"]})
    assert csv_rows(data)[0] == ["Email address - other", "Job title"]


def test_well_formed_unknown_contact_id_fails_later(api: Api, sb: SandboxProcess) -> None:
    unknown = sb.catalog()["unknown_contact_id"]
    known = sb.catalog()["sample_contact_ids"][0]
    created = api.create({"contact_ids": [known, unknown]})
    assert created.status_code == 201
    final = api.wait(created.json())
    assert final["state"] == "failed"
    assert any(unknown in message for message in final["activity_errors"])
    assert_error_array(api.get(final["_links"]["results"]["href"]), 404, "not.found")


@pytest.mark.parametrize(
    "body",
    [
        {"contact_ids": [f"00000000-0000-4000-8000-{n:012x}" for n in range(501)]},
        {"list_ids": [str(uuid.uuid4()) for _ in range(51)]},
        {"contact_ids": ["nope"]},
        {"contact_ids": [str(uuid.uuid4())], "list_ids": [str(uuid.uuid4())]},
        {"tag_ids": [str(uuid.uuid4())], "status": "active"},
        {"status": "pending"},
        {"segment_id": "3"},
    ],
)
def test_rule_violations_get_400_array_bodies(api: Api, sb: SandboxProcess, body: Any) -> None:
    assert_error_array(api.create(body), 400)
    assert sb.summary()["by_activity_id"] == {}


def test_malformed_json_gets_400_array_body(api: Api, sb: SandboxProcess) -> None:
    response = api.session.post(
        f"{sb.api_base}/activities/contact_exports",
        data=b'{"contact_ids": [',
        headers={**api.auth(), "Content-Type": "application/json"},
        timeout=10,
    )
    assert_error_array(response, 400, "malformed.json")


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic abc", "Bearer "])
def test_bad_or_missing_token_gets_401_object(api: Api, sb: SandboxProcess, header: Any) -> None:
    headers = {"Authorization": header} if header else {}
    for response in (
        api.session.get(f"{sb.api_base}/activities", headers=headers, timeout=10),
        api.session.post(
            f"{sb.api_base}/activities/contact_exports", json={}, headers=headers, timeout=10
        ),
    ):
        assert response.status_code == 401
        assert response.json() == {"error_key": "unauthorized", "error_message": "Unauthorized"}


def test_unknown_activity_is_404_and_malformed_id_is_400(api: Api) -> None:
    assert_error_array(api.get(f"/v3/activities/{uuid.uuid4()}"), 404, "not.found")
    assert_error_array(api.get("/v3/activities/not-a-uuid"), 400, "invalid.id")
    assert_error_array(api.get(f"/v3/contact_exports/{uuid.uuid4()}"), 404, "not.found")
    assert_error_array(api.get("/v3/no/such/thing"), 404, "not.found")


def test_list_activities_newest_first_with_state_and_paging(api: Api, sb: SandboxProcess) -> None:
    first = api.create({"status": "active"}).json()
    api.wait(first)
    sb.set_processing_seconds(30)
    ids = [api.create({"status": "active"}).json()["activity_id"] for _ in range(3)]
    listing = api.get("/v3/activities").json()
    assert [a["activity_id"] for a in listing["activities"]] == [
        *reversed(ids),
        first["activity_id"],
    ]
    completed = api.get("/v3/activities?state=completed").json()["activities"]
    assert [a["activity_id"] for a in completed] == [first["activity_id"]]
    page = api.get("/v3/activities?limit=2").json()
    assert [a["activity_id"] for a in page["activities"]] == [ids[2], ids[1]]
    rest = api.get(page["_links"]["next"]["href"]).json()
    assert [a["activity_id"] for a in rest["activities"]] == [ids[0], first["activity_id"]]
    assert "next" not in rest["_links"]
    assert_error_array(api.get("/v3/activities?limit=0"), 400)
    assert_error_array(api.get("/v3/activities?state=bogus"), 400)


def test_too_many_queued_activities_get_429(api: Api, sb: SandboxProcess) -> None:
    sb.configure(processing_seconds=30, max_queued=2)
    assert api.create({}).status_code == 201
    assert api.create({}).status_code == 201
    refused = api.create({})
    assert refused.status_code == 429
    body = refused.json()
    assert isinstance(body, dict) and body["error_key"] == "throttled"
    assert len(api.get("/v3/activities").json()["activities"]) == 2


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "QUERY"])
def test_undocumented_methods_get_405_with_allow(api: Api, sb: SandboxProcess, method: str) -> None:
    for path, allowed in (
        ("/v3/activities", "GET"),
        ("/v3/activities/contact_exports", "POST"),
        (f"/v3/contact_exports/{uuid.uuid4()}", "GET"),
    ):
        response = api.session.request(method, f"{sb.url}{path}", headers=api.auth(), timeout=10)
        assert response.headers["Allow"] == allowed
        assert_error_array(response, 405, "method.not.allowed")


def test_head_gets_405_headers_without_a_body(sb: SandboxProcess) -> None:
    """A HEAD answer with a body would desynchronise the connection: the next answer must follow
    the HEAD answer's headers directly (two requests on one socket, the second closing it)."""
    parts = urlsplit(sb.url)
    auth = f"Authorization: Bearer {TOKEN}\r\nHost: {parts.netloc}\r\n"
    head = f"HEAD /v3/activities HTTP/1.1\r\n{auth}\r\n"
    get = f"GET /v3/activities HTTP/1.1\r\n{auth}Connection: close\r\n\r\n"
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=10) as conn:
        conn.sendall((head + get).encode())
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    first, _, rest = received.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 405 ")
    assert b"\r\nAllow: GET" in first
    assert int(first.split(b"Content-Length: ")[1].split(b"\r\n")[0]) > 0
    assert rest.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(
    "query",
    [
        "limit=",
        "state=",
        "limit=&state=",
        "limit=1_0",
        "limit=+5",
        "limit=%205",
        "limit=5%0A",
        "state=initialized",
        "cursor=",
        "cursor=%C2%B2",
        "limit=501",
    ],
)
def test_list_activities_refuses_blank_and_odd_query_values(api: Api, query: str) -> None:
    assert_error_array(api.get(f"/v3/activities?{query}"), 400, "invalid.value")


def test_well_formed_unknown_list_id_fails_later(api: Api, sb: SandboxProcess) -> None:
    known = sb.catalog()["lists"][0]
    unknown = str(uuid.uuid4())
    created = api.create({"list_ids": [known, unknown], "status": "active"})
    assert created.status_code == 201
    final = api.wait(created.json())
    assert final["state"] == "failed"
    assert final["percent_done"] == 100
    assert any(unknown in message for message in final["activity_errors"])
    assert known not in " ".join(final["activity_errors"])


def test_updated_at_comes_in_both_of_the_guides_formats(api: Api) -> None:
    _, data = api.export({"fields": ["updated_at"]})
    stamps = [row[0] for row in csv_rows(data)[1:]]
    plain = [s for s in stamps if len(s) == len("2018-11-29 15:10:15 -0500")]
    iso = [s for s in stamps if len(s) == len("2019-11-25T16:29:13.057 -0500")]
    assert plain and iso and len(plain) + len(iso) == len(stamps)
    assert all(s[10] == " " for s in plain) and all(s[10] == "T" and s[19] == "." for s in iso)

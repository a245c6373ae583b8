"""The request log: complete, filterable, counted, and free of tokens."""

from __future__ import annotations

import hashlib
import json

from sandbox_test_client import TOKEN, Api

from sandbox.requestlog import RequestLog, RequestRecord
from sandbox.testing import SandboxProcess


def test_log_counts_every_api_request_and_never_holds_a_token(api: Api, sb: SandboxProcess) -> None:
    final, data = api.export({"status": "active", "fields": ["email_address"]})
    activity_id = final["activity_id"]
    file_export_id = final["_links"]["results"]["href"].rsplit("/", 1)[1]
    assert api.get("/v3/activities", token="not-a-valid-token").status_code == 401
    sb.catalog()  # control calls are not logged

    records = sb.requests()
    assert TOKEN not in json.dumps(records)
    assert "not-a-valid-token" not in json.dumps(records)
    fingerprint = hashlib.sha256(TOKEN.encode()).hexdigest()[:12]
    assert {r["endpoint"] for r in records} == {
        "create_export",
        "get_activity",
        "get_results",
        "list_activities",
    }
    create, *polls, download, refused = records
    assert create["endpoint"] == "create_export" and create["status"] == 201
    assert create["method"] == "POST" and create["path"] == "/v3/activities/contact_exports"
    assert all(p["endpoint"] == "get_activity" for p in polls)
    assert download["endpoint"] == "get_results" and download["bytes_sent"] == len(data)
    assert download["file_export_id"] == file_export_id
    assert refused["status"] == 401 and refused["token_id"] != fingerprint
    for record in (create, *polls, download):
        assert record["token_id"] == fingerprint
        assert record["activity_id"] == activity_id
        assert set(record) >= {"ts", "method", "path", "endpoint", "status", "bytes_sent"}

    assert sb.requests(activity_id=activity_id) == [create, *polls, download]
    assert sb.requests(endpoint="get_results") == [download]
    summary = sb.summary()
    assert summary["total"] == len(records)
    assert summary["by_endpoint"]["get_activity"] == len(polls)
    assert summary["by_endpoint"]["list_activities"] == 1
    assert summary["by_activity_id"] == {activity_id: len(polls) + 2}
    assert summary["by_token_id"][fingerprint] == len(polls) + 2
    assert summary["by_status"]["401"] == 1


def test_stderr_log_has_no_tokens() -> None:
    with SandboxProcess(tokens=["very-secret-token-1"], rate_limit=0) as sb:
        api = Api(sb, token="very-secret-token-1")
        try:
            api.create({})
            api.get("/v3/activities?access_token=leaked-in-query")
        finally:
            api.close()
        stderr = sb.stderr_text()
    assert "/v3/activities/contact_exports" in stderr
    assert "very-secret-token-1" not in stderr
    assert "leaked-in-query" not in stderr


def test_a_request_answered_before_a_reset_is_not_logged_after_it() -> None:
    """A request is logged once its answer is sent; a client holding the answer may reset the
    sandbox first (each test does). The late record must not land in the fresh log."""
    log = RequestLog()
    began = log.generation
    record = RequestRecord(
        ts="2026-12-04T00:00:00.000+00:00",
        method="GET",
        path="/v3/activities/a1",
        endpoint="get_activity",
        status=200,
        token_id=None,
        activity_id="a1",
        file_export_id=None,
        bytes_sent=10,
    )
    log.clear()
    log.add(record, began)
    assert log.summary()["by_activity_id"] == {} and log.query() == []
    log.add(record, log.generation)
    assert log.summary()["by_activity_id"] == {"a1": 1}

"""Error mapping and link safety of the API client (no network: answers are built in memory)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from workers.constant_contact import (
    Activity,
    ActivityState,
    ConstantContactClient,
    StaticToken,
    parse_error_body,
    raise_for_status,
)
from workers.exceptions import ConstantContactError, TransientApiError

BASE = "https://api.cc.email/v3"


def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response.headers.update(headers or {})
    response.url = f"{BASE}/activities/contact_exports"
    response.request = requests.Request("POST", response.url).prepare()
    return response


def test_array_and_object_error_bodies_are_both_read() -> None:
    array = answer(400, [{"error_key": "json.field.invalid", "error_message": "bad list_ids"}])
    assert parse_error_body(array) == ("json.field.invalid", "bad list_ids")
    single = answer(429, {"error_key": "throttled", "error_message": "slow down"})
    assert parse_error_body(single) == ("throttled", "slow down")
    oauth = answer(400, {"error": "invalid_grant", "error_description": "reused"})
    assert parse_error_body(oauth) == ("invalid_grant", "reused")
    assert (
        parse_error_body(answer(502, b"<html>bad gateway</html>"))[1] == "<html>bad gateway</html>"
    )


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retryable_statuses_are_transient(status: int) -> None:
    with pytest.raises(TransientApiError) as caught:
        raise_for_status(answer(status, {"error_key": "throttled"}, {"Retry-After": "7"}))
    assert caught.value.status == status
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_other_errors_are_final_with_status_and_key(status: int) -> None:
    with pytest.raises(ConstantContactError) as caught:
        raise_for_status(answer(status, [{"error_key": "some.key", "error_message": "no"}]))
    assert caught.value.status == status
    assert caught.value.error_key == "some.key"
    assert str(status) in str(caught.value)


def client() -> ConstantContactClient:
    return ConstantContactClient(BASE, StaticToken("secret-token"))


def test_relative_links_resolve_on_the_api_host() -> None:
    assert (
        client().resolve("/v3/contact_exports/abc-1")
        == "https://api.cc.email/v3/contact_exports/abc-1"
    )
    assert (
        client().resolve("https://api.cc.email/v3/activities/x")
        == "https://api.cc.email/v3/activities/x"
    )


@pytest.mark.parametrize(
    "href",
    [
        "https://evil.example/v3/contact_exports/abc",
        "http://api.cc.email/v3/contact_exports/abc",
        "//evil.example/v3/x",
        "/v3/../admin",
        "/v3/contact_exports/a%2F..",
        "/v3/contact_exports/abc?redirect=x",
        "v3/contact_exports/abc",
    ],
)
def test_foreign_or_odd_links_are_refused(href: str) -> None:
    with pytest.raises(ConstantContactError, match="refusing"):
        client().resolve(href)


def test_activity_body_is_parsed_and_states_know_when_they_end() -> None:
    activity = Activity.from_body(
        {
            "activity_id": "a1",
            "state": "failed",
            "percent_done": 40,
            "activity_errors": ["Invalid contact id", {"message": "x"}],
            "_links": {"self": {"href": "/v3/activities/a1"}},
        }
    )
    assert activity.state is ActivityState.FAILED and activity.state.finished
    assert activity.activity_errors == ["Invalid contact id", "x"]
    assert activity.results_href is None
    assert not ActivityState.PROCESSING.finished
    with pytest.raises(ConstantContactError):
        Activity.from_body({"state": "completed"})


def test_token_never_shows_in_repr() -> None:
    assert "secret-token" not in repr(StaticToken("secret-token"))

"""Error mapping, token refresh, rate-limit hooks and link safety of the API client.

No network: a session whose transport answers from a script (``Transport``) lets the client's
real code run — headers, timeouts, retries, error mapping — and records every request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from workers.constant_contact.client import (
    Activity,
    ActivityState,
    ConstantContactClient,
    StaticToken,
    parse_error_body,
    raise_for_status,
)
from workers.exceptions import ConstantContactError, RateLimited, TransientApiError, TransientError

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


def test_only_a_paging_link_keeps_its_query() -> None:
    assert (
        client().resolve("/v3/activities?limit=500&cursor=9", query=True)
        == "https://api.cc.email/v3/activities?limit=500&cursor=9"
    )


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


Answer = tuple[int, Any] | tuple[int, Any, dict[str, str]] | Exception


class Transport(BaseAdapter):
    """A session's transport that answers from a script and records what was sent."""

    def __init__(self, *answers: Answer | Callable[[requests.PreparedRequest], Answer]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[requests.PreparedRequest] = []
        self.timeouts: list[Any] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        self.timeouts.append(kwargs.get("timeout"))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if callable(answer):
            answer = answer(request)
        if isinstance(answer, Exception):
            raise answer
        status, body, *rest = answer
        response = requests.Response()
        response.status_code = status
        response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response.headers.update(rest[0] if rest else {})
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass

    def session(self) -> requests.Session:
        session = requests.Session()
        session.mount("https://", self)
        session.mount("http://", self)
        return session

    def bearers(self) -> list[str]:
        return [str(r.headers.get("Authorization", "")) for r in self.sent]


class Rotating:
    """A token source that hands out token-1, token-2, ... and records what was rejected."""

    def __init__(self) -> None:
        self.current = "token-1"
        self.rejected: list[str] = []

    def access_token(self) -> str:
        return self.current

    def refresh(self, rejected: str) -> str:
        self.rejected.append(rejected)
        self.current = f"token-{len(self.rejected) + 1}"
        return self.current


class Budget:
    """Records the limiter calls; ``refuse`` makes ``acquire`` raise like a spent budget."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.acquired: list[str] = []
        self.penalties: list[float] = []
        self.quota_calls = 0

    def acquire(self, account: str) -> None:
        if self.refuse:
            raise RateLimited("budget taken", retry_after=3.0)
        self.acquired.append(account)

    def penalize(self, seconds: float) -> None:
        self.penalties.append(seconds)

    def quota_exceeded(self) -> RateLimited:
        self.quota_calls += 1
        return RateLimited("quota", retry_after=100.0, reason="quota", resumes_at="x")


ACTIVITY = {
    "activity_id": "a1",
    "state": "initialized",
    "created_at": "2026-11-26T10:00:00Z",
    "_links": {"self": {"href": "/v3/activities/a1"}},
}


def wired(
    transport: Transport, tokens: Any = None, budget: Budget | None = None
) -> ConstantContactClient:
    return ConstantContactClient(
        BASE,
        tokens or Rotating(),
        account="acct",
        budget=budget or Budget(),
        session=transport.session(),
        connect_timeout=3,
        read_timeout=7,
    )


def test_a_401_refreshes_once_and_retries_once_with_the_new_token() -> None:
    transport = Transport((401, {"error_key": "unauthorized"}), (201, ACTIVITY))
    tokens, budget = Rotating(), Budget()
    activity = wired(transport, tokens, budget).create_export({"fields": ["email_address"]})
    assert activity.activity_id == "a1"
    assert tokens.rejected == ["token-1"]
    assert transport.bearers() == ["Bearer token-1", "Bearer token-2"]
    assert budget.acquired == ["acct", "acct"]  # the retry takes a permit of its own
    assert transport.timeouts == [(3, 7), (3, 7)]


def test_a_second_401_is_final() -> None:
    transport = Transport((401, {"error_key": "unauthorized"}))
    tokens = Rotating()
    with pytest.raises(ConstantContactError) as caught:
        wired(transport, tokens).get_activity("/v3/activities/a1")
    assert caught.value.status == 401
    assert "after a token refresh" in str(caught.value)
    assert len(transport.sent) == 2 and tokens.rejected == ["token-1"]
    assert "token-" not in str(caught.value)


def test_a_static_token_cannot_be_refreshed() -> None:
    transport = Transport((401, {"error_key": "unauthorized"}))
    with pytest.raises(ConstantContactError, match="re-authorize") as caught:
        wired(transport, StaticToken("secret-token")).get_activity("/v3/activities/a1")
    assert caught.value.status == 401 and len(transport.sent) == 1
    assert "secret-token" not in str(caught.value)


def test_no_request_leaves_without_a_permit() -> None:
    transport = Transport((201, ACTIVITY))
    with pytest.raises(RateLimited):
        wired(transport, budget=Budget(refuse=True)).create_export({})
    assert transport.sent == []


def test_quota_exceeded_waits_for_the_reset_for_every_worker() -> None:
    transport = Transport((429, {"error_key": "quota_exceeded", "error_message": "spent"}))
    budget = Budget()
    with pytest.raises(RateLimited) as caught:
        wired(transport, budget=budget).get_activity("/v3/activities/a1")
    assert caught.value.reason == "quota" and budget.quota_calls == 1
    assert isinstance(caught.value.__cause__, TransientApiError)


@pytest.mark.parametrize(("headers", "pause"), [({"Retry-After": "3"}, 3.0), ({}, 1.0)])
def test_throttled_backs_off_and_pauses_the_cluster(headers: dict[str, str], pause: float) -> None:
    transport = Transport((429, {"error_key": "throttled"}, headers))
    budget = Budget()
    with pytest.raises(TransientApiError) as caught:
        wired(transport, budget=budget).get_activity("/v3/activities/a1")
    assert caught.value.error_key == "throttled"
    assert budget.penalties == [pause]


def test_server_errors_are_not_rate_limits() -> None:
    budget = Budget()
    with pytest.raises(TransientApiError):
        wired(Transport((503, [{"error_key": "x"}])), budget=budget).create_export({})
    assert budget.penalties == [] and budget.quota_calls == 0


@pytest.mark.parametrize("error", [requests.ConnectTimeout(), requests.ConnectionError()])
def test_timeouts_and_dropped_connections_are_transient(error: Exception) -> None:
    with pytest.raises(TransientError):
        wired(Transport(error)).get_activity("/v3/activities/a1")


def test_recent_activities_are_listed_newest_first() -> None:
    older = {**ACTIVITY, "activity_id": "a0", "created_at": "2026-11-26T09:00:00Z"}
    results = {"results": {"href": "/v3/contact_exports/f1"}}
    newer = {**ACTIVITY, "_links": {**ACTIVITY["_links"], **results}}  # type: ignore[dict-item]
    transport = Transport((200, {"activities": [newer, older], "_links": {}}))
    listed = wired(transport).list_activities(limit=20, state="completed")
    assert [a.activity_id for a in listed] == ["a1", "a0"]
    assert listed[0].created_at == "2026-11-26T10:00:00Z"
    assert listed[0].results_href == "/v3/contact_exports/f1"
    assert listed[1].results_href is None
    assert transport.sent[0].url == f"{BASE}/activities?limit=20&state=completed"


def test_listing_refuses_bad_arguments_and_bodies() -> None:
    with pytest.raises(ValueError):
        wired(Transport((200, {}))).list_activities(limit=501)
    with pytest.raises(ValueError):
        wired(Transport((200, {}))).list_activities(state="lost")
    with pytest.raises(ConstantContactError):
        wired(Transport((200, {"activities": "nope"}))).list_activities()
    assert wired(Transport((200, {"_links": {}}))).list_activities() == []


def page(*ids: str, after: str | None = None) -> tuple[int, dict[str, Any]]:
    links = {"next": {"href": after}} if after else {}
    return 200, {"activities": [{**ACTIVITY, "activity_id": i} for i in ids], "_links": links}


def test_activities_are_walked_page_by_page_only_as_far_as_they_are_read() -> None:
    transport = Transport(
        page("a5", "a4", after="/v3/activities?limit=2&cursor=4"),
        page("a3", "a2", after="/v3/activities?limit=2&cursor=2"),
        page("a1"),
    )
    walked = wired(transport).iter_activities(limit=2)
    assert [next(walked).activity_id for _ in range(3)] == ["a5", "a4", "a3"]
    assert len(transport.sent) == 2  # the third page is not asked for until it is read
    assert [a.activity_id for a in walked] == ["a2", "a1"]
    assert [r.url for r in transport.sent] == [
        f"{BASE}/activities?limit=2",
        "https://api.cc.email/v3/activities?limit=2&cursor=4",
        "https://api.cc.email/v3/activities?limit=2&cursor=2",
    ]


def test_a_paging_link_off_the_api_host_is_refused() -> None:
    transport = Transport(page("a2", after="https://evil.example/v3/activities?cursor=1"))
    with pytest.raises(ConstantContactError, match="off the API host"):
        list(wired(transport).iter_activities())
    assert len(transport.sent) == 1


def test_a_foreign_results_link_is_refused_before_any_request() -> None:
    transport, budget = Transport((200, b"a,b\n")), Budget()
    client = wired(transport, budget=budget)
    with (
        pytest.raises(ConstantContactError, match="off the API host"),
        client.open_results("https://evil.example/v3/contact_exports/f1"),
    ):
        pass
    assert transport.sent == [] and budget.acquired == []


def test_a_redirect_is_never_followed() -> None:
    transport = Transport((302, b"", {"Location": "https://evil.example/steal"}))
    with pytest.raises(ConstantContactError, match="redirect") as caught:
        wired(transport).get_activity("/v3/activities/a1")
    assert caught.value.status == 302
    assert [r.url for r in transport.sent] == [f"{BASE}/activities/a1"]

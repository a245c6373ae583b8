"""The poll schedule's duration hint (``workers.state.durations``), on a real Redis."""

from __future__ import annotations

import redis

from contact_exports_client.keys import DURATIONS_TTL_SECONDS, durations_key
from workers.state.durations import SAMPLES, Durations, request_shape


def test_the_hint_is_the_median_of_the_latest_runs_of_one_request(r: redis.Redis) -> None:
    durations = Durations(r)
    shape = request_shape({"fields": ["email_address"], "list_ids": ["l1"]})
    assert durations.expected("acme", shape) is None  # never seen: no hint
    for seconds in (40.0, 42.0, 300.0):  # one slow run does not move the median far
        durations.record("acme", shape, seconds)
    assert durations.expected("acme", shape) == 42.0
    for _ in range(SAMPLES):
        durations.record("acme", shape, 10.0)
    assert durations.expected("acme", shape) == 10.0  # only the latest SAMPLES count
    assert r.llen(durations_key("acme", shape)) == SAMPLES
    assert 0 < r.ttl(durations_key("acme", shape)) <= DURATIONS_TTL_SECONDS


def test_another_request_or_account_has_its_own_history(r: redis.Redis) -> None:
    durations = Durations(r)
    big = request_shape({"fields": ["email_address"]})
    durations.record("acme", big, 600.0)
    assert durations.expected("acme", request_shape({"contact_ids": ["c1"]})) is None
    assert durations.expected("other", big) is None
    durations.record("acme", big, -1.0)  # stamps out of order teach nothing
    assert durations.expected("acme", big) == 600.0


def test_the_shape_ignores_key_order_but_not_values() -> None:
    one = request_shape({"fields": ["a"], "list_ids": ["l1"]})
    assert one == request_shape({"list_ids": ["l1"], "fields": ["a"]})
    assert one != request_shape({"list_ids": ["l2"], "fields": ["a"]})

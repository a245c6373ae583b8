"""Key templates (``workers.export.keytemplate``): Hive-style partitions from the job's UTC start,
unknown placeholders refused before any API call, and the key fixed when the job is opened."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis

from tests.unit.factories import a_job, a_settings
from workers.exceptions import InvalidExportRequest
from workers.export.keytemplate import placeholders, render_key
from workers.export.request import parse_job_request
from workers.state.jobs import JobStore

START = datetime(2026, 12, 4, 9, 5, 7, tzinfo=UTC)


def test_every_placeholder_is_filled_from_the_job_and_its_utc_start() -> None:
    template = "{account}/y={yyyy}/m={mm}/d={dd}/h={hh}/dt={date}/{job_id}.{ext}"
    key = render_key(template, account="acme", job_id="j-1", started=START)
    assert key == "acme/y=2026/m=12/d=04/h=09/dt=2026-12-04/j-1.csv"


def test_a_start_in_another_zone_is_taken_in_utc() -> None:
    evening_in_new_york = datetime.fromisoformat("2026-12-03T23:30:00-05:00")
    assert render_key("{date}/{hh}", account="a", job_id="j", started=evening_in_new_york) == (
        "2026-12-04/04"
    )


def test_doubled_braces_are_literal() -> None:
    assert render_key("{{raw}}/{job_id}", account="a", job_id="j", started=START) == "{raw}/j"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{bucket}/{job_id}", "unknown placeholder {bucket}"),
        ("{job_id.__class__}", "unknown placeholder {job_id.__class__}"),
        ("{job_id!r}", "takes no format spec or conversion"),
        ("{date:%Y}", "takes no format spec or conversion"),
        ("a{b", "write a literal brace twice"),
        ("a}b", "write a literal brace twice"),
    ],
)
def test_a_template_that_is_not_allowed_is_refused_by_name(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        placeholders(template)


def test_a_request_with_an_unknown_placeholder_is_an_invalid_export_request() -> None:
    with pytest.raises(InvalidExportRequest, match=r"destination.key: .*unknown placeholder"):
        parse_job_request({"destination": {"key": "x/{region}/{job_id}.csv"}})
    assert parse_job_request({"destination": {"key": "dt={date}/{job_id}.{ext}"}})


def test_the_workers_template_is_checked_at_start() -> None:
    with pytest.raises(ValueError, match=r"EXPORT_KEY_TEMPLATE: unknown placeholder \{day\}"):
        a_settings(export_key_template="exports/{day}/{job_id}.csv")
    with pytest.raises(ValueError, match=r"must contain \{job_id\}"):
        a_settings(export_key_template="exports/{date}.csv")
    assert a_settings(export_key_template="exports/dt={date}/{job_id}.{ext}")


def test_a_redelivery_on_another_day_writes_the_key_of_the_first(r: redis.Redis) -> None:
    """The key is rendered when the job is first opened; the record keeps it."""
    store = JobStore(r)
    first = a_job(job_id="dated", key="contacts/dt=2026-12-04/dated.csv")
    assert store.open(first, {"export": {}})
    again = a_job(job_id="dated", key="contacts/dt=2026-12-05/dated.csv")
    assert not store.open(again, {"export": {}})
    assert again.key == "contacts/dt=2026-12-04/dated.csv"

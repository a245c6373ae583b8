"""The export's steps run in this process (``tests.integration.chain``) on real Redis, the sandbox
and each real S3 server (rclone and SeaweedFS, ``both_stores``): what lands in S3, how a body
cut short is handled, and that one job_id gives one activity and one object however its messages
arrive. The caller's view through a real worker is in test_exports_with_real_worker.py.
"""

from __future__ import annotations

import csv
import hashlib
import io
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from sandbox.testing import SandboxProcess
from tests.integration.chain import run_export
from tests.integration.conftest import BUCKET, ServicesFactory
from tests.integration.helpers import (
    assert_stored_once,
    created_activities,
    open_uploads,
)
from workers.constant_contact.accounts import Accounts
from workers.exceptions import ConstantContactError
from workers.services import Services
from workers.settings import Settings

# What these add to the download step's own suite (test_downloading_with_real_services.py, which
# also runs over https) is the API's side of an export; https is proven there and by the
# storage suites, so these run over http only, to keep the suite inside its time budget.
pytestmark = [pytest.mark.integration, pytest.mark.both_stores("rclone", "seaweedfs")]


def test_lists_with_fields_and_status(
    services: Services,
    sandbox: SandboxProcess,
    object_bytes: Callable[[str, str], bytes],
) -> None:
    lists = sandbox.catalog()["lists"][:2]
    fields = ["email_address", "first_name", "last_name", "updated_at", "favourite_colour"]
    summary = run_export(
        services, {"export": {"list_ids": lists, "fields": fields, "status": "active"}}
    )

    assert summary["unknown_fields"] == ["favourite_colour"]
    assert len(summary["columns"]) == 4
    text = object_bytes(summary["bucket"], summary["key"]).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == summary["columns"]
    assert len(rows) - 1 == summary["rows"] > 0
    assert summary["rows"] < sandbox.catalog()["contacts"]


def test_contact_ids_in_request_order(services: Services, sandbox: SandboxProcess) -> None:
    wanted = list(reversed(sandbox.catalog()["sample_contact_ids"][:5]))
    summary = run_export(services, {"export": {"contact_ids": wanted, "fields": ["email_address"]}})
    assert summary["rows"] == 5
    posted = sandbox.requests(endpoint="create_export", activity_id=summary["activity_id"])
    assert len(posted) == 1


def test_body_cut_short_every_time_leaves_no_object_and_no_open_upload(
    services: Services, sandbox: SandboxProcess, s3: Any
) -> None:
    sandbox.add_faults({"endpoint": "get_results", "drop_after_bytes": 1000, "times": 100})
    key = f"cut/{uuid.uuid4().hex}.csv"
    with pytest.raises(ConstantContactError, match="gave up") as caught:
        run_export(services, {"export": {}, "destination": {"key": key}})
    assert type(caught.value).__name__ == "ConstantContactError"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="cut/").get("Contents", [])
    assert [o["Key"] for o in listed if o["Key"] == key] == []
    assert open_uploads(s3, BUCKET) == []


def test_body_cut_short_once_is_retried_to_an_intact_object(
    services: Services,
    sandbox: SandboxProcess,
    s3: Any,
    object_bytes: Callable[[str, str], bytes],
) -> None:
    sandbox.add_faults({"endpoint": "get_results", "drop_after_bytes": 5000, "times": 1})
    summary = run_export(services, {"export": {}})
    stored = object_bytes(summary["bucket"], summary["key"])
    assert hashlib.sha256(stored).hexdigest() == summary["sha256"]
    assert summary["rows"] == sandbox.catalog()["contacts"]
    assert open_uploads(s3, BUCKET) == []


def test_same_job_id_twice_gives_one_activity_and_the_same_result(
    services: Services, sandbox: SandboxProcess
) -> None:
    job_id = f"twice-{uuid.uuid4().hex[:8]}"
    first = run_export(services, {"export": {}, "job_id": job_id})
    second = run_export(services, {"export": {}, "job_id": job_id})
    assert first == second
    posts = [
        e
        for e in sandbox.requests(endpoint="create_export")
        if e["activity_id"] == first["activity_id"]
    ]
    assert len(posts) == 1


def test_same_job_id_sent_twice_at_once_gives_one_activity(
    make_services: ServicesFactory, sandbox: SandboxProcess, s3: Any
) -> None:
    """Two deliveries of one job side by side, each with the services of a process of its own."""
    before = created_activities(sandbox)
    job_id = f"twin-{uuid.uuid4().hex[:8]}"
    request = {"export": {"status": "active"}, "job_id": job_id}
    twins = [make_services(), make_services()]
    with ThreadPoolExecutor(2) as pool:
        one, two = pool.map(lambda services: run_export(services, request), twins)
    assert one == two
    assert created_activities(sandbox)[len(before) :] == [one["activity_id"]]
    assert_stored_once(s3, sandbox, one)


def test_create_whose_answer_was_lost_is_found_not_posted_again(
    services: Services, sandbox: SandboxProcess, s3: Any
) -> None:
    # Constant Contact creates the activity, then the answer is a 503.
    sandbox.add_faults({"endpoint": "create_export", "status": 503, "process": True, "times": 1})
    before = created_activities(sandbox)
    posts_before = len(sandbox.requests(endpoint="create_export"))
    summary = run_export(services, {"export": {"fields": ["last_name"]}})
    assert created_activities(sandbox)[len(before) :] == [summary["activity_id"]]
    assert len(sandbox.requests(endpoint="create_export")) == posts_before + 1
    assert sandbox.requests(endpoint="list_activities")
    assert_stored_once(s3, sandbox, summary)


def contact_id(sample: str, index: int) -> str:
    """The sandbox's contact ids end in the contact's index as 12 hex digits."""
    return f"{sample[:-12]}{index:012x}"


def test_more_than_500_contact_ids_become_one_csv_in_request_order(
    services: Services,
    sandbox: SandboxProcess,
    object_bytes: Callable[[str, str], bytes],
) -> None:
    sample = sandbox.catalog()["sample_contact_ids"][0]
    order = list(range(1199, -1, -1))  # 1,200 ids, newest first: three activities
    wanted = [contact_id(sample, i) for i in order]
    summary = run_export(services, {"export": {"contact_ids": wanted, "fields": ["email_address"]}})

    assert summary["activities"] == 3
    assert summary["rows"] == 1200
    text = object_bytes(summary["bucket"], summary["key"]).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == summary["columns"] == ["Email address - other"]
    assert all(row != rows[0] for row in rows[1:]), "only one header"
    indexes = [int(row[0].split("@")[0].rsplit(".", 1)[1], 16) for row in rows[1:]]
    assert indexes == order


class CountingAccounts(Accounts):
    """The worker's accounts, counting each check of an account."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        super().__init__(settings, client)
        self.checked: list[str] = []

    def check(self, account: str) -> None:
        self.checked.append(account)
        super().check(account)


def test_the_account_is_checked_once_per_export(
    services: Services, sandbox: SandboxProcess, s3: Any
) -> None:
    """The request is checked when the export starts; the API calls after it only use the
    account's tokens (before, the API client checked the account a second time)."""
    sandbox.set_processing_seconds(1.0)  # polled several times, through one API client
    counting = CountingAccounts(services.settings, services.redis)
    services.accounts = counting
    summary = run_export(services, {"export": {"fields": ["email_address"]}})
    assert summary["account"] == "default"
    assert counting.checked == ["default"]
    assert_stored_once(s3, sandbox, summary)

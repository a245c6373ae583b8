"""The poll schedule's duration hint on the sandbox (steps run in this process,
``tests.integration.chain``): an activity that reports no progress until it is done is waited for
by how long the same request took lately, and each completed activity adds to that history.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
import redis

from contact_exports_client.keys import durations_key
from sandbox.testing import SandboxProcess
from tests.integration.chain import run_export
from workers.polling import HINT_LOW
from workers.services import Services

pytestmark = pytest.mark.integration

#: A request no other test sends, so its history is this test's alone.
EXPORT = {"fields": ["email_address", "job_title", "company_name", "notes"]}
#: How long the sandbox's activities take in the second run, and so the history it is given.
SECONDS = 4.0


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_a_request_seen_before_is_polled_by_how_long_it_took(
    services: Services, sandbox: SandboxProcess, redis_url: str
) -> None:
    sandbox.configure(progress_curve="late", processing_seconds=0.3)
    client = redis.Redis.from_url(redis_url)
    known = set(client.keys(durations_key("default", "*")))  # other tests' requests
    run_export(services, {"export": EXPORT, "job_id": f"hint-{uuid.uuid4().hex[:8]}"})
    (key,) = set(client.keys(durations_key("default", "*"))) - known  # this request, learnt
    assert 0.2 <= float(client.lrange(key, 0, 0)[0]) <= 1.3  # 0.3 s, in stamps of any rounding

    # Its history says SECONDS now (as if the account's lists had grown): the next run waits
    # for that before it looks again, and sees it done in two polls.
    client.delete(key)
    client.lpush(key, str(SECONDS))
    sandbox.configure(processing_seconds=SECONDS)
    summary = run_export(services, {"export": EXPORT, "job_id": f"hint-{uuid.uuid4().hex[:8]}"})
    (created,) = sandbox.requests(endpoint="create_export", activity_id=summary["activity_id"])
    polls = [
        seconds(e["ts"]) - seconds(created["ts"])
        for e in sandbox.requests(endpoint="get_activity", activity_id=summary["activity_id"])
    ]
    assert len(polls) == 2, polls
    # Without the hint the second poll comes by 2.2 s (6 x the 0.3 s age, +20 %).
    assert polls[1] >= HINT_LOW * SECONDS
    assert len(client.lrange(key, 0, -1)) == 2  # and this run joined the history
    client.close()

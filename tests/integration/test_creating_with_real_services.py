"""The search for an activity whose create answer was lost, against the sandbox and Redis."""

from __future__ import annotations

import time

import pytest
import redis

from sandbox.testing import SandboxProcess
from workers.export.create import find_lost_activity
from tests.integration.conftest import TOKEN
from workers.constant_contact.client import (
    MAX_ACTIVITIES_PAGE,
    ConstantContactClient,
    StaticToken,
)
from workers.state.jobs import OWNED_ACTIVITIES_KEY, JobStore

pytestmark = pytest.mark.integration


def test_a_lost_activity_is_found_beyond_the_first_page(
    sandbox: SandboxProcess, store: JobStore, redis_url: str
) -> None:
    api = ConstantContactClient(sandbox.api_base, StaticToken(TOKEN))
    owned = redis.Redis.from_url(redis_url)
    # Everything created so far belongs to some job, and so will all that comes after ours.
    for activity in api.iter_activities():
        owned.sadd(OWNED_ACTIVITIES_KEY, activity.activity_id)
    body = {"contact_ids": sandbox.catalog()["sample_contact_ids"][:1]}
    posted = time.time()
    lost = api.create_export(body)  # its answer "never arrived": no job recorded it
    try:
        for _ in range(MAX_ACTIVITIES_PAGE + 20):
            owned.sadd(OWNED_ACTIVITIES_KEY, api.create_export(body).activity_id)
        assert lost.activity_id not in {a.activity_id for a in api.list_activities(limit=500)}

        found = find_lost_activity(api, store, (posted, time.time()))

        assert found is not None
        assert found.activity_id == lost.activity_id
    finally:
        # Left unowned, it would be adopted by the next test's lost create in the same seconds.
        owned.sadd(OWNED_ACTIVITIES_KEY, lost.activity_id)
        owned.close()

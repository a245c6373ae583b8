"""The search for an activity whose create answer was lost, against the sandbox and Redis.

The sandbox is this module's own: the 500-odd activities it creates would otherwise lengthen
every later search of the shared sandbox's activities.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from contact_exports_client.keys import OWNED_ACTIVITIES_KEY
from sandbox.testing import SandboxProcess
from tests.integration.conftest import TOKEN
from workers.constant_contact.client import (
    MAX_ACTIVITIES_PAGE,
    Activity,
    ConstantContactClient,
    StaticToken,
)
from workers.export.create import find_lost_activity
from workers.state.jobs import JobStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(tokens=[TOKEN], contacts=10, processing_seconds=0.3, rate_limit=0) as sb:
        yield sb


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
        # Side by side, each on a connection of its own: the sandbox answers a request on a
        # kept-alive connection only after the client's delayed ACK (about 40 ms).
        def create(_: Any) -> Activity:
            return ConstantContactClient(sandbox.api_base, StaticToken(TOKEN)).create_export(body)

        with ThreadPoolExecutor(4) as pool:
            later = list(pool.map(create, range(MAX_ACTIVITIES_PAGE + 20)))
        owned.sadd(OWNED_ACTIVITIES_KEY, *(activity.activity_id for activity in later))
        assert lost.activity_id not in {a.activity_id for a in api.list_activities(limit=500)}

        found = find_lost_activity(api, store, (posted, time.time()))

        assert found is not None
        assert found.activity_id == lost.activity_id
    finally:
        # Left unowned, it would be adopted by the next test's lost create in the same seconds.
        owned.sadd(OWNED_ACTIVITIES_KEY, lost.activity_id)
        owned.close()

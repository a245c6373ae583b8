"""Fixtures for the sandbox's own tests: one shared sandbox process, reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sandbox_test_client import CONTACTS, PROCESSING_SECONDS, SEED, TOKEN, Api

from sandbox.contacts import ContactUniverse
from sandbox.testing import SandboxProcess


@pytest.fixture(scope="session")
def sandbox_process() -> Iterator[SandboxProcess]:
    with SandboxProcess(
        tokens=[TOKEN],
        contacts=CONTACTS,
        seed=SEED,
        processing_seconds=PROCESSING_SECONDS,
        rate_limit=0,
    ) as sb:
        yield sb


@pytest.fixture
def sb(sandbox_process: SandboxProcess) -> SandboxProcess:
    """The shared sandbox with a clean slate: no activities, faults or log, default config."""
    sandbox_process.reset()
    sandbox_process.configure(
        processing_seconds=PROCESSING_SECONDS,
        max_queued=1000,
        rate_limit=0,
        daily_quota=0,
        chunked=False,
        progress_curve="linear",
        timestamp_resolution="millis",
    )
    return sandbox_process


@pytest.fixture
def api(sb: SandboxProcess) -> Iterator[Api]:
    client = Api(sb)
    yield client
    client.close()


@pytest.fixture(scope="session")
def universe() -> ContactUniverse:
    """The same contacts the shared sandbox serves, computed locally for expectations."""
    return ContactUniverse(SEED, CONTACTS)

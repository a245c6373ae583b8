"""The in-process server (sandbox.server.Sandbox) and the package's isolation rules."""

from __future__ import annotations

import ast
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

import sandbox
from sandbox.activities import Activity, ActivityState, ActivityStore
from sandbox.config import DEFAULT_MAX_QUEUED, SandboxConfig
from sandbox.server import Sandbox

PACKAGE_DIR = Path(sandbox.__file__).parent


def test_in_process_sandbox_serves_and_cleans_up() -> None:
    config = SandboxConfig(
        tokens=("t",), contacts=200, processing_seconds=0, rate_limit=0, quiet=True
    )
    with Sandbox(config) as server, requests.Session() as session:
        session.headers["Authorization"] = "Bearer t"
        assert session.get(f"{server.url}/__sandbox__/health", timeout=5).json() == {"status": "ok"}
        created = session.post(f"{server.api_base}/activities/contact_exports", json={}, timeout=5)
        assert created.status_code == 201
        activity = created.json()
        stored = server.state.activities.get(activity["activity_id"])
        assert stored is not None and stored.job is not None
        assert stored.job.done.wait(10)
        results = f"{server.url}{activity['_links']['results']['href']}"
        full = session.get(results, timeout=5).content
        assert stored.job.info is not None
        assert len(full) == stored.job.info.bytes
        server.state.settings.chunked = True
        server.state.faults.add([{"endpoint": "get_results", "drop_after_bytes": 100}])
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            session.get(results, timeout=5).raise_for_status()
        spool = server.state.spool.directory
        assert any(spool.iterdir())
    assert not spool.exists()  # the temporary spool goes away with the server


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_sandbox_uses_only_the_standard_library_and_itself() -> None:
    allowed = set(sys.stdlib_module_names) | {"sandbox", "__future__"}
    for path in PACKAGE_DIR.glob("*.py"):
        foreign = _imports(path) - allowed
        assert not foreign, f"{path.name} imports {foreign}"


def test_the_1001st_unfinished_activity_is_refused_per_account() -> None:
    """The swagger's 429 text: "You exceeded 1,000 queued activities for this user account"."""
    now = [0.0]
    store = ActivityStore(clock=lambda: now[0])

    def build(seq: int, created: float) -> Activity:
        return Activity(
            activity_id=str(uuid.uuid4()),
            file_export_id=str(uuid.uuid4()),
            seq=seq,
            created_wall=datetime.now(UTC),
            created_mono=created,
            processing_seconds=10.0,
            outcome=ActivityState.COMPLETED,
            errors=(),
            job=None,
            candidates=1,
        )

    assert SandboxConfig().max_queued == DEFAULT_MAX_QUEUED == 1_000
    for _ in range(DEFAULT_MAX_QUEUED):
        assert store.create_if_room(DEFAULT_MAX_QUEUED, build) is not None
    assert store.create_if_room(DEFAULT_MAX_QUEUED, build) is None
    now[0] = 10.0  # every activity has finished: room again
    assert store.create_if_room(DEFAULT_MAX_QUEUED, build) is not None

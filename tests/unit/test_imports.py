"""Importing a module does nothing but define things, and the imports never run in a circle.

Each module is imported alone in a fresh interpreter, which then reports what the import left
behind: Celery apps, connected worker signals, patched kombu methods, threads. Only the app
module (``workers.celery``) and the task modules bound to it (``tasks.*``) may build the app.
The import graph is read from the source, so a circle fails here even where a late import
hides it at run time.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("workers", "tasks", "contact_exports_client", "contact_exports_cli", "devstack")
#: Modules whose import builds the Celery app on purpose.
APP_MODULES = {"workers.celery", "tasks"}

PROBE = """
import importlib, json, sys, threading
from celery import signals
from kombu.transport import redis as kombu_redis
restore, acquire = kombu_redis.QoS.restore_unacked, kombu_redis.Channel.conn_or_acquire
for name in sys.argv[1:]:
    importlib.import_module(name)
from celery import _state
watched = ("worker_init", "worker_process_init", "worker_ready", "setup_logging", "task_prerun")
print(json.dumps({
    "apps": [app.main for app in list(_state._apps) if app.main != "default"],
    "signals": [name for name in watched if getattr(signals, name).receivers],
    "patched": kombu_redis.QoS.restore_unacked is not restore
    or kombu_redis.Channel.conn_or_acquire is not acquire,
    "threads": sorted(t.name for t in threading.enumerate() if t is not threading.main_thread()),
}))
"""


def modules() -> Iterator[str]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_app_module(name: str) -> bool:
    return any(name == m or name.startswith(f"{m}.") for m in APP_MODULES)


def left_behind(*names: str) -> dict[str, object]:
    """What importing ``names`` in a fresh interpreter left behind."""
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, *names],
        cwd=ROOT,
        env={**os.environ, "CC_ACCESS_TOKEN": "t", "METRICS_PORT": ""},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    result: dict[str, object] = json.loads(probe.stdout.splitlines()[-1])
    return result


def test_importing_any_module_but_the_app_builds_patches_and_starts_nothing() -> None:
    """Every module at once, in one fresh interpreter: none of them left anything behind."""
    names = [m for m in modules() if not is_app_module(m)]
    assert "workers.lifecycle" in names and "workers.services" in names
    assert left_behind(*names) == {"apps": [], "signals": [], "patched": False, "threads": []}


def test_the_app_module_builds_the_app_and_only_wires_handlers() -> None:
    """The probe sees an app and its handlers where there are some; nothing runs until a
    worker starts (no kombu patch, no thread)."""
    left = left_behind("workers.celery")
    assert left["apps"] == ["contact_exports"] and "worker_init" in str(left["signals"])
    assert left["patched"] is False and left["threads"] == []


def imports_of(module: str) -> set[str]:
    """The project modules ``module`` imports anywhere in its source, late imports included."""
    path = ROOT / Path(*module.split("."))
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    found = set()
    for node in ast.walk(ast.parse(source.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        found.update(name for name in names if name.split(".")[0] in PACKAGES)
    known = set(modules())
    return {name for name in found if name in known and name != module}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """A circle of imports in ``graph`` (module -> modules it imports), or None."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> list[str] | None:
        if module in visiting:
            return [*visiting[visiting.index(module) :], module]
        if module in done:
            return None
        visiting.append(module)
        for name in sorted(graph.get(module, ())):
            circle = visit(name)
            if circle:
                return circle
        visiting.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        circle = visit(module)
        if circle:
            return circle
    return None


def test_no_import_circle_and_workers_never_import_tasks() -> None:
    graph = {module: imports_of(module) for module in modules()}
    assert graph["workers.export.download"], "the graph must see imports"
    for module, imported in graph.items():
        if module.startswith("workers"):
            assert not any(name.split(".")[0] == "tasks" for name in imported), module
    assert find_circle(graph) is None


def test_a_circle_is_found_where_there_is_one() -> None:
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None

"""The janitor's sweep: lost export messages and lost seal messages are sent again, once due."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from workers.export import janitor
from workers.export.tasknames import SEAL_TASK
from workers.state.jobs import JobStore


class Sender:
    """Records what would be sent, like ``Celery.send_task``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send_task(self, name: str, *args: Any, **options: Any) -> None:
        assert not args
        self.sent.append((name, options))


def test_a_seal_whose_message_was_lost_is_asked_for_again_once(
    r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = JobStore(r)
    store.save_result("j1", {"rows": 1}, seal={"key": "k.csv"})
    sender = Sender()
    assert janitor.sweep(store, sender, older_than=60) == []
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    assert janitor.sweep(store, sender, older_than=60) == ["j1"]
    assert sender.sent == [
        (SEAL_TASK, {"args": ["j1", {"key": "k.csv"}], "queue": "contact_exports"})
    ]
    # Asked again just now: the next sweep leaves it alone.
    assert janitor.sweep(store, sender, older_than=60) == []

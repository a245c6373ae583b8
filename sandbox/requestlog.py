"""A record of every API request the sandbox answered, for assertions in tests.

Tests use it to prove things a client cannot see for itself: how many times an
endpoint was hit, that retries reused one activity, that a refused request
reached the server.  Tokens appear only as fingerprints.  Control-API calls are
not recorded, so a test inspecting the log does not disturb what it counts.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any

MAX_RECORDS = 200_000
"""Oldest entries are dropped beyond this, bounding memory in long benchmarks;
the summary counters keep counting regardless."""


@dataclass(frozen=True)
class RequestRecord:
    ts: str
    method: str
    path: str
    endpoint: str
    status: int
    token_id: str | None
    activity_id: str | None
    file_export_id: str | None
    bytes_sent: int
    faults: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["faults"] = list(self.faults)
        return body


class RequestLog:
    def __init__(self, max_records: int = MAX_RECORDS) -> None:
        self._lock = threading.Lock()
        self._records: deque[RequestRecord] = deque(maxlen=max_records)
        self._by_endpoint: Counter[str] = Counter()
        self._by_token: Counter[str] = Counter()
        self._by_activity: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()
        #: How many times the log was cleared.
        self.generation = 0

    def add(self, record: RequestRecord, generation: int | None = None) -> None:
        """Log ``record``, unless the log was cleared since its request began (``generation``
        as it was then): a request is logged once its answer is sent, and a client that got
        the answer may already have cleared the log for its next test."""
        with self._lock:
            if generation is not None and generation != self.generation:
                return
            self._records.append(record)
            self._by_endpoint[record.endpoint] += 1
            self._by_status[str(record.status)] += 1
            if record.token_id is not None:
                self._by_token[record.token_id] += 1
            if record.activity_id is not None:
                self._by_activity[record.activity_id] += 1

    def query(
        self, endpoint: str | None = None, activity_id: str | None = None
    ) -> list[dict[str, Any]]:
        with self._lock:
            records = list(self._records)
        return [
            r.to_json()
            for r in records
            if (endpoint is None or r.endpoint == endpoint)
            and (activity_id is None or r.activity_id == activity_id)
        ]

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": sum(self._by_endpoint.values()),
                "by_endpoint": dict(self._by_endpoint),
                "by_status": dict(self._by_status),
                "by_token_id": dict(self._by_token),
                "by_activity_id": dict(self._by_activity),
            }

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._records.clear()
            self._by_endpoint.clear()
            self._by_token.clear()
            self._by_activity.clear()
            self._by_status.clear()

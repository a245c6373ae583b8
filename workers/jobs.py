"""Export jobs: the small JSON record that travels between the chain's steps, and its copy in
Redis that makes a repeated step resume instead of redoing (one job_id, one activity, one object).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

#: Every Redis key this module writes starts with this.
KEY_PREFIX = "contact_exports:job:"
#: Job records outlive their results by this long, so a late duplicate still finds them.
RECORD_TTL_SECONDS = 14 * 24 * 3600
#: How long one worker may hold the right to POST an export for a job.
CREATE_CLAIM_SECONDS = 300


@dataclass
class Job:
    job_id: str
    result_id: str
    account: str
    request: dict[str, Any]
    bucket: str
    key: str
    deadline: float
    started_at: str
    unknown_fields: list[str] = field(default_factory=list)
    activity_id: str | None = None
    self_href: str | None = None
    results_href: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        return cls(**data)


class JobStore:
    """Job state in Redis, shared by every worker on every machine."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    @staticmethod
    def _key(job_id: str) -> str:
        return f"{KEY_PREFIX}{job_id}"

    def activity(self, job_id: str) -> dict[str, str] | None:
        """The activity already created for this job: activity_id, self_href, results_href."""
        fields = ("activity_id", "self_href", "results_href")
        values = self._redis.hmget(self._key(job_id), fields)
        if values[0] is None:
            return None
        return {name: _text(v) for name, v in zip(fields, values, strict=True) if v is not None}

    def claim_create(self, job_id: str, holder: str) -> bool:
        """Only the claim's holder may POST the export; a second delivery waits and reuses."""
        claimed = self._redis.set(
            self._key(job_id) + ":create", holder, nx=True, ex=CREATE_CLAIM_SECONDS
        )
        if claimed:
            return True
        current = self._redis.get(self._key(job_id) + ":create")
        return current is not None and _text(current) == holder

    def remember_activity(
        self, job_id: str, activity_id: str, self_href: str, results_href: str | None
    ) -> None:
        key = self._key(job_id)
        pipe = self._redis.pipeline()
        pipe.hset(key, "activity_id", activity_id)
        pipe.hset(key, "self_href", self_href)
        if results_href:
            pipe.hset(key, "results_href", results_href)
        pipe.expire(key, RECORD_TTL_SECONDS)
        pipe.execute()

    def result(self, job_id: str) -> dict[str, Any] | None:
        raw = self._redis.hget(self._key(job_id), "result")
        return json.loads(raw) if raw else None

    def save_result(self, job_id: str, result: dict[str, Any]) -> None:
        key = self._key(job_id)
        pipe = self._redis.pipeline()
        pipe.hset(key, "result", json.dumps(result))
        pipe.expire(key, RECORD_TTL_SECONDS)
        pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

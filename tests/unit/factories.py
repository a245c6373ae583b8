"""Records the unit tests build again and again."""

from __future__ import annotations

import time
from typing import Any

from workers.export.job import Job


def a_job(job_id: str = "j1", **changes: Any) -> Job:
    """A job with one request and a minute to run, as ``export`` hands it on."""
    fields: dict[str, Any] = {
        "job_id": job_id,
        "result_id": "r1",
        "account": "default",
        "requests": [{}],
        "bucket": "b",
        "key": "k.csv",
        "deadline": time.time() + 60,
        "started_at": "2026-11-26T00:00:00Z",
    }
    return Job(**{**fields, **changes})

"""What a step tells its task: go on, come back later, or the export is finished.

Steps never touch Celery; the task turns an outcome into its return value or a
``retry(countdown=…)``. A failure is an exception instead (``workers.exceptions``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workers.export.job import Job


@dataclass(frozen=True)
class Next:
    """This step is done; the chain's next step gets ``job``."""

    job: Job


@dataclass(frozen=True)
class Again:
    """Run this step again in ``countdown`` seconds: with ``job`` if given (what this run
    learnt), else with the message as it came."""

    countdown: float
    job: Job | None = None


@dataclass(frozen=True)
class Finished:
    """The export is stored: ``result`` is the caller's result dict."""

    result: dict[str, Any]


Outcome = Next | Again | Finished

"""When to look at an export activity again.

Polls spend the application's shared budget of 4 requests a second, so fewer is better — but a
late poll delays the download. Constant Contact reports ``percent_done``; from how it rises
since the first sighting we predict when the activity completes and poll just after that. With
nothing to go on yet (no progress reported), we fall back to capped exponential backoff.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from workers.backoff import exponential

#: A prediction is aimed this far past the estimated completion, as a fraction of the wait, so a
#: slightly slow activity is still done when we look (jittered by ±PREDICTION_JITTER).
PREDICTION_MARGIN = 0.05
PREDICTION_JITTER = 0.05


@dataclass(frozen=True)
class Mark:
    """One sighting of the activity: when (epoch seconds) and how far along (0-100)."""

    at: float
    percent: int


def predict_completion(first: Mark, latest: Mark) -> float | None:
    """Epoch seconds at which percent_done reaches 100 if it keeps its average pace."""
    gained = latest.percent - first.percent
    elapsed = latest.at - first.at
    if gained <= 0 or elapsed <= 0:
        return None
    return latest.at + (100 - latest.percent) * elapsed / gained


def next_poll_delay(
    first: Mark | None,
    latest: Mark,
    *,
    attempt: int,
    initial: float,
    cap: float,
    rng: random.Random | None = None,
) -> float:
    """Seconds until the next poll: just after the predicted completion, within [initial, cap]."""
    completion = predict_completion(first, latest) if first is not None else None
    if completion is None:
        return exponential(attempt, initial=initial, cap=cap, factor=1.5, rng=rng)
    wait = completion - latest.at
    jitter = (rng or random).uniform(-PREDICTION_JITTER, PREDICTION_JITTER)
    wait *= 1 + PREDICTION_MARGIN + jitter
    return min(cap, max(initial, wait))

from __future__ import annotations

import random

import pytest

from workers.polling import Mark, next_poll_delay, predict_completion


def test_steady_progress_predicts_completion() -> None:
    assert predict_completion(Mark(100.0, 0), Mark(110.0, 20)) == pytest.approx(150.0)
    assert predict_completion(Mark(100.0, 50), Mark(100.0, 50)) is None
    assert predict_completion(Mark(100.0, 40), Mark(130.0, 40)) is None


def test_the_next_poll_lands_just_after_the_predicted_completion() -> None:
    delay = next_poll_delay(
        Mark(0.0, 0), Mark(10.0, 25), attempt=1, initial=1, cap=600, rng=random.Random(1)
    )
    assert 30.0 <= delay <= 30.0 * 1.1


def test_prediction_is_kept_within_initial_and_cap() -> None:
    assert next_poll_delay(Mark(0, 0), Mark(10, 99), attempt=1, initial=2, cap=60) == 2
    assert next_poll_delay(Mark(0, 0), Mark(10, 1), attempt=1, initial=2, cap=60) == 60


def test_without_progress_it_backs_off_exponentially() -> None:
    rng = random.Random(2)
    early = next_poll_delay(None, Mark(0, 0), attempt=0, initial=2, cap=60, rng=rng)
    later = next_poll_delay(Mark(0, 0), Mark(9, 0), attempt=6, initial=2, cap=60, rng=rng)
    assert early < 3 and 15 < later <= 60


def test_simulated_activities_need_few_polls_and_are_seen_soon_after_completion() -> None:
    """A linear activity of D seconds: count polls and measure the completion-to-poll delay."""
    rng = random.Random(3)
    for duration in (5.0, 60.0, 600.0):
        now, polls, first = 2.0, 0, None
        while True:
            polls += 1
            percent = min(100, int(100 * now / duration))
            if percent >= 100:
                break
            latest = Mark(now, percent)
            if first is None and percent > 0:
                first = latest
            now += next_poll_delay(first, latest, attempt=polls, initial=2, cap=300, rng=rng)
        assert polls <= 6, (duration, polls)
        assert now - duration <= max(2.0, 0.1 * duration), (duration, now)

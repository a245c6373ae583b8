"""The shape a task message's body must have before Celery builds a request from it.

That a worker survives every kind of malformed message is shown on a real worker in
tests/integration/test_poison_messages_with_real_worker.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from workers.poison import shape_problem

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@pytest.mark.parametrize("body", [[[], {}, EMBED], [[{"job_id": "j"}], {}, None], ([], {}, {})])
def test_a_body_of_args_kwargs_and_embed_is_accepted(body: Any) -> None:
    assert shape_problem(body) is None


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"a": 1}, "not [args, kwargs, embed]: dict"),
        ([[]], "not [args, kwargs, embed]: list"),
        ("text", "not [args, kwargs, embed]: str"),
        ([{}, {}, EMBED], "args is a dict"),
        ([[], [], EMBED], "kwargs is a list"),
        ([[], {}, "x"], "embed is a str"),
    ],
)
def test_any_other_body_is_named_for_what_is_wrong(body: Any, problem: str) -> None:
    found = shape_problem(body)
    assert found is not None and problem in found

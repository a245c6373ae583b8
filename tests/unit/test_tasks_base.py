"""How the export tasks read the job out of a message (``tasks.base``).

Only a chain step's message carries a job: its one positional argument, the job's dict. The
export task's kwargs and the side tasks' arguments carry none, so a failure there leaves no
dead letter behind (``ExportStep.on_failure``) and binds no job to the log context.
"""

from __future__ import annotations

from typing import Any

import pytest

from tasks.base import _job_in
from tests.unit.factories import a_job
from workers.export.job import ActivityRef


def test_a_chain_steps_message_carries_its_job() -> None:
    job = a_job(activities=[ActivityRef("a1", "/v3/activities/a1")], notify_url=None)
    message = job.to_dict()
    assert _job_in((message,)) == job
    assert _job_in([message]) == job  # Celery hands the arguments on as a list, too


@pytest.mark.parametrize(
    "args",
    [
        (),  # the export task: everything is in its kwargs
        [],
        ({"export": {}, "account": "default"},),  # a dict, but not a job
        ({"job_id": "j1"},),  # a job id without the rest of a job
        ({"job_id": "j1", "result_id": "r1"},),  # ids, but not a whole job: no TypeError
        ("j1", {"bucket": "b", "key": "k.csv"}),  # the seal task's job id and what it owes
        ("https://hooks.example.com/x", {"job_id": "j1"}),  # the webhook's url and payload
        None,
    ],
)
def test_other_messages_carry_no_job(args: Any) -> None:
    assert _job_in(args) is None

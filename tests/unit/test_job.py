"""The job a chain step's message carries (``workers.export.job``): typed in the worker, the
same JSON on the wire as before."""

from __future__ import annotations

import copy
from typing import Any

from workers.export.job import ActivityRef, Job
from workers.polling import Sighting, Timeline

TIMELINE = {
    "created": 1_800_000_000.0,
    "looked_at": 1_800_000_012.5,
    "started": 1_800_000_001.0,
    "sightings": [[1_800_000_012.0, 40]],
    "resolution": 0.001,
}

#: A poll task's message as a worker before the restructuring wrote it: activities as plain
#: objects (``results_href`` only once known), and ``first_mark``, which this version dropped.
OLDER_MESSAGE: dict[str, Any] = {
    "job_id": "crm-sync",
    "result_id": "r-1",
    "account": "default",
    "requests": [{"contact_ids": ["x"]}, {"contact_ids": ["y"]}],
    "bucket": "exports",
    "key": "crm/contacts.csv",
    "deadline": 1_800_021_600.0,
    "started_at": "2027-01-15T08:00:00Z",
    "unknown_fields": ["favourite_colour"],
    "activities": [
        {
            "activity_id": "a1",
            "self_href": "/v3/activities/a1",
            "results_href": "/v3/contact_exports/f1",
            "completed": True,
        },
        {
            "activity_id": "a2",
            "self_href": "/v3/activities/a2",
            "completed": False,
            "timeline": TIMELINE,
        },
    ],
    "first_mark": [1_800_000_000.3, 1_800_000_000.9],
    "poll_at": 1_800_000_020.0,
    "clock_offset": -0.25,
    "notify_url": "https://hooks.example.com/x",
}


def test_a_message_from_an_older_worker_loads_and_keeps_its_shape() -> None:
    job = Job.from_dict(copy.deepcopy(OLDER_MESSAGE))
    assert job.activities == [
        ActivityRef("a1", "/v3/activities/a1", "/v3/contact_exports/f1", completed=True),
        ActivityRef(
            "a2",
            "/v3/activities/a2",
            timeline=Timeline(
                created=1_800_000_000.0,
                looked_at=1_800_000_012.5,
                started=1_800_000_001.0,
                sightings=(Sighting(1_800_000_012.0, 40),),
            ),
        ),
    ]
    assert (job.activity_id, job.activity_ids, job.done) == ("a1", ["a1", "a2"], False)
    assert (job.poll_at, job.clock_offset) == (1_800_000_020.0, -0.25)
    wire = {name: value for name, value in OLDER_MESSAGE.items() if name != "first_mark"}
    # Fields added since come with their defaults (an older worker ignores them).
    assert job.to_dict() == {**wire, "object_options": {}, "format": "csv"}
    assert Job.from_dict(job.to_dict()) == job


def test_an_activity_seen_completed_drops_its_timeline_and_keeps_its_file() -> None:
    polled = ActivityRef.from_json(OLDER_MESSAGE["activities"][1])
    done = polled.finished("/v3/contact_exports/f2")
    assert done == ActivityRef("a2", "/v3/activities/a2", "/v3/contact_exports/f2", completed=True)
    assert done.to_json() == {
        "activity_id": "a2",
        "self_href": "/v3/activities/a2",
        "results_href": "/v3/contact_exports/f2",
        "completed": True,
    }

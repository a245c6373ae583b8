"""What ``result`` makes of a job's record and Celery state, and the doctor's exit code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contact_exports_cli.doctor import Check, Outcome, exit_code
from contact_exports_cli.exceptions import ExportFailedError, NotFinishedError
from contact_exports_cli.exitcodes import ExitCode
from contact_exports_cli.jobs import CeleryState, JobView, outcome

RESULT = {"job_id": "j", "uri": "s3://b/k.csv", "bytes": 10}


def view(record: dict[str, str], state: str = "PENDING", info: Any = None) -> JobView:
    return JobView("j", record, CeleryState(state, info))


def test_a_success_in_celery_is_the_result() -> None:
    assert outcome(view({}, "SUCCESS", RESULT)) == RESULT


def test_the_record_keeps_the_result_when_celery_forgot_it() -> None:
    record = {"state": "completed", "result": json.dumps(RESULT)}
    assert outcome(view(record)) == RESULT


def test_the_json_view_decodes_the_owed_seal_like_the_result() -> None:
    owed = {"bucket": "b", "key": "k.csv", "sha256": "a" * 64}
    record = {"state": "completed", "result": json.dumps(RESULT), "seal": json.dumps(owed)}
    shown = view(record).to_json()["record"]
    assert (shown["result"], shown["seal"]) == (RESULT, owed)


def test_a_failure_names_the_workers_error_and_exits_1() -> None:
    info = {"error_type": "ActivityFailed", "error_message": "activity a ended cancelled"}
    with pytest.raises(ExportFailedError) as caught:
        outcome(view({"state": "failed"}, "FAILURE", info))
    assert caught.value.code is ExitCode.EXPORT_FAILED
    assert "ActivityFailed: activity a ended cancelled" in caught.value.message


def test_an_invalid_request_from_the_worker_exits_2() -> None:
    info = {"error_type": "InvalidExportRequest", "error_message": "account: unknown"}
    with pytest.raises(ExportFailedError) as caught:
        outcome(view({}, "FAILURE", info))
    assert caught.value.code is ExitCode.INVALID


def test_a_dead_letter_without_celery_result_is_still_a_failure() -> None:
    record = {"state": "failed", "error_type": "StorageError", "error_message": "no bucket"}
    with pytest.raises(ExportFailedError, match="StorageError: no bucket"):
        outcome(view(record))


def test_a_rerun_in_flight_wins_over_the_last_runs_failure() -> None:
    info = {"error_type": "ActivityFailed", "error_message": "old run"}
    with pytest.raises(NotFinishedError, match="polling"):
        outcome(view({"state": "polling"}, "FAILURE", info))


def test_a_running_job_is_not_finished_and_says_its_stage() -> None:
    progress = {"stage": "downloading", "percent_done": 100, "bytes": 5}
    with pytest.raises(NotFinishedError, match="downloading") as caught:
        outcome(view({"state": "downloading"}, "PROGRESS", progress))
    assert caught.value.code is ExitCode.NOT_FINISHED


def test_doctor_exit_code_prefers_unreachable_over_problem_over_warning() -> None:
    ok = Check("a", Outcome.OK, "")
    warning = Check("b", Outcome.WARNING, "")
    problem = Check("c", Outcome.PROBLEM, "")
    down = Check("d", Outcome.UNREACHABLE, "")
    assert exit_code([ok, warning]) is ExitCode.OK
    assert exit_code([ok, problem, warning]) is ExitCode.CHECK_FAILED
    assert exit_code([problem, down]) is ExitCode.UNREACHABLE

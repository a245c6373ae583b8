"""The command line without services: help, local refusals, unreachable Redis, exit codes.

Redis URLs point at port 1, where nothing listens: a command that tried to send anything would
end with exit code 3, so exit code 2 proves the request was refused before any connection.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from contact_exports_cli import render
from contact_exports_cli.accounts import parse_tokens
from contact_exports_cli.connections import JobNamedCelery, redact
from contact_exports_cli.exceptions import InvalidUsageError
from contact_exports_cli.exitcodes import ExitCode
from contact_exports_cli.main import app
from contact_exports_client import EXPORT_TASK, QUEUE

DOWN = "redis://:s3cret-pass@127.0.0.1:1/0"
#: Every variable a command reads; those not given are removed for the invocation.
VARIABLES = (
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "JOBS_REDIS_URL",
    "CC_ACCESS_TOKEN",
    "CC_REFRESH_TOKEN",
    "CC_CLIENT_ID",
    "CC_CLIENT_SECRET",
    "CC_TOKEN_ENCRYPTION_KEY",
    "CC_API_BASE_URL",
    "S3_BUCKET",
    "S3_ENDPOINT_URL",
)


def env(**values: str) -> dict[str, str | None]:
    return {name: values.get(name) for name in VARIABLES}


def invoke(*args: str, input: str | None = None, **values: str) -> Any:
    return CliRunner().invoke(app, list(args), input=input, env=env(**values))


def test_help_documents_every_exit_code() -> None:
    for args in ([], ["submit"], ["accounts", "add"], ["doctor"]):
        done = invoke(*args, "--help")
        assert done.exit_code == 0, done.output
        for code in ExitCode:
            assert f"{int(code)}  " in done.output


def test_the_readme_documents_every_exit_code_as_help_does() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Command line and client helper", 1)[1].split("\n## ", 1)[0]
    documented = {int(m) for m in re.findall(r"^\| (\d) \|", section, flags=re.MULTILINE)}
    assert documented == {int(code) for code in ExitCode}


def test_an_invalid_request_is_refused_locally_with_exit_code_2() -> None:
    done = invoke(
        "submit", "--contact-id", "not-a-uuid", "--segment-id", "4", CELERY_BROKER_URL=DOWN
    )
    assert done.exit_code == ExitCode.INVALID, done.output
    assert "invalid export request" in done.stderr
    assert "contact_ids" in done.stderr


def test_a_request_on_stdin_is_checked_like_flags() -> None:
    body = '{"export": {"status": "gone"}, "job_id": "j-1"}'
    done = invoke("submit", "--file", "-", input=body, CELERY_BROKER_URL=DOWN)
    assert done.exit_code == ExitCode.INVALID, done.output
    assert "export.status" in done.stderr


def test_bad_flags_are_usage_errors() -> None:
    assert invoke("submit", "--segment-id", "four").exit_code == ExitCode.INVALID
    assert invoke("status").exit_code == ExitCode.INVALID


def test_a_valid_request_with_redis_down_exits_3_and_hides_the_password() -> None:
    done = invoke("submit", "--status", "active", CELERY_BROKER_URL=DOWN)
    assert done.exit_code == ExitCode.UNREACHABLE, done.output
    assert "cannot reach Redis (broker)" in done.stderr
    assert "s3cret-pass" not in done.output
    assert "redis://:***@127.0.0.1:1/0" in done.stderr


@pytest.mark.parametrize(
    "args",
    [["status", "j"], ["result", "j"], ["watch", "--once"], ["failed"], ["retry", "j"]],
)
def test_every_redis_command_exits_3_when_redis_is_down(args: list[str]) -> None:
    done = invoke(*args, CELERY_BROKER_URL=DOWN, CELERY_RESULT_BACKEND=DOWN)
    assert done.exit_code == ExitCode.UNREACHABLE, done.output
    assert "cannot reach Redis" in done.stderr


def test_commands_on_worker_settings_name_the_missing_variable() -> None:
    for args in (["accounts", "list"], ["doctor"]):
        done = invoke(*args, CELERY_BROKER_URL=DOWN)
        assert done.exit_code == ExitCode.INVALID, done.output
        assert "CC_ACCESS_TOKEN" in done.stderr
        assert "Traceback" not in done.output


def test_accounts_need_the_encryption_key() -> None:
    done = invoke("accounts", "list", CC_ACCESS_TOKEN="t", CELERY_BROKER_URL=DOWN)
    assert done.exit_code == ExitCode.INVALID
    assert "CC_TOKEN_ENCRYPTION_KEY is not set" in done.stderr


def test_a_token_is_never_taken_as_an_argument() -> None:
    done = invoke("accounts", "add", "acme", "secret-token-value", CC_ACCESS_TOKEN="t")
    assert done.exit_code == ExitCode.INVALID
    assert "unexpected extra argument" in done.output.lower()


def test_tokens_on_stdin_as_json_or_lines() -> None:
    both = parse_tokens('{"access_token": "a1", "refresh_token": "r1", "expires_in": 60}')
    assert (both.access_token, both.refresh_token, both.expires_in) == ("a1", "r1", 60.0)
    lines = parse_tokens("a2\nr2\n")
    assert (lines.access_token, lines.refresh_token) == ("a2", "r2")
    alone = parse_tokens("a3\n")
    assert (alone.access_token, alone.refresh_token) == ("a3", None)
    assert "a1" not in repr(both)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"access_token": "a", "scope": "x"}', "unknown keys"),
        ('{"access_token": 5}', "string without spaces"),
        ("a b\n", "string without spaces"),
        ("a\nb\nc\n", "at most a refresh token"),
        ('{"access_token": "a", "expires_in": -1}', "positive"),
    ],
)
def test_malformed_tokens_on_stdin_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidUsageError, match=message):
        parse_tokens(text)


def test_redact_hides_only_the_password() -> None:
    assert redact("redis://user:pw@host:6380/2") == "redis://user:***@host:6380/2"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_exports_are_sent_under_their_job_id_so_status_finds_them() -> None:
    celery = JobNamedCelery("t", broker="memory://", backend="cache+memory://")
    try:
        named = celery.send_task(EXPORT_TASK, kwargs={"export": {}, "job_id": "j-7"}, queue=QUEUE)
        unnamed = celery.send_task(EXPORT_TASK, kwargs={"export": {}}, queue=QUEUE)
        other = celery.send_task("other.task", kwargs={"job_id": "j-8"}, queue=QUEUE)
    finally:
        celery.close()
    assert named.id == "j-7"
    assert unnamed.id != "j-7" and len(unnamed.id) == 36
    assert other.id != "j-8"


def test_a_table_keeps_its_first_column_whole_on_a_narrow_terminal() -> None:
    """Job ids are copied from tables into the next command: wrapping one breaks the copy."""
    job = "cli-watch-0e16583a-with-a-long-tail"
    grid = render.table("jobs", ["job", "state", "message"], [[job, "polling", "x " * 40]])
    console = Console(width=60, file=io.StringIO())
    console.print(grid)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert job in text
    assert "x x" in text  # the other columns fold instead

"""``contact-exports accounts`` and ``doctor`` against real Redis, rclone S3 and the sandbox; the
export's steps, built as a worker builds them with this module's key, export with an account the
command line stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from contact_exports_cli.doctor import PROBE_PREFIX
from contact_exports_cli.exitcodes import ExitCode
from contact_exports_cli.main import app
from sandbox.testing import SandboxProcess
from tests.integration.chain import run_export
from tests.integration.conftest import BUCKET, TOKEN, ServicesFactory
from tests.integration.helpers import wait_until
from workers.constant_contact.tokens import AccountStore, Credentials, account_key, make_cipher

pytestmark = pytest.mark.integration

KEY = Fernet.generate_key().decode()
ACCESS = "cli-access-token-0d1e"
REFRESH = "cli-refresh-token-7f2a"
#: Accounts this module stores; removed again when it ends.
NAMES = ("cli-prompt", "cli-stdin", "cli-acme", "cli-bad")
DOWN = "redis://127.0.0.1:1/0"


@pytest.fixture(scope="module")
def env(worker_env: dict[str, str]) -> dict[str, str]:
    """The workers' own environment, with an encryption key for stored accounts."""
    return {**worker_env, "CC_TOKEN_ENCRYPTION_KEY": KEY, "COLUMNS": "250"}


@pytest.fixture(scope="module")
def store(redis_url: str) -> Iterator[AccountStore]:
    client = redis.Redis.from_url(redis_url)
    accounts = AccountStore(client, make_cipher(KEY))
    yield accounts
    for name in (*NAMES, "default"):  # the services below seeded default with this module's key
        accounts.remove(name)
    client.close()


def cli(env: dict[str, str], *args: str, input: str | None = None, **changes: str) -> Any:
    return CliRunner().invoke(app, list(args), input=input, env={**env, **changes})


def test_a_token_typed_at_the_prompt_is_stored_encrypted_and_never_shown(
    env: dict[str, str], store: AccountStore, redis_url: str
) -> None:
    done = cli(env, "accounts", "add", "cli-prompt", input=f"{ACCESS}\n{REFRESH}\n")
    assert done.exit_code == 0, done.output
    assert ACCESS not in done.output and REFRESH not in done.output
    assert "stored the credentials of account 'cli-prompt'" in done.stdout
    record = store.load("cli-prompt")
    assert record is not None
    assert (record.credentials.access_token, record.credentials.refresh_token) == (ACCESS, REFRESH)
    with redis.Redis.from_url(redis_url) as client:
        raw = client.hget(account_key("cli-prompt"), "secret")
    assert raw is not None and ACCESS.encode() not in raw and REFRESH.encode() not in raw


def test_tokens_on_stdin_replace_the_stored_ones(env: dict[str, str], store: AccountStore) -> None:
    first = cli(env, "accounts", "add", "cli-stdin", "--stdin", input="old-token\n")
    assert first.exit_code == 0, first.output
    body = json.dumps({"access_token": ACCESS, "expires_in": 3600})
    done = cli(env, "accounts", "add", "cli-stdin", "--stdin", input=body)
    assert done.exit_code == 0, done.output
    assert "replaced" in done.stdout and ACCESS not in done.output
    record = store.load("cli-stdin")
    assert record is not None
    assert (record.credentials.access_token, record.credentials.refresh_token) == (ACCESS, None)
    assert record.credentials.refresh_at is not None


def test_accounts_are_listed_without_their_tokens(env: dict[str, str]) -> None:
    listed = cli(env, "accounts", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {row["account"]: row for row in json.loads(listed.stdout)}
    assert rows["cli-prompt"]["state"] == "active"
    assert rows["cli-prompt"]["refresh_token"] is True
    assert rows["cli-stdin"]["refresh_token"] is False
    table = cli(env, "accounts", "list")
    assert table.exit_code == 0 and "cli-prompt" in table.stdout
    for shown in (listed.output, table.output):
        assert ACCESS not in shown and REFRESH not in shown


def test_bad_input_is_refused_with_exit_code_2(env: dict[str, str]) -> None:
    assert cli(env, "accounts", "add", "cli-empty", input="\n\n").exit_code == ExitCode.INVALID
    assert cli(env, "accounts", "add", "-bad name", "--stdin", input="t").exit_code == 2
    wrong_key = cli(env, "accounts", "list", CC_TOKEN_ENCRYPTION_KEY="not-a-fernet-key")
    assert wrong_key.exit_code == ExitCode.INVALID
    assert "CC_TOKEN_ENCRYPTION_KEY" in wrong_key.stderr


def test_an_account_removed_is_gone_and_removing_it_again_is_not_found(
    env: dict[str, str], store: AccountStore
) -> None:
    done = cli(env, "accounts", "remove", "cli-prompt", "--yes")
    assert done.exit_code == 0, done.output
    assert store.load("cli-prompt") is None
    assert "cli-prompt" not in store.names()
    again = cli(env, "accounts", "remove", "cli-prompt", "--yes")
    assert again.exit_code == ExitCode.NOT_FOUND


def test_a_worker_exports_with_an_account_the_command_line_stored(
    make_services: ServicesFactory, env: dict[str, str], store: AccountStore
) -> None:
    added = cli(
        env, "accounts", "add", "cli-acme", "--stdin", input=json.dumps({"access_token": TOKEN})
    )
    assert added.exit_code == 0, added.output
    services = make_services(cc_token_encryption_key=KEY)
    summary = run_export(services, {"account": "cli-acme", "export": {"status": "active"}})
    assert summary["account"] == "cli-acme"


def test_doctor_passes_when_everything_is_in_place(
    env: dict[str, str], sandbox: SandboxProcess, s3: Any
) -> None:
    before = len(sandbox.requests(endpoint="list_activities"))
    done = cli(env, "doctor", "--json", "--account", "default")
    assert done.exit_code == 0, done.output
    checks = {check["name"]: check for check in json.loads(done.stdout)}
    assert {c["outcome"] for c in checks.values()} == {"ok"}
    assert "Redis (broker, result backend, job records and accounts)" in checks
    assert f"{BUCKET} at " in checks["S3 bucket"]["detail"]
    assert checks["account default"]["outcome"] == "ok"
    # The sandbox logs a request once its answer is sent: the doctor may read it first.
    wait_until(lambda: len(sandbox.requests(endpoint="list_activities")) > before, 10.0)
    asked = sandbox.requests(endpoint="list_activities")[before:]
    assert [(e["method"], e["path"], e["status"]) for e in asked] == [
        ("GET", "/v3/activities", 200)
    ]
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=PROBE_PREFIX).get("KeyCount", 0) == 0
    shown = cli(env, "doctor", "--account", "default")
    assert shown.exit_code == 0 and "ok" in shown.stdout and TOKEN not in shown.output


def test_doctor_says_how_to_fix_a_missing_bucket_and_a_refused_token(
    env: dict[str, str], store: AccountStore
) -> None:
    store.put("cli-bad", Credentials("a-token-constant-contact-refuses", None))
    done = cli(
        env,
        "doctor",
        "--bucket",
        "no-such-bucket-cli",
        "--account",
        "cli-bad",
        "--account",
        "cli-ghost",
    )
    assert done.exit_code == ExitCode.CHECK_FAILED, done.output
    assert "bucket no-such-bucket-cli does not exist" in done.stdout
    assert "create it" in done.stdout
    assert "refused the access token (401)" in done.stdout
    assert "contact-exports accounts add cli-bad" in done.stdout
    assert "no credentials stored for account 'cli-ghost'" in done.stdout
    assert "a-token-constant-contact-refuses" not in done.output


def test_doctor_exits_3_when_redis_or_the_api_is_unreachable(env: dict[str, str]) -> None:
    redis_down = cli(env, "doctor", "--json", "--account", "default", CELERY_BROKER_URL=DOWN)
    assert redis_down.exit_code == ExitCode.UNREACHABLE, redis_down.output
    outcomes = {c["name"]: c["outcome"] for c in json.loads(redis_down.stdout)}
    assert outcomes["Redis (broker)"] == "unreachable"
    assert outcomes["Redis (result backend, job records and accounts)"] == "ok"

    api_down = cli(
        env, "doctor", "--json", "--account", "default", CC_API_BASE_URL="http://127.0.0.1:1/v3"
    )
    assert api_down.exit_code == ExitCode.UNREACHABLE, api_down.output
    [account] = [c for c in json.loads(api_down.stdout) if c["name"] == "account default"]
    assert account["outcome"] == "unreachable"
    assert "cannot reach the Constant Contact API" in account["detail"]


@pytest.mark.parametrize(
    ("status", "exit_code", "outcome", "says"),
    [
        (403, ExitCode.CHECK_FAILED, "problem", "may not read activities (403)"),
        (429, ExitCode.OK, "warning", "not checked"),
        (503, ExitCode.UNREACHABLE, "unreachable", "cannot reach the Constant Contact API"),
    ],
)
def test_doctor_tells_a_refusal_from_a_busy_or_failing_api(
    env: dict[str, str],
    sandbox: SandboxProcess,
    status: int,
    exit_code: ExitCode,
    outcome: str,
    says: str,
) -> None:
    # Every attempt the client makes in one check answers the same (it retries a 5xx itself).
    sandbox.add_faults({"endpoint": "list_activities", "status": status})
    done = cli(env, "doctor", "--json", "--account", "default")
    assert done.exit_code == exit_code, done.output
    [account] = [c for c in json.loads(done.stdout) if c["name"] == "account default"]
    assert account["outcome"] == outcome
    assert says in account["detail"]
    assert TOKEN not in done.output


def test_doctor_exits_3_when_s3_is_unreachable(env: dict[str, str]) -> None:
    done = cli(
        env, "doctor", "--json", "--account", "default", S3_ENDPOINT_URL="http://127.0.0.1:1"
    )
    assert done.exit_code == ExitCode.UNREACHABLE, done.output
    [bucket] = [c for c in json.loads(done.stdout) if c["name"] == "S3 bucket"]
    assert bucket["outcome"] == "unreachable"
    assert "cannot reach S3 at http://127.0.0.1:1" in bucket["detail"]
    assert "S3_ENDPOINT_URL" in bucket["fix"]

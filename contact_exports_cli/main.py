"""The ``contact-exports`` command: submit exports, follow them, fix what fails.

Every command ends with a documented exit code (``exitcodes.py``), prints data for scripts on
stdout (JSON, or a bare job id) and everything meant for people on stderr or as tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, ParamSpec

import redis
import typer
from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult
from rich.live import Live

from contact_exports_cli import accounts, doctor, render, views
from contact_exports_cli.connections import (
    Endpoints,
    close_app,
    connect_redis,
    reachable_app,
)
from contact_exports_cli.exceptions import (
    ExportFailedError,
    InvalidUsageError,
    NotFinishedError,
    NotFoundError,
)
from contact_exports_cli.exitcodes import EXIT_CODES_HELP, ExitCode
from contact_exports_cli.handling import handled
from contact_exports_cli.jobs import (
    JobFilter,
    in_flight,
    list_jobs,
    look_up,
    outcome,
    since_time,
)
from contact_exports_cli.request import Filters, Target, build_kwargs, split_commas, validate
from contact_exports_cli.settings import worker_settings
from contact_exports_client import (
    EXPORT_TASK,
    QUEUE,
    ExportResult,
    WaitTimeoutError,
    cancel_export,
    wait,
)
from contact_exports_client.signing import MessageSigning, Seals
from workers.export.deadletters import list_failed, rerun
from workers.state.jobs import JobState, JobStore

#: How long ``--wait`` waits unless ``--timeout`` says otherwise.
DEFAULT_WAIT_SECONDS = 3600.0
#: Celery states of a task that ended without a result.
FAILED_STATES = frozenset({"FAILURE", "REVOKED"})

app = typer.Typer(
    name="contact-exports",
    help="Export Constant Contact contacts to S3 through the contact-export workers.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    rich_markup_mode="rich",
    # Locals of a crashing frame may hold tokens: never print them.
    pretty_exceptions_show_locals=False,
)
app.add_typer(accounts.app, name="accounts", epilog=EXIT_CODES_HELP)

P = ParamSpec("P")


def command(name: str | None = None) -> Callable[[Callable[P, None]], Callable[P, None]]:
    """``@app.command`` with the exit codes in its help and its errors handled."""

    def register(function: Callable[P, None]) -> Callable[P, None]:
        app.command(name, epilog=EXIT_CODES_HELP)(handled(function))
        return function

    return register


# -- submit ----------------------------------------------------------------------------------


#: How long ``--wait`` waits, shared by every command that can wait.
WaitSeconds = Annotated[float, typer.Option(min=0.1, help="Seconds --wait waits.")]


@command()
def submit(
    list_id: Annotated[
        list[str] | None, typer.Option(help="A list's UUID (repeat for several).")
    ] = None,
    contact_id: Annotated[
        list[str] | None, typer.Option(help="A contact's UUID (repeat; up to 50,000).")
    ] = None,
    tag_id: Annotated[list[str] | None, typer.Option(help="A tag's UUID (repeat).")] = None,
    segment_id: Annotated[int | None, typer.Option(help="A segment's id.")] = None,
    status: Annotated[str | None, typer.Option(help="active, unsubscribed or removed.")] = None,
    field: Annotated[
        list[str] | None,
        typer.Option(help="A column to export (repeat, or comma-separated)."),
    ] = None,
    all_active: Annotated[bool, typer.Option("--all-active", help="Every active contact.")] = False,
    job_id: Annotated[
        str | None, typer.Option(help="Idempotency key; also the id to follow the job by.")
    ] = None,
    account: Annotated[str | None, typer.Option(help="Whose credentials (default).")] = None,
    bucket: Annotated[str | None, typer.Option(help="Bucket (default: S3_BUCKET).")] = None,
    key: Annotated[
        str | None,
        typer.Option(help="Object key, a template: {date}, {job_id}, ... (default: the workers')."),
    ] = None,
    sse: Annotated[str | None, typer.Option(help="AES256 or aws:kms.")] = None,
    kms_key_id: Annotated[str | None, typer.Option(help="The KMS key, with --sse aws:kms.")] = None,
    storage_class: Annotated[str | None, typer.Option(help="S3 storage class.")] = None,
    tag: Annotated[
        list[str] | None, typer.Option(help="An object tag, key=value (repeat; at most 10).")
    ] = None,
    format: Annotated[
        str | None,
        typer.Option("--format", help="csv (default), csv.gz, csv.zst, jsonl.gz or parquet."),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            help="JSON file with the task kwargs (schemas/export-task-kwargs.schema.json) or "
            "the export body alone; - reads stdin.",
        ),
    ] = None,
    wait_for_it: Annotated[
        bool, typer.Option("--wait", help="Show progress until the export ends; print its result.")
    ] = False,
    timeout: WaitSeconds = DEFAULT_WAIT_SECONDS,
) -> None:
    """Enqueue an export. Prints the job id, or with --wait the result as JSON.

    The request is checked here with the workers' own rules first: an invalid one is refused
    with the message the worker would give (exit code 2), and nothing is sent.
    With no filter flag, every contact is exported.
    """
    filters = Filters(
        list_ids=list_id or [],
        contact_ids=contact_id or [],
        tag_ids=tag_id or [],
        segment_id=segment_id,
        status=status,
        fields=split_commas(field),
        all_active=all_active,
    )
    target = Target(
        job_id, account, bucket, key, sse, kms_key_id, storage_class, tuple(tag or ()), format
    )
    kwargs = build_kwargs(filters, target, file)
    validate(kwargs)
    celery = reachable_app(Endpoints.from_env())
    try:
        result = celery.send_task(EXPORT_TASK, kwargs=kwargs, queue=QUEUE)
        job = str(kwargs.get("job_id") or result.id)
        if not wait_for_it:
            render.note(f"submitted job {job}; follow it with: contact-exports status {job}")
            render.stdout().print(job)
            return
        summary = follow(result, job, timeout)
    finally:
        close_app(celery)
    render.print_json(summary)


def follow(result: AsyncResult[Any], job_id: str, timeout: float) -> ExportResult:
    """Show the export's progress until it ends; its result, or the worker's error."""
    with render.export_progress(job_id) as bar:
        try:
            summary = wait(result, timeout=timeout, on_progress=bar)
        except WaitTimeoutError as error:
            bar.finish("waiting")
            raise NotFinishedError(str(error), hint=f"contact-exports status {job_id}") from None
        except KeyboardInterrupt:
            bar.finish("waiting")
            raise NotFinishedError(
                f"stopped waiting; export {job_id} goes on in the workers",
                hint=f"contact-exports result {job_id} --wait",
            ) from None
        except Exception as error:
            if result.state not in FAILED_STATES:
                raise  # not the worker's error: a connection lost on our side
            bar.finish("failed")
            raise ExportFailedError(type(error).__name__, str(error), job_id=job_id) from None
        bar.finish("stored")
    return summary


# -- status, result, watch -------------------------------------------------------------------

JobId = Annotated[str, typer.Argument(help="The job id (what submit printed).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@contextmanager
def services() -> Iterator[tuple[redis.Redis, Celery]]:
    """The Redis of the job records and the Celery client, both answering; closed after."""
    endpoints = Endpoints.from_env()
    celery = reachable_app(endpoints)
    try:
        client = connect_redis(endpoints.jobs_url, "job records")
        try:
            yield client, celery
        finally:
            client.close()
    finally:
        close_app(celery)


@command()
def jobs(
    state: Annotated[
        list[JobState] | None, typer.Option("--state", help="Only jobs in this state (repeat).")
    ] = None,
    account: Annotated[str | None, typer.Option(help="Only this account's jobs.")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only jobs begun since: 30m, 2h, 7d, or an ISO 8601 time."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 50,
    as_json: AsJson = False,
) -> None:
    """Recent jobs, newest first: state, account, format, key, rows and age."""
    wanted = JobFilter(
        states=frozenset(s.value for s in state) if state else None,
        account=account,
        since=since_time(since, time.time()) if since else None,
    )
    endpoints = Endpoints.from_env()
    client = connect_redis(endpoints.jobs_url, "job records")
    try:
        found = list_jobs(client, wanted, limit)
    finally:
        client.close()
    if as_json:
        render.print_json(found)
    else:
        render.stdout().print(views.jobs(found))


#: Seconds ``cancel`` waits for the cancel task when no worker answered its remote control.
CANCEL_ANSWER_SECONDS = 30.0


@command()
def cancel(job_id: JobId, as_json: AsJson = False) -> None:
    """Cancel a job on its way: nothing is stored, and its result fails as ExportCancelled.

    A job that ended, one cancelled already, or an unknown id is left as it is (exit code 0,
    and 4 for an unknown id); the answer says which. A running worker answers at once (its
    remote control); with none, the task waits in the queue for one.
    """
    celery = reachable_app(Endpoints.from_env())
    try:
        answer = cancel_export(job_id, app=celery)
        try:
            found: dict[str, Any] = answer.get(timeout=CANCEL_ANSWER_SECONDS)
        except CeleryTimeoutError:
            raise NotFinishedError(
                f"no worker answered the cancel of {job_id} within {CANCEL_ANSWER_SECONDS:.0f}s",
                hint="it stays queued and is carried out when a worker takes it",
            ) from None
    finally:
        close_app(celery)
    if as_json:
        render.print_json(found)
    else:
        render.stdout().print(CANCEL_MESSAGES[found["outcome"]].format(job=job_id))
    if found["outcome"] == "unknown":
        raise typer.Exit(ExitCode.NOT_FOUND)


CANCEL_MESSAGES = {
    "cancelled": "job {job} cancelled: nothing will be stored",
    "cancelled already": "job {job} was cancelled already; nothing changed",
    "completed": "job {job} had completed; nothing changed",
    "failed": "job {job} had failed; nothing changed",
    "unknown": "no job {job}; nothing changed",
}


@command()
def status(job_id: JobId, as_json: AsJson = False) -> None:
    """The job's record (state, attempts, activity, error) and its Celery state."""
    with services() as (client, celery):
        view = look_up(JobStore(client), celery, job_id)
    if as_json:
        render.print_json(view.to_json())
    else:
        render.stdout().print(views.job(view))


@command()
def result(
    job_id: JobId,
    wait_for_it: Annotated[
        bool, typer.Option("--wait", help="Wait for a job still running.")
    ] = False,
    timeout: WaitSeconds = DEFAULT_WAIT_SECONDS,
) -> None:
    """The result dict of a finished job, as JSON (docs/contract.md §2)."""
    with services() as (client, celery):
        view = look_up(JobStore(client), celery, job_id)
        summary: Mapping[str, Any]
        try:
            summary = outcome(view)
        except NotFinishedError:
            if not wait_for_it:
                raise
            if not view.celery.known and view.record.get("state") != JobState.QUEUED:
                raise NotFinishedError(
                    f"job {job_id} runs under another Celery task id: it cannot be waited for",
                    hint="contact-exports watch shows its progress",
                ) from None
            summary = follow(AsyncResult(job_id, app=celery), job_id, timeout)
    render.print_json(summary)


@command()
def watch(
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Show one snapshot and exit.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON array (per refresh, one a line).")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many jobs.")] = 50,
) -> None:
    """A live table of the jobs in flight (queued, creating, polling, downloading). Ctrl-C stops."""
    with services() as (client, celery):

        def snapshot() -> list[dict[str, Any]]:
            return in_flight(client, celery, limit)

        if as_json:
            _repeat(lambda: render.print_json(snapshot(), indent=None), interval, once)
        elif once:
            render.stdout().print(views.in_flight(snapshot()))
        else:
            console = render.stdout()
            with Live(views.in_flight(snapshot()), console=console, auto_refresh=False) as live:
                _repeat(lambda: live.update(views.in_flight(snapshot()), refresh=True), interval)


def _repeat(step: Callable[[], None], interval: float, once: bool = False) -> None:
    """Run ``step`` now and every ``interval`` seconds until Ctrl-C (a display refresh: there
    is no event to wait for, job records change without telling anyone)."""
    try:
        while True:
            step()
            if once:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return


# -- dead letters ----------------------------------------------------------------------------


@command()
def failed(
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 100,
    as_json: AsJson = False,
) -> None:
    """Jobs that failed for good (dead letters), newest first; `retry` runs one again."""
    endpoints = Endpoints.from_env()
    client = connect_redis(endpoints.jobs_url, "job records")
    try:
        letters = list_failed(JobStore(client), limit)
    finally:
        client.close()
    if as_json:
        render.print_json(letters)
    else:
        render.stdout().print(views.dead_letters(letters))


@command()
def retry(
    job_id: JobId,
    wait_for_it: Annotated[
        bool, typer.Option("--wait", help="Show progress until it ends; print its result.")
    ] = False,
    timeout: WaitSeconds = DEFAULT_WAIT_SECONDS,
) -> None:
    """Run a failed job again with its original request, under the same job id."""
    with services() as (client, celery):
        store = JobStore(client)
        state = store.record(job_id).get("state")
        if state != JobState.FAILED:
            raise NotFoundError(
                f"no failed job {job_id!r}" + (f": it is {state}" if state else ""),
                hint="contact-exports failed lists the jobs that can be retried",
            )
        signing = MessageSigning.from_env()  # then the request must carry a trusted seal
        seals = Seals(signing.trusted) if signing else None
        # The failure stored under the job's id is the last run's; the rerun reports there.
        AsyncResult(job_id, app=celery).forget()
        try:
            sent = rerun(store, celery, job_id, seals)
        except KeyError:
            raise NotFoundError(f"no failed job {job_id!r}") from None
        except PermissionError as refused:
            raise InvalidUsageError(
                str(refused),
                hint="set MESSAGE_SIGNING_TRUSTED to the certificates the workers trust",
            ) from None
        if not wait_for_it:
            render.note(f"job {job_id} queued again; follow it: contact-exports status {job_id}")
            render.stdout().print(job_id)
            return
        summary = follow(sent, job_id, timeout)
    render.print_json(summary)


# -- doctor ----------------------------------------------------------------------------------


@command("doctor")
def doctor_command(
    bucket: Annotated[
        str | None, typer.Option(help="Bucket to check (default: S3_BUCKET).")
    ] = None,
    account: Annotated[
        list[str] | None, typer.Option(help="Check only this account (repeat).")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Check Redis, the bucket (a probe object is put and deleted) and each account's token
    against the API, with the workers' settings; say what is wrong and how to fix it."""
    settings = worker_settings()
    checks = doctor.run(settings, bucket=bucket, accounts=account or [])
    if as_json:
        render.print_json(doctor.report(checks))
    else:
        for check in checks:
            render.stdout().print(views.check(check))
    code = doctor.exit_code(checks)
    if code is not ExitCode.OK:
        raise typer.Exit(int(code))


__all__ = ["app"]

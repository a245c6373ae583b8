"""How every command ends on an error: one line for people, one exit code for scripts."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec

import kombu.exceptions
import redis
import typer

from contact_exports_cli import render
from contact_exports_cli.exceptions import CliError
from contact_exports_cli.exitcodes import ExitCode

P = ParamSpec("P")

#: Raised when Redis goes away after a command reached it (first contact is checked apart).
CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, kombu.exceptions.OperationalError)


def handled(command: Callable[P, None]) -> Callable[P, None]:
    """Turn the errors a command ends with into a message and its exit code, no traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except CliError as error:
            render.error(error.message, error.hint)
            raise typer.Exit(int(error.code)) from None
        except CONNECTION_ERRORS as error:
            render.error(
                f"lost the connection to Redis: {error}",
                "check that Redis is up, then run the command again",
            )
            raise typer.Exit(int(ExitCode.UNREACHABLE)) from None

    return run

"""Errors a command ends with; each carries the exit code a script sees.

CliError
├── InvalidUsageError        2  bad flags, an invalid request or configuration
├── ExportFailedError        1  (2 for InvalidExportRequest) the worker raised
├── ServiceUnreachableError  3  Redis, S3 or the API did not answer
├── NotFoundError            4  no such job, failed job or account
└── NotFinishedError         5  the job is still running
"""

from __future__ import annotations

from contact_exports_cli.exitcodes import ExitCode


class CliError(Exception):
    """A message for the operator (never a token) and the exit code."""

    code = ExitCode.INVALID

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class InvalidUsageError(CliError):
    code = ExitCode.INVALID


class ExportFailedError(CliError):
    """The worker's error, by its contract name; an invalid request stays a usage error."""

    def __init__(self, error_type: str, message: str, *, job_id: str) -> None:
        super().__init__(f"export {job_id} failed: {error_type}: {message}")
        self.error_type = error_type
        self.code = (
            ExitCode.INVALID if error_type == "InvalidExportRequest" else ExitCode.EXPORT_FAILED
        )


class ServiceUnreachableError(CliError):
    code = ExitCode.UNREACHABLE


class NotFoundError(CliError):
    code = ExitCode.NOT_FOUND


class NotFinishedError(CliError):
    code = ExitCode.NOT_FINISHED

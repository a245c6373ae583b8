"""The exit codes of every command: scripts branch on them, so they never change meaning."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    #: The command did what it was asked.
    OK = 0
    #: The export ran and failed: ActivityFailed, ExportTimedOut, ConstantContactError,
    #: StorageError, ExportCancelled (docs/contract.md §3).
    EXPORT_FAILED = 1
    #: Bad usage, an invalid export request (refused locally, or InvalidExportRequest from the
    #: worker) or invalid configuration.
    INVALID = 2
    #: A service did not answer: Redis, S3 or the Constant Contact API.
    UNREACHABLE = 3
    #: No such job, failed job or account.
    NOT_FOUND = 4
    #: The job has not finished: still running, or ``--wait`` gave up after ``--timeout``.
    NOT_FINISHED = 5
    #: ``doctor`` reached every service and found something wrong (a missing bucket, a token
    #: Constant Contact refuses, ...).
    CHECK_FAILED = 6


#: The table printed under ``--help`` and kept in the README.
EXIT_CODES_HELP = "\n\n".join(
    [
        "[b]Exit codes[/b]",
        "0  ok",
        "1  the export failed (ActivityFailed, ExportTimedOut, ConstantContactError, StorageError,"
        " ExportCancelled)",
        "2  usage error, invalid export request (InvalidExportRequest) or invalid configuration",
        "3  a service is unreachable (Redis, S3, the Constant Contact API)",
        "4  not found (job, failed job, account)",
        "5  not finished yet (still running, or --wait timed out)",
        "6  doctor found a problem in a reachable service",
    ]
)

"""A typed helper for Python applications that enqueue contact exports.

It needs Celery and the broker's URL, nothing of the worker: no Constant Contact credentials, no
import of ``workers`` or ``tasks``. Applications that cannot import this package send the task by
name instead (docs/contract.md §1, ``examples/enqueue_export.py``).

    from contact_exports_client import submit_export, wait

    result = submit_export({"list_ids": [LIST], "fields": ["email_address"]}, job_id="crm-1")
    summary = wait(result, timeout=3600, on_progress=lambda p: print(p["stage"]))
"""

from contact_exports_client.client import (
    CANCEL_TASK,
    DEFAULT_REDIS_URL,
    EXPORT_TASK,
    PROGRESS,
    QUEUE,
    ProgressCallback,
    Snapshot,
    WaitTimeoutError,
    cancel_export,
    export_kwargs,
    make_app,
    snapshot,
    submit_export,
    wait,
)
from contact_exports_client.types import (
    Destination,
    ExportBody,
    ExportKwargs,
    ExportResult,
    Progress,
)

__all__ = [
    "CANCEL_TASK",
    "DEFAULT_REDIS_URL",
    "EXPORT_TASK",
    "PROGRESS",
    "QUEUE",
    "Destination",
    "ExportBody",
    "ExportKwargs",
    "ExportResult",
    "Progress",
    "ProgressCallback",
    "Snapshot",
    "WaitTimeoutError",
    "cancel_export",
    "export_kwargs",
    "make_app",
    "snapshot",
    "submit_export",
    "wait",
]

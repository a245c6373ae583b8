"""The names of the service's Celery tasks, and the stage each export step reports.

Names are what callers and workers agree on (docs/contract.md §1); the task functions behind
them live in ``tasks/``. The workers send the side tasks by name, never by import.
"""

from __future__ import annotations

from enum import StrEnum

from contact_exports_client.client import EXPORT_TASK

CREATE_TASK = "contact_exports.create_export"
POLL_TASK = "contact_exports.poll_activity"
DOWNLOAD_TASK = "contact_exports.download_csv"
SEAL_TASK = "contact_exports.seal"
NOTIFY_TASK = "contact_exports.notify"


class Stage(StrEnum):
    """What an export is doing: PROGRESS ``stage``, log context and the stage metric."""

    VALIDATING = "validating"
    CREATING = "creating"
    POLLING = "polling"
    DOWNLOADING = "downloading"


#: The stage each step of the chain runs.
STAGES: dict[str, Stage] = {
    EXPORT_TASK: Stage.VALIDATING,
    CREATE_TASK: Stage.CREATING,
    POLL_TASK: Stage.POLLING,
    DOWNLOAD_TASK: Stage.DOWNLOADING,
}

"""Every error the service raises, in one place.

The six leaf names marked (contract) are part of the public interface (docs/contract.md §3):
applications that never import this project see them as ``type(exc).__name__`` after Celery
rebuilds the exception from its JSON form. Celery rebuilds an exception by calling its class with
the stored ``args``, so every class here keeps a single message string in ``args`` and any extra
context in attributes with defaults.

    ExportError
    ├── InvalidExportRequest    (contract) the request breaks a rule; no API call was made
    ├── ActivityFailed          (contract) the activity ended failed, cancelled or timed out
    ├── ExportTimedOut          (contract) the deadline passed before the activity completed
    ├── ConstantContactError    (contract) a non-retryable API answer
    │   ├── HeaderTooLong       a results "CSV" whose header never ends
    │   └── ConversionError     a value that does not fit its column's type (the formats)
    ├── StorageError            (contract) the object could not be written
    │   ├── ObjectChanged       the object to seal is gone or was replaced since it was stored
    │   └── StreamRefused       the store does not take a streaming PUT (the download sends parts)
    ├── ExportCancelled         (contract) cancelled (contact_exports.cancel); nothing stored
    └── TransientError          worth retrying: 429, 5xx, timeouts, dropped connections
        ├── TransientApiError   the API answered with a retryable status
        ├── BodyIncomplete      the results body ended early or broke mid-stream
        └── RateLimited         the cluster's request budget is spent for now (a wait, not a
                                failure: it uses up no attempt)
    LeaseHeld                   another delivery runs this step now (control flow, never stored)
    ConfigurationError          a SystemExit: the settings are invalid, the process stops

A failure reaches a caller only under one of the six contract names: ``public_error`` turns
anything else (a subclass, a transient error whose retries ran out, a bug) into the contract
type that fits the step it happened in, keeping its message.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum


class ExportError(Exception):
    """Base of every error this service raises on purpose."""


class InvalidExportRequest(ExportError):  # noqa: N818 — the name is part of docs/contract.md §3
    """The export request breaks a rule of the API or of this service."""


class ActivityFailed(ExportError):  # noqa: N818 — contract name
    """Constant Contact ended the export activity in a state other than completed."""

    def __init__(
        self,
        message: str,
        *,
        activity_id: str | None = None,
        state: str | None = None,
        activity_errors: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.activity_id = activity_id
        self.state = state
        self.activity_errors = list(activity_errors)


class ExportTimedOut(ExportError):  # noqa: N818 — contract name
    """The activity did not complete before the export's deadline."""


class ConstantContactError(ExportError):
    """A non-retryable answer from the Constant Contact API (or a link we refuse to follow)."""

    def __init__(self, message: str, *, status: int | None = None, error_key: str | None = None):
        super().__init__(message)
        self.status = status
        self.error_key = error_key


class StorageError(ExportError):
    """The object could not be written; nothing partial is left behind.

    ``permanent`` marks an answer no retry changes (access denied, no such bucket): the one
    retry policy gives up on it at once instead of spending its attempts.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class ExportCancelled(ExportError):  # noqa: N818 — contract name
    """The export was cancelled (``contact_exports.cancel``) before it was stored."""


class HeaderTooLong(ConstantContactError):  # noqa: N818 — reads as the condition it reports
    """A results file with no end of its header record within the bound we hold in memory."""


class ConversionError(ConstantContactError):
    """A results CSV that a typed format cannot hold: a value that does not fit its column's
    type, or a row whose fields do not match the header. Retrying reads the same answer, so it
    fails the export, naming the row, rather than storing a value wrong."""


class ObjectChanged(StorageError):  # noqa: N818 — reads as the condition it reports
    """The object a seal names is gone, or another upload replaced it (its ETag differs)."""


class StreamRefused(StorageError):  # noqa: N818 — reads as the condition it reports
    """The store does not take one streaming PUT (``workers.s3.streamput``): it refused the
    aws-chunked request, or stored its framing as the object's content. The process sends that
    store parts from then on (``workers.s3.objectmeta.EncodingCheck``); never a job's failure."""


class TransientError(ExportError):
    """A failure that a later attempt may not meet; ``retry_after`` is a hint in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientApiError(TransientError):
    """The API answered 429 or a 5xx."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_key: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status
        self.error_key = error_key


class BodyIncomplete(TransientError):  # noqa: N818 — reads as the condition it reports
    """The CSV body was shorter than announced or its stream broke."""


class WaitReason(StrEnum):
    """Why the request budget says wait (``RateLimited.reason``)."""

    THROTTLED = "throttled"  # the per-second budget is taken for now
    QUOTA = "quota"  # the daily budget is spent until 00:00 UTC


class RateLimited(TransientError):  # noqa: N818 — reads as the condition it reports
    """The shared request budget (per second or per day) is spent for now.

    Raised before a request is sent (the limiter said wait longer than is sensible in place) or
    when Constant Contact answered 429 ``quota_exceeded``. ``reason`` is ``"throttled"`` (come
    back in ``retry_after`` seconds: a slot is expected then) or ``"quota"`` (the daily budget is
    spent until ``resumes_at``, 00:00 UTC, ISO 8601). Waiting for budget is not a failure: it
    uses up none of the export's retry attempts (``workers.retry``).
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        reason: str = WaitReason.THROTTLED,
        resumes_at: str | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.reason = reason
        self.resumes_at = resumes_at


class LeaseHeld(Exception):  # noqa: N818 — reads as the condition it reports
    """Someone else holds the lease; ``ttl`` says how long it has left, in seconds.

    Control flow between a step and its task (come back soon), never a job's failure.
    """

    def __init__(self, key: str, ttl: float) -> None:
        super().__init__(f"{key} is held by another worker for up to {ttl:.1f}s")
        self.ttl = ttl


class ConfigurationError(SystemExit):
    """Raised at start-up; a SystemExit so the worker stops with the message and nothing else."""


#: The failure types a caller may see (docs/contract.md §3), most specific first.
CONTRACT_ERRORS: tuple[type[ExportError], ...] = (
    InvalidExportRequest,
    ActivityFailed,
    ExportTimedOut,
    ConstantContactError,
    StorageError,
    ExportCancelled,
)


def public_error(error: BaseException, *, storing: bool) -> ExportError:
    """``error`` as the caller may see it: one of the six contract types, with its message.

    A contract type passes as it is; a subclass becomes its contract parent (Celery stores the
    exact class name, and ``ObjectChanged`` means nothing to a caller). Anything else — a
    transient error whose retries ran out, a bug — is a ``StorageError`` if it happened while
    ``storing`` the object, else a ``ConstantContactError``: the two outside systems a step
    talks to.
    """
    if type(error) in CONTRACT_ERRORS:
        assert isinstance(error, ExportError)
        return error
    for kind in CONTRACT_ERRORS:
        if isinstance(error, kind):
            return kind(str(error))
    kind = StorageError if storing else ConstantContactError
    return kind(f"{type(error).__name__}: {error}")

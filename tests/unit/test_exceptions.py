"""What a caller sees of a failure: always one of the five contract types (docs/contract.md §3),
with the message of what happened.

Guards 550567c, where a failure reached the caller under whatever name it was raised with: a
``HeaderTooLong`` (then a ValueError), an ``ObjectChanged``, a bug's ``ValueError``.
"""

from __future__ import annotations

import pytest

from workers.exceptions import (
    CONTRACT_ERRORS,
    ActivityFailed,
    ConstantContactError,
    ExportError,
    ExportTimedOut,
    HeaderTooLong,
    InvalidExportRequest,
    LeaseHeld,
    ObjectChanged,
    RateLimited,
    StorageError,
    TransientApiError,
    public_error,
)

CONTRACT = [
    InvalidExportRequest("export.list_ids: not a UUID"),
    ActivityFailed("activity a1 ended failed: bad list", activity_id="a1", state="failed"),
    ExportTimedOut("job j1: the deadline passed"),
    ConstantContactError("GET /v3/activities/a1: 404", status=404),
    StorageError("S3 copy failed", permanent=True),
]


@pytest.mark.parametrize("storing", [False, True])
@pytest.mark.parametrize("error", CONTRACT, ids=lambda e: type(e).__name__)
def test_a_contract_error_passes_as_it_is(error: ExportError, storing: bool) -> None:
    assert public_error(error, storing=storing) is error


@pytest.mark.parametrize(
    ("error", "public"),
    [
        (ObjectChanged("s3://b/k.csv changed before it was sealed: 412"), StorageError),
        (HeaderTooLong("no end of header within 1048576 bytes"), ConstantContactError),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else type(value).__name__,
)
def test_a_subclass_becomes_its_contract_parent_with_its_message(
    error: ExportError, public: type[ExportError]
) -> None:
    for storing in (False, True):
        shown = public_error(error, storing=storing)
        assert type(shown) is public
        assert str(shown) == str(error)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        TransientApiError("GET /v3/activities/a1: 503", status=503),
        RateLimited("the daily quota is spent", retry_after=60.0),
        LeaseHeld("contact_exports:job:j1/lease/download", ttl=12.0),
    ],
    ids=lambda e: type(e).__name__,
)
def test_anything_else_is_blamed_on_the_system_the_step_talked_to(error: Exception) -> None:
    """While storing the object, S3; otherwise Constant Contact. The message names the error."""
    stored = public_error(error, storing=True)
    talked = public_error(error, storing=False)
    assert type(stored) is StorageError and type(talked) is ConstantContactError
    for shown in (stored, talked):
        assert str(shown) == f"{type(error).__name__}: {error}"


@pytest.mark.parametrize(
    "error",
    [*CONTRACT, ObjectChanged("gone"), HeaderTooLong("long"), ValueError("bug")],
    ids=lambda e: type(e).__name__,
)
def test_what_a_caller_sees_survives_celerys_rebuild(error: Exception) -> None:
    """Celery stores the class name and ``args`` and rebuilds the exception from them."""
    shown = public_error(error, storing=False)
    assert type(shown) in CONTRACT_ERRORS
    rebuilt = type(shown)(*shown.args)
    assert type(rebuilt) is type(shown) and str(rebuilt) == str(shown)

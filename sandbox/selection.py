"""Which contacts an export contains, and in what order.

Filters are evaluated on :class:`~sandbox.contacts.Traits` (one hash per contact),
so scanning millions of contacts stays cheap and only matching rows are built.
With ``contact_ids`` the rows follow request order, because clients that shard a
large id list and merge the results rely on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sandbox.contacts import ContactStatus, ContactUniverse, Traits
from sandbox.exportspec import ExportSpec

MAX_NAMED_UNKNOWN_IDS = 20
"""activity_errors name at most this many unknown ids, then give a count, to stay readable."""


def _unknown(kind: str, ids: Sequence[str]) -> list[str]:
    if not ids:
        return []
    named = ", ".join(ids[:MAX_NAMED_UNKNOWN_IDS])
    more = len(ids) - MAX_NAMED_UNKNOWN_IDS
    suffix = f" (and {more} more)" if more > 0 else ""
    return [f"Invalid {kind}: {named}{suffix}"]


def unknown_references(universe: ContactUniverse, spec: ExportSpec) -> list[str]:
    """Messages for well-formed ids that name nothing; they make the activity fail.

    Unknown ``exclude.contact_ids`` are ignored: excluding a contact that does not
    exist changes nothing, so it is no reason to fail the export.
    """
    errors: list[str] = []
    if spec.contact_ids is not None:
        bad = [c for c in spec.contact_ids if universe.index_of(c) is None]
        errors += _unknown("contact_id values", bad)
    if spec.list_ids is not None:
        errors += _unknown(
            "list_id values", [x for x in spec.list_ids if universe.list_index(x) is None]
        )
    if spec.tag_ids is not None:
        errors += _unknown(
            "tag_id values", [x for x in spec.tag_ids if universe.tag_index(x) is None]
        )
    if spec.segment_id is not None and spec.segment_id not in universe.segments:
        errors += [f"Invalid segment_id: {spec.segment_id}"]
    if not spec.fields:
        errors += ["None of the requested fields can be exported"]
    return errors


def candidates(universe: ContactUniverse, spec: ExportSpec) -> Sequence[int]:
    """Indices to examine, in output order; assumes :func:`unknown_references` found nothing."""
    if spec.contact_ids is None:
        return range(universe.size)
    indices = (universe.index_of(c) for c in spec.contact_ids)
    return [i for i in indices if i is not None]


def _mask(positions: Sequence[int | None]) -> int:
    return sum(1 << p for p in positions if p is not None)


def make_filter(universe: ContactUniverse, spec: ExportSpec) -> Callable[[Traits], bool] | None:
    """A predicate over traits combining the criteria in ``spec``; None when all contacts match.

    Only the criteria present are checked, since this runs once per contact of a full scan.
    """
    checks: list[Callable[[Traits], bool]] = []
    status = ContactStatus.ACTIVE if spec.all_active_contacts else spec.status
    if status is not None:
        checks.append(lambda t: t.status is status)
    if spec.list_ids is not None:
        lists = _mask([universe.list_index(x) for x in spec.list_ids])
        checks.append(lambda t: bool(t.lists & lists))
    if spec.tag_ids is not None:
        tags = _mask([universe.tag_index(x) for x in spec.tag_ids])
        checks.append(lambda t: bool(t.tags & tags))
    if spec.segment_id is not None:
        segment = spec.segment_id
        checks.append(lambda t: universe.in_segment(t, segment))
    if spec.new_subscriber:
        checks.append(universe.is_new_subscriber)
    if spec.exclude_contact_ids:
        excluded = {universe.index_of(c) for c in spec.exclude_contact_ids} - {None}
        checks.append(lambda t: t.index not in excluded)
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    return lambda t: all(check(t) for check in checks)

"""Property tests: the request model against the rules, written out a second time here.

The table below is this test's own reading of the spec (``ContactsExport``), the export guide
and the README's service rules. It imports none of the model's constants, so a rule dropped
from ``workers/export/request.py``, or a cap changed there, shows up as a generated body on
which the model and this table disagree. Hypothesis generates bodies of two kinds: anything (most of
them invalid in one or several ways) and bodies built to be valid.

For every body the model must (1) accept it exactly when the table finds nothing wrong, (2)
otherwise raise InvalidExportRequest naming every field the table faults (or, when only
combinations are wrong, every refused pair), (3) for valid bodies, pass the body on unchanged,
list the unknown fields and cut the right shards, each of which the sandbox (an independent
emulator of the API) accepts, and (4) agree with the committed JSON Schema.
"""

from __future__ import annotations

import json
import math
import uuid
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from sandbox.exportspec import ExportValidationError, parse_export_request
from workers.exceptions import InvalidExportRequest
from workers.export.request import ExportRequest, parse_job_request

# -- The rules, from the spec and the guide ------------------------------------------------

#: ContactsExport ``maxItems`` (exclude.contact_ids: "Excludes up to 50 specified contacts").
API_CAPS = {"contact_ids": 500, "list_ids": 50, "tag_ids": 50, "exclude.contact_ids": 50}
#: The service's cap on one job's contact ids, sent as several requests of API_CAPS (README).
JOB_CONTACT_IDS = 50_000
#: The guide: "Possible status values are active, unsubscribed, or removed."
STATUSES = ("active", "unsubscribed", "removed")
#: Every pair of filters the spec allows together ("mutually exclusive with all other filtering
#: criteria except ..."): a pair is allowed when either description names the other.
COMPATIBLE = {
    frozenset(pair)
    for pair in (
        ("contact_ids", "status"),
        ("list_ids", "status"),
        ("list_ids", "exclude"),
        ("new_subscriber", "list_ids"),
        ("new_subscriber", "exclude"),
    )
}
FILTERS = (
    "contact_ids",
    "list_ids",
    "tag_ids",
    "segment_id",
    "new_subscriber",
    "all_active_contacts",
    "status",
    "exclude",
)
FLAGS = ("new_subscriber", "all_active_contacts")
#: The guide's field list, plus the SMS fields the issue adds.
DOCUMENTED_FIELDS = [
    "first_name",
    "last_name",
    "email_address",
    "email_lists",
    "phone_number",
    "company_name",
    "job_title",
    "social_profiles",
    "website",
    "notes",
    "street",
    "city",
    "state",
    "zip",
    "country",
    "anniversary",
    "birthday",
    "birthday_day",
    "birthday_month",
    "source_name",
    "created_at",
    "updated_at",
    "email_optin",
    "email_permission",
    "email_optin_source",
    "email_optin_date",
    "email_optout_date",
    "email_optout_source",
    "email_optout_reason",
    "sms_number",
    "sms_consent_date",
    "sms_status",
]
#: The guide: "You must export email_address to successfully export ..."
NEED_EMAIL = ("email_optin_source", "email_optin_date", "email_optout_source")
NEED_EMAIL += ("email_optout_date", "email_optout_reason")
LONGEST_FIELD_NAME = 100  # README: this service's bound on a passed-on name
OLD_SEGMENT = "segment_ids"  # the guide's spelling
BODY_KEYS = (*FILTERS, "fields", OLD_SEGMENT)
HEX = set("0123456789abcdefABCDEF")

KWARGS_SCHEMA = json.loads(
    (Path(__file__).parents[2] / "schemas" / "export-task-kwargs.schema.json").read_text()
)
KWARGS_VALIDATOR = Draft202012Validator(KWARGS_SCHEMA)
SCHEMA_CHECK_MAX_IDS = 2_000


def is_uuid(value: str) -> bool:
    """Canonical 8-4-4-4-12 hex, nothing around it (the spec's ``format: uuid``)."""
    groups = value.split("-")
    return [len(g) for g in groups] == [8, 4, 4, 4, 12] and all(set(g) <= HEX for g in groups)


def id_list_faults(name: str, value: Any, cap: int) -> list[str]:
    if not isinstance(value, list):
        return [name]
    if not value or len(value) > cap:
        return [name]
    if not all(isinstance(v, str) and is_uuid(v) for v in value):
        return [name]
    if len({v.lower() for v in value}) != len(value):
        return [name]
    return []


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def field_faults(fields: Any) -> list[str]:
    if not isinstance(fields, list) or not fields:
        return ["fields"]
    if not all(isinstance(f, str) and 1 <= len(f) <= LONGEST_FIELD_NAME for f in fields):
        return ["fields"]
    if len(set(fields)) != len(fields):
        return ["fields"]
    if set(NEED_EMAIL) & set(fields) and "email_address" not in fields:
        return ["fields"]
    return []


def value_faults(key: str, value: Any) -> list[str]:
    """The fields a single key's value breaks, by the table above (``None`` is absent)."""
    if key not in BODY_KEYS:
        return [key]  # not a key of the request at all, whatever its value
    if value is None:
        return []
    if key in ("contact_ids", "list_ids", "tag_ids"):
        return id_list_faults(
            key, value, JOB_CONTACT_IDS if key == "contact_ids" else API_CAPS[key]
        )
    if key in ("segment_id", OLD_SEGMENT):
        return [] if is_int(value) and value >= 1 else ["segment_id"]
    if key in FLAGS:
        return [] if isinstance(value, bool) else [key]
    if key == "status":
        return [] if value in STATUSES else [key]
    if key == "exclude":
        if not isinstance(value, dict) or set(value) != {"contact_ids"}:
            return ["exclude"]
        cap = API_CAPS["exclude.contact_ids"]
        return ["exclude"] if id_list_faults("exclude", value["contact_ids"], cap) else []
    return field_faults(value)


def faults(body: dict[str, Any]) -> list[str]:
    """Fields with a problem of their own; ``segment_id`` alone if both spellings are given."""
    if "segment_id" in body and OLD_SEGMENT in body:
        return ["segment_id"]
    return [name for key, value in body.items() for name in value_faults(key, value)]


def refused_pairs(body: dict[str, Any]) -> list[tuple[str, str]]:
    """Filters used together that the spec does not allow together (false flags are absent)."""
    present = [
        name
        for name in FILTERS
        if body.get(OLD_SEGMENT if name == "segment_id" and OLD_SEGMENT in body else name)
        not in (None, False)
    ]
    return [pair for pair in combinations(present, 2) if frozenset(pair) not in COMPATIBLE]


# -- Generators --------------------------------------------------------------------------

ABSENT = object()
ID_COUNTS = {
    "contact_ids": [0, 1, 2, 7, 499, 500, 501, 1_001, 50_000, 50_001],
    "list_ids": [0, 1, 3, 49, 50, 51],
    "tag_ids": [0, 1, 3, 49, 50, 51],
    "exclude": [0, 1, 2, 50, 51],
}
ID_FLAWS = ("none", "none", "none", "not_uuid", "duplicate", "case_twin", "not_str", "not_list")
BAD_UUIDS = (
    "not-a-uuid",
    "04fe9a97a57943c5bb1a58ed29bf0a6a",
    "{04fe9a97-a579-43c5-bb1a-58ed29bf0a6a}",
    "urn:uuid:04fe9a97-a579-43c5-bb1a-58ed29bf0a6a",
    "04fe9a-a579-43c5-bb1a-58ed29bf0a6a",
    "04fe9a97-a579-43c5-bb1a-58ed29bf0a6g",
    "",
)


def make_ids(count: int, seed: int, upper: bool) -> list[str]:
    """Distinct canonical UUIDs, made by formatting (UUID() is too slow for 50,000)."""
    head = f"{seed % 16**8:08x}-{seed // 16**8 % 16**4:04x}-4000-8000"
    ids = [f"{head}-{i:012x}" for i in range(count)]
    return [i.upper() for i in ids] if upper else ids


@st.composite
def id_lists(draw: st.DrawFn, kind: str, flaw: str | None = None) -> Any:
    """An id list of a telling size, with ``flaw`` (drawn if not given) worked into it."""
    counts = ID_COUNTS[kind]
    if flaw == "none":
        cap = JOB_CONTACT_IDS if kind == "contact_ids" else 50
        counts = [c for c in counts if 1 <= c <= cap]
    count = draw(st.sampled_from(counts))
    ids = make_ids(count, draw(st.integers(1, 2**64)), draw(st.booleans()))
    flaw = flaw or draw(st.sampled_from(ID_FLAWS))
    position = draw(st.integers(0, max(0, count - 1)))
    if flaw == "not_list":
        return draw(st.sampled_from([ids[0] if ids else "x", {"ids": ids}, 3, True]))
    if not ids or flaw == "none":
        return ids
    if flaw == "not_uuid":
        ids[position] = draw(st.sampled_from(BAD_UUIDS))
    elif flaw == "duplicate":
        ids.append(ids[position])
    elif flaw == "case_twin":
        twin = ids[position].swapcase()
        ids.append(twin if twin != ids[position] else ids[position])
    elif flaw == "not_str":
        ids[position] = draw(st.sampled_from([5, None, ["x"], 1.5]))
    return ids


field_names = st.one_of(
    st.sampled_from(DOCUMENTED_FIELDS),
    st.sampled_from(["favourite_colour", "custom_field_1", "Email_Address", "x" * 100]),
    st.text(min_size=0, max_size=3),
    st.just("y" * 101),
)
fields_values = st.one_of(
    st.lists(field_names, min_size=0, max_size=6),
    st.lists(st.sampled_from(DOCUMENTED_FIELDS), min_size=1, max_size=8, unique=True),
    st.sampled_from(["email_address", 7, None, {"f": 1}, ["city", 3]]),
)
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "contact_ids": id_lists("contact_ids"),
    "list_ids": id_lists("list_ids"),
    "tag_ids": id_lists("tag_ids"),
    "segment_id": st.one_of(
        st.integers(-2, 2**40), st.sampled_from(["4", True, False, 3.0, 2.5, None, [1]])
    ),
    "new_subscriber": st.sampled_from([True, False, None, "yes", 1, 0]),
    "all_active_contacts": st.sampled_from([True, False, None, "true", 1]),
    "status": st.sampled_from([*STATUSES, None, "Active", "bounced", "", 1, ["active"]]),
    "exclude": st.one_of(
        id_lists("exclude").map(lambda ids: {"contact_ids": ids}),
        id_lists("exclude", "none").map(lambda ids: {"contact_ids": ids, "extra": 1}),
        st.sampled_from([{}, None, "x", [1], {"contact_ids": None}]),
    ),
    "fields": fields_values,
}
VALUES[OLD_SEGMENT] = VALUES["segment_id"]
UNKNOWN_KEYS = st.sampled_from(["lists", "contactIds", "segment", "Status", "fields ", "limit"])


@st.composite
def any_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Bodies built key by key, each key absent, valid or broken: mostly invalid ones."""
    body: dict[str, Any] = {}
    for key in BODY_KEYS:
        rare = key == OLD_SEGMENT
        if draw(st.integers(0, 9 if rare else 2)) == 0:
            body[key] = draw(VALUES[key])
    if draw(st.integers(0, 7)) == 0:
        body[draw(UNKNOWN_KEYS)] = draw(st.sampled_from([1, "x", [], None]))
    return body


ALLOWED_SETS = [
    combo
    for size in range(len(FILTERS) + 1)
    for combo in combinations(FILTERS, size)
    if all(frozenset(pair) in COMPATIBLE for pair in combinations(combo, 2))
]


@st.composite
def valid_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Bodies built to be valid: an allowed set of filters, each with a valid value."""
    chosen = draw(st.sampled_from(ALLOWED_SETS))
    body: dict[str, Any] = {}
    for name in chosen:
        if name in ("contact_ids", "list_ids", "tag_ids"):
            body[name] = draw(id_lists(name, "none"))
        elif name == "segment_id":
            body[draw(st.sampled_from(["segment_id", OLD_SEGMENT]))] = draw(st.integers(1, 2**40))
        elif name in FLAGS:
            body[name] = True
        elif name == "status":
            body[name] = draw(st.sampled_from(STATUSES))
        else:
            body[name] = {"contact_ids": draw(id_lists("exclude", "none"))}
    for name in FILTERS:  # a false flag or an explicit null is no filter
        if name not in chosen and draw(st.integers(0, 4)) == 0:
            body[name] = False if name in FLAGS else None
    if draw(st.booleans()):
        names = draw(st.lists(field_names, min_size=1, max_size=8, unique=True))
        names = [n for n in names if 1 <= len(n) <= LONGEST_FIELD_NAME] or ["city"]
        if set(NEED_EMAIL) & set(names) and "email_address" not in names:
            names.append("email_address")
        body["fields"] = names
    return body


# -- Properties ----------------------------------------------------------------------------


def inexpressible_in_json_schema(body: dict[str, Any]) -> bool:
    """Rules the JSON Schema cannot state: ids equal but for case, and integral floats.

    (``uniqueItems`` compares strings exactly; JSON Schema's ``integer`` includes 3.0.)
    """
    lists = [body.get(k) for k in ("contact_ids", "list_ids", "tag_ids")]
    exclude = body.get("exclude")
    if isinstance(exclude, dict):
        lists.append(exclude.get("contact_ids"))
    for ids in lists:
        if isinstance(ids, list) and all(isinstance(i, str) for i in ids):
            exact, folded = len(set(ids)), len({i.lower() for i in ids})
            if folded < exact:
                return True
    segments = (body.get("segment_id"), body.get(OLD_SEGMENT))
    return any(isinstance(s, float) and s.is_integer() for s in segments)


def check_against_the_table(body: dict[str, Any]) -> None:
    expected_faults = faults(body)
    pairs = [] if expected_faults else refused_pairs(body)
    note(f"faults={expected_faults} pairs={pairs}")
    # jsonschema takes ~0.4 s over 50,000 ids; test_schema_json checks that cap once instead.
    big = any(isinstance(v, list) and len(v) > SCHEMA_CHECK_MAX_IDS for v in body.values())
    schema_ok = None if big else KWARGS_VALIDATOR.is_valid({"export": body})
    if not expected_faults and not pairs:
        parsed = parse_job_request({"export": body})
        assert schema_ok is not False, "the JSON Schema refuses a body the model accepts"
        check_valid_request(body, parsed.export)
        return
    with pytest.raises(InvalidExportRequest) as caught:
        parse_job_request({"export": body})
    message = str(caught.value)
    for name in expected_faults:
        assert name in message, f"{name} not named in {message!r}"
    for a, b in pairs:
        assert f"{a} cannot be combined with {b}" in message or (
            f"{b} cannot be combined with {a}" in message
        ), f"{a}+{b} not named in {message!r}"
    assert not schema_ok or inexpressible_in_json_schema(body), "the JSON Schema accepts it"


def check_valid_request(body: dict[str, Any], request: ExportRequest) -> None:
    expected = {
        ("segment_id" if key == OLD_SEGMENT else key): value
        for key, value in body.items()
        if value is not None
    }
    assert request.api_body() == expected
    fields = body.get("fields") or []
    assert request.unknown_fields == [f for f in fields if f not in DOCUMENTED_FIELDS]
    shards = request.shards()
    ids = expected.get("contact_ids")
    assert len(shards) == (math.ceil(len(ids) / API_CAPS["contact_ids"]) if ids else 1)
    for shard in shards:
        assert {k: v for k, v in shard.items() if k != "contact_ids"} == {
            k: v for k, v in expected.items() if k != "contact_ids"
        }
        assert len(shard.get("contact_ids", [])) <= API_CAPS["contact_ids"]
    if ids:
        assert [i for shard in shards for i in shard["contact_ids"]] == ids
    for shard in shards[:2]:  # the emulator of the API refuses nothing the model let through
        try:
            parse_export_request(json.dumps(shard).encode())
        except ExportValidationError as error:  # pragma: no cover - reports the disagreement
            pytest.fail(f"the sandbox refuses a shard the model accepted: {error.errors}")


PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY_SETTINGS
@given(any_bodies())
def test_the_model_agrees_with_the_rule_table_on_any_body(body: dict[str, Any]) -> None:
    check_against_the_table(body)


@PROPERTY_SETTINGS
@given(valid_bodies())
def test_bodies_built_by_the_rules_are_accepted_and_sharded(body: dict[str, Any]) -> None:
    assert not faults(body) and not refused_pairs(body), body
    check_against_the_table(body)


def test_the_table_itself() -> None:
    """Guards the oracle: one hand-checked verdict per rule, so a broken table cannot pass."""
    one = str(uuid.uuid4())
    assert faults({"contact_ids": [one] * 2}) == ["contact_ids"]
    assert faults({"contact_ids": make_ids(50_000, 1, False)}) == []
    assert faults({"list_ids": make_ids(51, 1, False)}) == ["list_ids"]
    assert faults({"segment_ids": True}) == ["segment_id"]
    assert faults({"fields": ["email_optin_date"]}) == ["fields"]
    assert faults({"exclude": {"contact_ids": [one], "x": 1}}) == ["exclude"]
    assert refused_pairs({"status": "active", "exclude": {"contact_ids": [one]}}) == [
        ("status", "exclude")
    ]
    assert refused_pairs({"list_ids": [one], "new_subscriber": True, "exclude": {}}) == []
    assert refused_pairs({"segment_ids": 3, "status": "active"}) == [("segment_id", "status")]
    assert refused_pairs({"all_active_contacts": False, "tag_ids": [one]}) == []
    assert len(ALLOWED_SETS) == 1 + len(FILTERS) + len(COMPATIBLE) + 1  # + list/new/exclude

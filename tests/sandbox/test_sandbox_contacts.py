"""The contact generator: deterministic, computed per index, and hostile to naive CSV code."""

from __future__ import annotations

import re
import uuid

from sandbox.contacts import Contact, ContactStatus, ContactUniverse
from sandbox.fields import DEFAULT_FIELDS, LABELS, ContactField

PLAIN = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4}$")
ISO_MILLIS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3} [+-]\d{4}$")


def test_contact_ids_are_uuid4_and_encode_their_index() -> None:
    universe = ContactUniverse(seed=3, size=1_000_000)
    for index in (0, 1, 4095, 999_999):
        contact_id = universe.contact_id(index)
        assert uuid.UUID(contact_id).version == 4
        assert str(uuid.UUID(contact_id)) == contact_id
        assert universe.index_of(contact_id) == index
        assert universe.index_of(contact_id.upper()) == index
    assert universe.index_of(universe.contact_id(1_000_000)) is None
    assert universe.index_of(universe.unknown_contact_id) is None
    assert universe.index_of(ContactUniverse(seed=4, size=10).contact_id(1)) is None


def test_contact_is_computed_from_seed_and_index_alone() -> None:
    small = ContactUniverse(seed=11, size=200_000)
    large = ContactUniverse(seed=11, size=5_000_000)
    # Random access in any order gives the same contact, whatever the universe size:
    # nothing is precomputed or held per contact, so millions can stream.
    assert small.contact(199_999) == large.contact(199_999)
    assert [small.contact(i) for i in (5, 3, 1)] == [large.contact(i) for i in (5, 3, 1)]
    assert ContactUniverse(seed=12, size=10).contact(5) != small.contact(5)
    assert ContactUniverse(seed=11, size=10).lists == small.lists


def test_contact_tuple_follows_the_export_field_order() -> None:
    assert Contact._fields[3:] == tuple(f.value for f in ContactField)
    assert tuple(ContactField) == DEFAULT_FIELDS
    assert set(LABELS) == set(ContactField)
    assert len(set(LABELS.values())) == len(LABELS)
    assert LABELS[ContactField.EMAIL_ADDRESS] == "Email address - other"
    assert LABELS[ContactField.UPDATED_AT] == "Updated At"


def test_values_stress_csv_handling() -> None:
    universe = ContactUniverse(seed=1, size=3_000)
    contacts = [universe.contact(i) for i in range(universe.size)]
    texts = [value for c in contacts for value in c[3:]]
    assert any("," in t for t in texts)
    assert any('"' in t for t in texts)
    assert any("\r\n" in t for t in texts)
    assert any("\n" in t and "\r\n" not in t for t in texts)
    assert any("é" in t or "ü" in t for t in texts)
    assert any("中文" in t for t in texts)
    assert any(ord(ch) > 0xFFFF for t in texts for ch in t)  # emoji outside the BMP
    assert any("," in c.first_name or '"' in c.first_name for c in contacts)
    assert len({c.email_address for c in contacts}) == len(contacts)


def test_updated_at_uses_both_documented_formats() -> None:
    universe = ContactUniverse(seed=1, size=500)
    stamps = [universe.contact(i).updated_at for i in range(universe.size)]
    assert all(PLAIN.match(s) or ISO_MILLIS.match(s) for s in stamps)
    assert any(PLAIN.match(s) for s in stamps)
    assert any(ISO_MILLIS.match(s) for s in stamps)
    assert universe.contact(42).updated_at == ContactUniverse(1, 43).contact(42).updated_at


def test_memberships_and_statuses_are_spread() -> None:
    universe = ContactUniverse(seed=1, size=5_000)
    traits = [universe.traits(i) for i in range(universe.size)]
    statuses = {s: sum(t.status is s for t in traits) for s in ContactStatus}
    assert statuses[ContactStatus.ACTIVE] > 0.75 * universe.size
    assert statuses[ContactStatus.UNSUBSCRIBED] > 0
    assert statuses[ContactStatus.REMOVED] > 0
    for bit in range(len(universe.lists)):
        assert any(t.lists >> bit & 1 for t in traits)
    for bit in range(len(universe.tags)):
        assert any(t.tags >> bit & 1 for t in traits)
    for segment in universe.segments:
        assert any(universe.in_segment(t, segment) for t in traits)
    recent = sum(universe.is_new_subscriber(t) for t in traits)
    assert 0 < recent < universe.size / 5

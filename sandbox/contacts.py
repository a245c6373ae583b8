"""Deterministic synthetic contacts, each computed from (seed, index) alone.

Exports of millions of rows must stream, so no contact is ever stored: a contact
id encodes its own index (a seed-derived prefix plus the index in the last 12 hex
digits), and every attribute is drawn from a keyed BLAKE2b digest of the index.
The same seed therefore yields the same bytes on every run and machine, which is
what makes spool reuse and byte-identical downloads possible.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple

from sandbox import pools

INDEX_HEX_DIGITS = 12
MAX_CONTACTS = 16**INDEX_HEX_DIGITS
SEGMENT_IDS = (1, 2, 3, 4, 5)

REFERENCE_TIME = datetime(2024, 6, 30, 17, 0, 0)
"""The data's fixed "now": anchored so the same seed renders the same bytes on any day."""

HISTORY_DAYS = 3650
"""Contacts are created within this many days before :data:`REFERENCE_TIME`."""

NEW_SUBSCRIBER_DAYS = 30
"""``new_subscriber`` selects contacts created this close to :data:`REFERENCE_TIME`."""

_RECENT_SHARE = 13
"""Out of 256: about 5% of contacts are recent, so ``new_subscriber`` exports are non-empty."""

_ACTIVE_BELOW = 218
_UNSUBSCRIBED_BELOW = 243
"""Status from one digest byte: ~85% active, ~10% unsubscribed, ~5% removed."""

_LIST_MASK = (1 << len(pools.LIST_NAMES)) - 1
_TAG_MASK = (1 << pools.TAG_COUNT) - 1
_SEGMENT_MASK = (1 << len(SEGMENT_IDS)) - 1

_UUID_PREFIX_LEN = 24
"""Characters of a contact id before the 12 index digits: ``8-4-4-4-`` with hyphens."""


class ContactStatus(StrEnum):
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    REMOVED = "removed"


def derived_uuid(*parts: object) -> str:
    """A stable, well-formed version-4 UUID derived from ``parts``."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()
    return _format_uuid(digest[:32])


def _format_uuid(hex32: str) -> str:
    variant = "89ab"[int(hex32[16], 16) & 3]
    h = hex32[:12] + "4" + hex32[13:16] + variant + hex32[17:32]
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


@dataclass(frozen=True, slots=True)
class Traits:
    """What filters look at; cheap to compute, so a full scan never builds whole contacts."""

    index: int
    status: ContactStatus
    lists: int
    tags: int
    segments: int
    age_seconds: int
    digest: bytes

    @property
    def created(self) -> datetime:
        return REFERENCE_TIME - timedelta(seconds=self.age_seconds)


class Contact(NamedTuple):
    """One contact.  After the first three, the names and order are exactly
    :class:`~sandbox.fields.ContactField`, so a CSV row is an ``itemgetter`` away.
    ``ordinal`` is the contact's index (``index`` would shadow ``tuple.index``)."""

    ordinal: int
    contact_id: str
    status: ContactStatus
    first_name: str
    last_name: str
    email_address: str
    email_lists: str
    phone_number: str
    company_name: str
    job_title: str
    social_profiles: str
    website: str
    notes: str
    street: str
    city: str
    state: str
    zip: str
    country: str
    anniversary: str
    birthday: str
    birthday_day: str
    birthday_month: str
    source_name: str
    created_at: str
    updated_at: str
    email_optin: str
    email_permission: str
    email_optin_source: str
    email_optin_date: str
    email_optout_date: str
    email_optout_source: str
    email_optout_reason: str
    sms_number: str
    sms_consent_date: str
    sms_status: str


_EPOCH = datetime(1970, 1, 1)
_REFERENCE_TS = int((REFERENCE_TIME - _EPOCH).total_seconds())
_DAY = 86_400


@lru_cache(maxsize=16_384)
def _day_string(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%d")


def format_plain(ts: int, offset: str) -> str:
    """The guide's first ``Updated At`` style: ``2018-11-29 15:10:15 -0500``."""
    day, second = divmod(ts, _DAY)
    hour, rest = divmod(second, 3600)
    minute, sec = divmod(rest, 60)
    return f"{_day_string(day)} {hour:02d}:{minute:02d}:{sec:02d} {offset}"


def format_iso_millis(ts: int, millis: int, offset: str) -> str:
    """The guide's second ``Updated At`` style: ``2019-11-25T16:29:13.057 -0500``."""
    day, second = divmod(ts, _DAY)
    hour, rest = divmod(second, 3600)
    minute, sec = divmod(rest, 60)
    return f"{_day_string(day)}T{hour:02d}:{minute:02d}:{sec:02d}.{millis:03d} {offset}"


def _pick(pool: tuple[str, ...], byte: int) -> str:
    return pool[byte % len(pool)]


def _permission(status: ContactStatus, byte: int) -> str:
    if status is ContactStatus.ACTIVE:
        return "explicit" if byte & 1 else "implicit"
    return "unsubscribed" if status is ContactStatus.UNSUBSCRIBED else "removed"


class ContactUniverse:
    """All contacts, lists, tags and segments of one sandbox account."""

    def __init__(self, seed: int, size: int) -> None:
        if not 0 <= size < MAX_CONTACTS:
            raise ValueError(f"contacts must be between 0 and {MAX_CONTACTS - 1}")
        self.seed = seed
        self.size = size
        self._key = hashlib.sha256(f"sandbox-contacts:{seed}".encode()).digest()[:32]
        self._prefix = derived_uuid("contact-prefix", seed)[:_UUID_PREFIX_LEN]
        self.lists = tuple(derived_uuid("list", seed, n) for n in range(len(pools.LIST_NAMES)))
        self.tags = tuple(derived_uuid("tag", seed, n) for n in range(pools.TAG_COUNT))
        self.segments = SEGMENT_IDS
        self.unknown_contact_id = derived_uuid("not-a-contact", seed)
        self._list_index = {list_id: n for n, list_id in enumerate(self.lists)}
        self._tag_index = {tag_id: n for n, tag_id in enumerate(self.tags)}
        self._list_names = [
            ", ".join(name for n, name in enumerate(pools.LIST_NAMES) if mask >> n & 1)
            for mask in range(1 << len(pools.LIST_NAMES))
        ]

    def contact_id(self, index: int) -> str:
        return f"{self._prefix}{index:012x}"

    def index_of(self, contact_id: str) -> int | None:
        """Recover the index from an id, or None when it names no contact of this account."""
        cid = contact_id.lower()
        if len(cid) != 36 or not cid.startswith(self._prefix):
            return None
        try:
            index = int(cid[_UUID_PREFIX_LEN:], 16)
        except ValueError:
            return None
        return index if index < self.size else None

    def list_index(self, list_id: str) -> int | None:
        return self._list_index.get(list_id.lower())

    def tag_index(self, tag_id: str) -> int | None:
        return self._tag_index.get(tag_id.lower())

    def traits(self, index: int) -> Traits:
        d = hashlib.blake2b(index.to_bytes(8, "big"), digest_size=64, key=self._key).digest()
        b0 = d[0]
        status = (
            ContactStatus.ACTIVE
            if b0 < _ACTIVE_BELOW
            else ContactStatus.UNSUBSCRIBED
            if b0 < _UNSUBSCRIBED_BELOW
            else ContactStatus.REMOVED
        )
        # ANDing independent random bit fields sets each bit with probability 1/4 (1/8 for 3).
        lists = int.from_bytes(d[1:3]) & int.from_bytes(d[3:5]) & _LIST_MASK
        tags = d[5] & d[6] & d[7] & _TAG_MASK
        segments = d[8] & d[9] & _SEGMENT_MASK
        span = NEW_SUBSCRIBER_DAYS * _DAY if d[24] < _RECENT_SHARE else HISTORY_DAYS * _DAY
        age = int.from_bytes(d[25:29]) % span
        return Traits(index, status, lists, tags, segments, age, d)

    def is_new_subscriber(self, traits: Traits) -> bool:
        return traits.age_seconds < NEW_SUBSCRIBER_DAYS * _DAY

    def in_segment(self, traits: Traits, segment_id: int) -> bool:
        return segment_id in self.segments and bool(traits.segments >> (segment_id - 1) & 1)

    def contact(self, index: int) -> Contact:
        return self.contact_from(self.traits(index))

    def contact_from(self, t: Traits) -> Contact:
        """Build every field from the digest; positional, in field order, for speed."""
        d = t.digest
        i = t.index
        status = t.status
        offset = _pick(pools.TIMEZONE_OFFSETS, d[61])
        handle = _pick(pools.EMAIL_HANDLES, d[35])
        created_ts = _REFERENCE_TS - t.age_seconds
        updated_ts = min(_REFERENCE_TS, created_ts + int.from_bytes(d[29:32]) % (400 * _DAY))
        created = format_plain(created_ts, offset)
        updated_at = (
            format_plain(updated_ts, offset)
            if d[32] & 1
            else format_iso_millis(updated_ts, (d[63] * 4) % 1000, offset)
        )
        unsubscribed = status is ContactStatus.UNSUBSCRIBED
        has_birthday = d[52] < 100
        month, day = 1 + d[53] % 12, 1 + d[54] % 28
        has_sms = d[58] < 90
        return Contact(
            i,
            f"{self._prefix}{i:012x}",
            status,
            _pick(pools.FIRST_NAMES, d[33]),
            _pick(pools.LAST_NAMES, d[34]),
            f"{handle}.{i:x}@{_pick(pools.EMAIL_DOMAINS, d[36])}",
            self._list_names[t.lists],
            _pick(pools.PHONES, d[37]).format(n=int.from_bytes(d[38:40]) % 10_000),
            _pick(pools.COMPANIES, d[40]),
            _pick(pools.JOB_TITLES, d[41]),
            _pick(pools.SOCIAL_PROFILES, d[42]).format(h=handle),
            _pick(pools.WEBSITES, d[43]).format(h=handle),
            _pick(pools.NOTES, d[44]),
            _pick(pools.STREETS, d[45]),
            _pick(pools.CITIES, d[46]),
            _pick(pools.STATES, d[47]),
            _pick(pools.ZIPS, d[48]),
            _pick(pools.COUNTRIES, d[49]),
            f"{2000 + d[51] % 24}-{1 + d[50] % 12:02d}-{1 + d[51] % 28:02d}" if d[50] < 50 else "",
            f"{month:02d}/{day:02d}" if has_birthday else "",
            str(day) if has_birthday else "",
            str(month) if has_birthday else "",
            _pick(pools.SOURCE_NAMES, d[55]),
            created,
            updated_at,
            "true" if status is ContactStatus.ACTIVE else "false",
            _permission(status, d[62]),
            _pick(pools.OPTIN_SOURCES, d[56]),
            created,
            format_plain(updated_ts, offset) if unsubscribed else "",
            _pick(pools.OPTOUT_SOURCES, d[56] >> 1) if unsubscribed else "",
            _pick(pools.OPTOUT_REASONS, d[57]) if unsubscribed else "",
            f"+1555{int.from_bytes(d[59:61]) % 10_000_000:07d}" if has_sms else "",
            created if has_sms else "",
            _pick(pools.SMS_STATUSES, d[58]) if has_sms else "",
        )

"""How an export's object is stored: server-side encryption, storage class and tags.

Per job in ``destination`` (``sse``, ``kms_key_id``, ``storage_class``, ``tags``) and as
defaults from the environment (S3_SSE, S3_KMS_KEY_ID, S3_STORAGE_CLASS, S3_TAGS); a job's value
wins, and its tags are added to the default ones. S3's rules are checked before any call, so a
bad value is InvalidExportRequest (or stops the worker at start), never a failed upload.

Every write of the export carries them: the single PUT, the multipart upload, the manifest, and
the seal's copy of the object onto itself — a copy that did not repeat the encryption and the
storage class would store the object with the bucket's defaults (the tags it keeps, by
``TaggingDirective=COPY``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

#: Server-side encryption as S3 names it: S3-managed keys, or a KMS key.
SSE_VALUES = ("AES256", "aws:kms")
KMS = "aws:kms"
#: Storage classes an export may be written in. GLACIER and DEEP_ARCHIVE are not among them:
#: the seal copies the object onto itself, and an archived object cannot be read to be copied.
STORAGE_CLASSES = (
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "REDUCED_REDUNDANCY",
)
ARCHIVED = ("GLACIER", "DEEP_ARCHIVE")
#: S3's limits on an object's tags.
MAX_TAGS = 10
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
#: Letters, digits, white space and ``+ - = . _ : / @``, as S3 allows in a tag.
TAG_CHARACTERS = re.compile(r"^[\w +\-=.:/@]*$")


@dataclass(frozen=True)
class ObjectOptions:
    sse: str | None = None
    kms_key_id: str | None = None
    storage_class: str | None = None
    tags: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(
        cls,
        sse: str | None = None,
        kms_key_id: str | None = None,
        storage_class: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ObjectOptions:
        return cls(sse, kms_key_id, storage_class, tuple((tags or {}).items()))

    def problem(self, *, merged: bool = True) -> str | None:
        """What breaks S3's rules, with the field's name; None when nothing does. A job's own
        options (``merged=False``) may name a key for the default encryption."""
        if self.sse is not None and self.sse not in SSE_VALUES:
            return f"sse: {self.sse!r} is not one of {', '.join(SSE_VALUES)}"
        if merged and self.kms_key_id is not None and self.sse != KMS:
            return f"kms_key_id: needs sse {KMS!r}"
        if self.storage_class in ARCHIVED:
            return (
                f"storage_class: {self.storage_class} cannot be sealed (a copy must read the "
                "object); store in STANDARD and move it with a lifecycle rule"
            )
        if self.storage_class is not None and self.storage_class not in STORAGE_CLASSES:
            return (
                f"storage_class: {self.storage_class!r} is not one of {', '.join(STORAGE_CLASSES)}"
            )
        return _tags_problem(self.tags)

    def over(self, defaults: ObjectOptions) -> ObjectOptions:
        """These options where given, else ``defaults``; tags from both (these win on a key)."""
        sse = self.sse or defaults.sse
        # The default key goes with the default encryption, and with a job's own aws:kms that
        # names no key of its own.
        kms_key_id = self.kms_key_id or (
            defaults.kms_key_id if sse == KMS and self.sse in (None, KMS) else None
        )
        tags = dict(defaults.tags) | dict(self.tags)
        return ObjectOptions(
            sse, kms_key_id, self.storage_class or defaults.storage_class, tuple(tags.items())
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name in ("sse", "kms_key_id", "storage_class"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        if self.tags:
            data["tags"] = dict(self.tags)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ObjectOptions:
        data = data or {}
        return cls.of(
            data.get("sse"), data.get("kms_key_id"), data.get("storage_class"), data.get("tags")
        )

    def write_args(self) -> dict[str, Any]:
        """boto3's arguments for PutObject and CreateMultipartUpload."""
        args = self._kept()
        if self.tags:
            args["Tagging"] = urlencode(self.tags)
        return args

    def copy_args(self) -> dict[str, Any]:
        """boto3's arguments for the seal's copy of the object onto itself."""
        return {**self._kept(), "TaggingDirective": "COPY"} if self != ObjectOptions() else {}

    def _kept(self) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if self.sse:
            args["ServerSideEncryption"] = self.sse
        if self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        if self.storage_class:
            args["StorageClass"] = self.storage_class
        return args


def _tags_problem(tags: tuple[tuple[str, str], ...]) -> str | None:
    if len(tags) > MAX_TAGS:
        return f"tags: at most {MAX_TAGS} (S3's limit), not {len(tags)}"
    for key, value in tags:
        if not 1 <= len(key) <= MAX_TAG_KEY:
            return f"tags: a key must be 1 to {MAX_TAG_KEY} characters: {key!r}"
        if len(value) > MAX_TAG_VALUE:
            return f"tags: the value of {key!r} is longer than {MAX_TAG_VALUE} characters"
        if key.lower().startswith("aws:"):
            return f"tags: {key!r}: the aws: prefix is S3's own"
        if not TAG_CHARACTERS.match(key) or not TAG_CHARACTERS.match(value):
            return f"tags: {key!r}: only letters, digits, spaces and + - = . _ : / @ are allowed"
    return None


def parse_tags(text: str) -> dict[str, str]:
    """S3_TAGS: ``key=value`` pairs, comma-separated; ValueError for a pair without ``=``."""
    tags = {}
    for pair in (piece.strip() for piece in text.split(",")):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"S3_TAGS: {pair!r} is not key=value")
        tags[key.strip()] = value.strip()
    return tags

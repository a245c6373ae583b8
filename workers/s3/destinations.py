"""Where workers may write: the buckets (and key prefixes) an operator allows.

Any application that can write to the broker can name a bucket in ``destination``, and the
workers' S3 credentials may reach far more than exports should. So a job's bucket and key are
checked against ``S3_ALLOWED_BUCKETS`` before any API call: a comma-separated list of buckets,
each optionally followed by the one key prefix allowed in it
(``exports,lake/contacts/`` allows any key in ``exports`` and keys under ``contacts/`` in
``lake``). Unset, only ``S3_BUCKET`` is allowed, with any key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from workers.exceptions import InvalidExportRequest

#: S3's limit on a key, in bytes of UTF-8.
MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class AllowedDestinations:
    #: bucket -> the key prefixes allowed in it; an empty tuple allows any key.
    buckets: Mapping[str, tuple[str, ...]]

    @classmethod
    def parse(cls, allowed: str | None, default_bucket: str | None) -> AllowedDestinations:
        """Raises ValueError for a list that allows nothing, or leaves out ``S3_BUCKET``."""
        if allowed is None or not allowed.strip():
            return cls({default_bucket: ()} if default_bucket else {})
        buckets: dict[str, list[str]] = {}
        for entry in (item.strip() for item in allowed.split(",")):
            if not entry:
                continue
            bucket, _, prefix = entry.partition("/")
            prefixes = buckets.setdefault(bucket, [])
            prefixes.append(prefix)
        if not buckets:
            raise ValueError("S3_ALLOWED_BUCKETS names no bucket")
        rules = {
            bucket: () if "" in prefixes else tuple(prefixes)
            for bucket, prefixes in buckets.items()
        }
        if default_bucket and default_bucket not in rules:
            raise ValueError(
                f"S3_ALLOWED_BUCKETS leaves out S3_BUCKET ({default_bucket}): jobs that name no "
                "bucket could never be written"
            )
        return cls(rules)

    def check(self, bucket: str, key: str) -> None:
        """InvalidExportRequest unless ``key`` in ``bucket`` is allowed and a safe key."""
        check_key(key)
        if bucket not in self.buckets:
            raise InvalidExportRequest(
                f"destination.bucket: {bucket!r} is not a bucket this service may write to "
                "(S3_ALLOWED_BUCKETS)"
            )
        prefixes = self.buckets[bucket]
        if prefixes and not key.startswith(prefixes):
            raise InvalidExportRequest(
                f"destination.key: in bucket {bucket!r} keys must start with "
                f"{' or '.join(repr(p) for p in prefixes)} (S3_ALLOWED_BUCKETS)"
            )


def check_key(key: str) -> None:
    """A key S3 takes and that means what it says: no ``..`` segment (which some tools and
    stores resolve, escaping a prefix), no control characters, at most 1,024 bytes."""
    if ".." in key.split("/"):
        raise InvalidExportRequest("destination.key: must not contain a '..' segment")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise InvalidExportRequest("destination.key: must not contain control characters")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidExportRequest(f"destination.key: longer than {MAX_KEY_BYTES} bytes (UTF-8)")

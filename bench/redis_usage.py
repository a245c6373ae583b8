"""What a benchmark's own Redis holds and what it was asked: memory, keys by pattern, commands.

``bench/scale.py`` runs a fresh ``redis-server`` per size so these figures are clean: nothing
but the service and the benchmark ever touched it. The census groups keys by pattern (every
UUID in a key replaced by ``*``), so a million per-job keys read as a handful of lines saying
which kind of key holds the memory. Command counts come from ``INFO commandstats``: the
benchmark's own reads (``INFO``, ``MEMORY USAGE``, ``MGET``, its ``SCAN``\\ s) are told apart so
that what remains is what the workers and the caller cost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import redis

#: Ids in the service's keys: job ids (``scale.py`` makes UUID ones), Celery task ids.
ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: Commands the service never sends (``grep -rn`` over workers/, tasks/, the client and kombu's
#: Redis transport): all of their calls are the benchmark's own. ``scan`` is not among them,
#: since the janitor sweeps job records with SCAN; ``Census`` counts its own.
BENCH_ONLY = frozenset({"info", "memory|usage", "mget", "ping"})
#: Keys fetched per SCAN call and per pipelined batch of MEMORY USAGE.
BATCH = 1000


def key_pattern(key: str) -> str:
    """``celery-task-meta-<uuid>`` -> ``celery-task-meta-*``; kombu's priority queues (the queue
    name, ``\\x06\\x16`` and a digit) keep their name, made printable."""
    return ID.sub("*", key).replace("\x06\x16", "<priority>")


@dataclass(frozen=True)
class KeyGroup:
    pattern: str
    keys: int
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "keys": self.keys, "bytes": self.bytes}


@dataclass(frozen=True)
class Mark:
    """``INFO commandstats`` at one moment, and how many SCANs the benchmark had sent by then."""

    calls: dict[str, int]
    bench_scans: int


class RedisUsage:
    """Reads of one Redis, counting the commands they cost it."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        #: SCAN calls made here (the only command both the service and the benchmark send).
        self.scans = 0

    def used_memory(self) -> dict[str, int]:
        """``used_memory`` (what the per-job figure uses), its dataset part and the RSS."""
        info = self.client.info("memory")
        names = ("used_memory", "used_memory_dataset", "used_memory_rss")
        return {name: int(info[name]) for name in names}

    def version(self) -> str:
        return str(self.client.info("server")["redis_version"])

    def mark(self) -> Mark:
        """Calls per command so far (``cmdstat_lpush`` -> ``lpush``), and this reader's SCANs."""
        stats = self.client.info("commandstats")
        calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
        return Mark(calls, self.scans)

    @staticmethod
    def service_commands(before: Mark, after: Mark) -> dict[str, int]:
        """Calls between two marks, less the benchmark's own, most called first."""
        delta = {name: calls - before.calls.get(name, 0) for name, calls in after.calls.items()}
        delta["scan"] = delta.get("scan", 0) - (after.bench_scans - before.bench_scans)
        return {
            name: calls
            for name, calls in sorted(delta.items(), key=lambda item: -item[1])
            if calls > 0 and name not in BENCH_ONLY
        }

    def census(self) -> list[KeyGroup]:
        """Every key, grouped by pattern, with ``MEMORY USAGE`` (all samples) summed per group;
        largest first."""
        counts: dict[str, int] = {}
        sizes: dict[str, int] = {}
        cursor = 0
        while True:
            cursor, keys = self.client.scan(cursor=cursor, count=BATCH)
            self.scans += 1
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.memory_usage(key, samples=0)
            for key, size in zip(keys, pipe.execute(), strict=True):
                name = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
                pattern = key_pattern(name)
                counts[pattern] = counts.get(pattern, 0) + 1
                sizes[pattern] = sizes.get(pattern, 0) + int(size or 0)
            if cursor == 0:
                break
        groups = [KeyGroup(p, counts[p], sizes[p]) for p in counts]
        return sorted(groups, key=lambda group: -group.bytes)

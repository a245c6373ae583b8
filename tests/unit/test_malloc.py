"""A freed part buffer must leave the process: checked in fresh interpreters, by their RSS."""

from __future__ import annotations

import subprocess
import sys

import pytest

#: Three exports' worth of a part buffer, each freed while a small allocation made meanwhile stays
#: (as the worker's other objects do); prints how far RSS stayed above where it began, in MiB.
SCRIPT = """
import os, sys
from workers.malloc import pin_mmap_threshold
if sys.argv[1] == "pinned":
    assert pin_mmap_threshold()
def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = rss()
kept = []
for _ in range(3):
    part = bytearray(b"x") * (16 << 20)
    kept.append(bytearray(b"y") * (64 << 10))
    del part
print((rss() - before) / 2**20)
"""


def retained_mib(mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True
    )
    return float(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc only")
def test_pinned_threshold_returns_part_buffers_to_the_system() -> None:
    assert retained_mib("pinned") < 4
    # Without it glibc keeps a later export's buffer (its threshold rose past 16 MiB).
    assert retained_mib("default") >= 15

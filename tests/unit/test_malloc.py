"""A freed part buffer must leave the process, and a new one cost only the pages written to it:
checked in fresh interpreters, by their RSS, and in /proc/self/smaps."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from workers.malloc import ARROW_ALLOCATOR_ENV, HUGE_PAGE_BYTES, part_buffer

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


def printed(script: str, mode: str, env: dict[str, str] | None = None) -> str:
    """What ``script`` prints in a fresh interpreter, given ``mode`` as its argument."""
    done = subprocess.run(
        [sys.executable, "-c", script, mode], capture_output=True, text=True, check=True, env=env
    )
    return done.stdout


def retained_mib(mode: str) -> float:
    return float(printed(SCRIPT, mode))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc only")
def test_pinned_threshold_returns_part_buffers_to_the_system() -> None:
    assert retained_mib("pinned") < 4
    # Without it glibc keeps a later export's buffer (its threshold rose past 16 MiB).
    assert retained_mib("default") >= 15


#: Arrow kernels run over a few MiB of strings, their results freed; prints the RSS kept, MiB.
ARROW_SCRIPT = """
import os, sys
from workers.malloc import return_arrow_memory
if sys.argv[1] == "returned":
    return_arrow_memory()
import pyarrow as pa, pyarrow.compute as pc
def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
values = pa.array([f"value {i} with some text" for i in range(200_000)])
before = rss()
for _ in range(5):
    joined = pc.replace_substring(pc.binary_join_element_wise('"', values, '"', ""), " ", "_")
    del joined
print((rss() - before) / 2**20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc only")
def test_arrow_returns_freed_memory_when_told_before_its_import() -> None:
    # Without what a worker set-up in this process (test_lifecycle) may have put there.
    env = {k: v for k, v in os.environ.items() if k not in ARROW_ALLOCATOR_ENV}

    def kept(mode: str) -> float:
        return float(printed(ARROW_SCRIPT, mode, env))

    assert kept("returned") < 4
    assert kept("default") >= 8  # mimalloc's defaults keep what the kernels freed


#: 200 chunks of 1 MiB, each freed before the next (a converted format's network chunks);
#: prints the page faults they cost.
CHURN_SCRIPT = """
import resource, sys
from workers.malloc import pin_mmap_threshold
if sys.argv[1] == "pinned":
    assert pin_mmap_threshold()
elif sys.argv[1] == "at 1 MiB":
    assert pin_mmap_threshold(1024 * 1024)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    chunk = bytearray(1024 * 1024)
    del chunk
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_chunks_under_the_threshold_reuse_the_heap_instead_of_faulting_anew() -> None:
    def faults(mode: str) -> int:
        return int(printed(CHURN_SCRIPT, mode))

    assert faults("pinned") < 2_000  # one chunk's 256 pages, then reused
    assert faults("at 1 MiB") > 20_000  # a fresh mapping, 256 faults, every time


#: A 64 MiB part buffer of which a small export writes 100 KB; prints the RSS it added, in MiB.
SMALL_EXPORT_SCRIPT = """
import os, sys
from workers.malloc import part_buffer, pin_mmap_threshold
assert pin_mmap_threshold()
def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = rss()
part = part_buffer(64 << 20) if sys.argv[1] == "part_buffer" else bytearray(64 << 20)
part[: 100_000] = b"x" * 100_000
print((rss() - before) / 2**20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc only")
def test_a_part_buffer_costs_only_the_pages_written_to_it() -> None:
    def added(mode: str) -> float:
        return float(printed(SMALL_EXPORT_SCRIPT, mode))

    # At most the written bytes, the huge pages they fall in and the interpreter's own growth.
    assert added("part_buffer") < 8
    assert added("bytearray") >= 63  # zero-filled: every page of it faulted in at once


def test_a_part_buffer_is_a_bytearray_of_its_size_that_nothing_else_holds() -> None:
    buffer = part_buffer(HUGE_PAGE_BYTES * 3)
    control = bytearray(HUGE_PAGE_BYTES * 3)
    assert type(buffer) is bytearray and len(buffer) == len(control)
    # As many references as a bytearray made by Python: one kept by the allocation would leak
    # every part buffer of every export.
    assert sys.getrefcount(buffer) == sys.getrefcount(control)
    buffer[:5] = b"hello"
    del buffer[5:]  # a last part is shrunk in place
    assert buffer == b"hello"


#: For two 16 MiB part buffers, one made as the writer makes them and one told not to ask, prints
#: whether the kernel was asked to back them with huge pages ("hg" among the VmFlags of a mapping
#: in /proc/self/smaps) and whether every such mapping lies whole and 2 MiB-aligned inside the
#: buffer. argv[1] "pinned" sets the process up as a pool process is, each buffer a mapping of
#: its own; "unpinned" leaves glibc free to serve a buffer from the heap, which is not advised.
ADVICE_SCRIPT = """
import ctypes, pathlib, sys
from workers.malloc import HUGE_PAGE_BYTES, part_buffer, pin_mmap_threshold
if sys.argv[1] == "pinned":
    assert pin_mmap_threshold()
def advised(buffer):
    view = (ctypes.c_char * len(buffer)).from_buffer(buffer)
    start = ctypes.addressof(view)
    del view
    end = start + len(buffer)
    spans, span = [], None
    for line in pathlib.Path("/proc/self/smaps").read_text().splitlines():
        first = line.split(" ", 1)[0]
        if "-" in first and not first.endswith(":"):
            span = tuple(int(bound, 16) for bound in first.split("-"))
        elif line.startswith("VmFlags:") and "hg" in line.split()[1:]:
            if span[0] < end and start < span[1]:
                spans.append(span)
    inside = all(
        start <= low and high <= end and low % HUGE_PAGE_BYTES == high % HUGE_PAGE_BYTES == 0
        for low, high in spans
    )
    return bool(spans), inside
asked = part_buffer(16 << 20)
told_not_to = part_buffer(16 << 20, huge_pages=False)
print(*advised(asked), *advised(told_not_to))
"""


@pytest.mark.skipif(
    not pathlib.Path("/sys/kernel/mm/transparent_hugepage").exists(),
    reason="a kernel with transparent huge pages",
)
def test_a_part_buffer_asks_for_huge_pages_for_its_own_mapping_only() -> None:
    def advice(mode: str) -> list[str]:
        return printed(ADVICE_SCRIPT, mode).split()

    assert advice("pinned") == ["True", "True", "False", "True"]
    # Advice on heap memory would outlive the buffer, and the kernel could then back the heap's
    # sparse ranges with whole huge pages.
    assert advice("unpinned") == ["False", "True", "False", "True"]

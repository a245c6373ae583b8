"""Give each export's part buffers back to the operating system when the export ends.

glibc serves a large allocation with an mmap of its own and unmaps it when it is freed, but after
the first such free it raises that threshold to the freed size (up to 32 MiB). The next export's
part buffers then come from the heap, and stay resident after it ends. Measured on a worker
(`bench/worker_run.py`, 64 MiB exports one after another): idle RSS climbed from 81 to 162 MiB over
its first four exports and stayed there; with the threshold fixed it settled at 113 MiB, and the
peak while streaming fell from 162 to 146 MiB.

The threshold is 4 MiB, under the smallest part (5 MiB) and above the 1-2 MiB buffers a
converted format churns through (network chunks, slabs of records). At 1 MiB, as it first was,
each of those was a fresh mapping: page faults on every chunk, 1.3 CPU-seconds per GiB more
for the measuring pass over 1 MiB chunks. Fixing the threshold also fixes glibc's trim threshold
at 128 KiB, so the heap gave a freed chunk's pages back at once and faulted them in again for
the next; ``TRIM_THRESHOLD_BYTES`` lets it keep 8 MiB free at its top instead.

pyarrow (the ``parquet`` and ``jsonl.gz`` formats) allocates through its own mimalloc, which by
default commits whole arenas at once and keeps freed pages for a while, per thread: converting a
64 MiB export grew RSS by about 110 MiB while Arrow itself never held more than 11 MiB live.
``ARROW_ALLOCATOR_ENV`` makes it commit as it goes and return freed pages at once (44 MiB).

A part buffer is made by ``part_buffer``, not ``bytearray(size)``: that zero-fills the whole part
up front, faulting in every page of it 4 KiB at a time, even for an export of a few KiB. Left
unwritten, its pages come in as the download writes them, and where the kernel has transparent
huge pages for ranges that ask (``madvise``, the common setting) they come 2 MiB at a time.
Measured side by side in the worker's writer (``bench/part_buffers.py``; docs/performance.md,
"Part buffers"): an export in parts of 0.1-1 MiB now costs the writing thread 10-11.5 ms less
CPU, one of 64 MiB 16-18 ms less (a quarter of its sha256). Without the huge pages a full part
saves nothing: its faults only move from the zero-filling to the first write.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _ctypes import CFuncPtr

#: glibc's mallopt parameter number for the mmap threshold (malloc.h).
M_MMAP_THRESHOLD = -3
#: Allocations of this size and more are mapped, and unmapped when freed.
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
#: glibc's mallopt parameter number for the trim threshold (malloc.h).
M_TRIM_THRESHOLD = -1
#: Free memory at the top of the heap kept for reuse rather than given back.
TRIM_THRESHOLD_BYTES = 8 * 1024 * 1024


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, looked up once (``find_library`` may run ``ldconfig``; where it finds
    nothing, the process's own symbols); None where it cannot be loaded."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):
        return None


def _libc_function(name: str) -> CFuncPtr | None:
    """A function of the C library as an object of this module's own: setting its types does
    not touch what another module looked up by the same name."""
    libc = _libc()
    try:
        return None if libc is None else libc[name]
    except AttributeError:
        return None  # not glibc: this allocator or kernel has its own ways


class _Pinned:
    """The mmap threshold this process pinned, if it did: from that size up every allocation is
    a mapping of its own, unmapped when freed, so advice given on it cannot outlive it."""

    threshold: int | None = None


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold (which also stops it moving) and raise its trim threshold to
    match; False where they cannot be set."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    pinned = bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(
        mallopt(M_TRIM_THRESHOLD, max(TRIM_THRESHOLD_BYTES, 2 * threshold))
    )
    _Pinned.threshold = threshold if pinned else None
    return pinned


#: mimalloc's options (read when pyarrow loads it): commit arena memory as it is used, and
#: return freed pages to the system at once rather than after a delay.
ARROW_ALLOCATOR_ENV = {"MIMALLOC_ARENA_EAGER_COMMIT": "0", "MIMALLOC_PURGE_DELAY": "0"}


def return_arrow_memory(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Have pyarrow's allocator give freed memory back; effective only before pyarrow is first
    imported in this process. A value the operator set is kept."""
    for name, value in ARROW_ALLOCATOR_ENV.items():
        environ.setdefault(name, value)


#: madvise's advice to back a range with transparent huge pages (linux/mman.h).
MADV_HUGEPAGE = 14
#: A transparent huge page on x86-64 and most arm64 kernels; advice on a smaller range is moot.
HUGE_PAGE_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class _CApi:
    """The C functions ``part_buffer`` needs, looked up once, on first use."""

    new_bytearray: Callable[..., bytearray]
    address_of: Callable[..., int]
    madvise: Callable[..., int] | None


@functools.cache
def _c_api() -> _CApi | None:
    """``None`` where there is no CPython C API; ``madvise`` None where the C library has none.
    Each function is an object of its own (``pythonapi[name]``), typed here for this module."""
    try:
        new_bytearray = ctypes.pythonapi["PyByteArray_FromStringAndSize"]
        address_of = ctypes.pythonapi["PyByteArray_AsString"]
    except AttributeError:
        return None  # not CPython: its bytearray is all there is
    # A py_object result is a new reference, which ctypes takes over (it does not add one).
    new_bytearray.restype = ctypes.py_object
    new_bytearray.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t]
    address_of.restype = ctypes.c_void_p
    address_of.argtypes = [ctypes.py_object]
    madvise = _libc_function("madvise")
    if madvise is not None:
        madvise.restype = ctypes.c_int
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return _CApi(new_bytearray, address_of, madvise)


def part_buffer(size: int, *, huge_pages: bool = True) -> bytearray:
    """A bytearray of ``size`` bytes whose contents are whatever its memory held: the caller
    must write a byte before it reads or sends it (a fresh mapping reads as zeros; reused heap
    memory may not). Its pages are faulted in by those writes, not here; with ``huge_pages``, the
    kernel is asked to back whole 2 MiB ranges of it with huge pages (a request it may ignore),
    but only where the buffer is a mapping of its own (``pin_mmap_threshold``): advice on heap
    memory would outlive the buffer, and the kernel could then fill the heap's sparse ranges
    with whole huge pages."""
    api = _c_api()
    if api is None:
        return bytearray(size)
    buffer: bytearray = api.new_bytearray(None, size)
    mapped = _Pinned.threshold is not None and size >= _Pinned.threshold
    if huge_pages and mapped and api.madvise is not None:
        start = api.address_of(buffer)
        first = -(-start // HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES
        end = (start + size) // HUGE_PAGE_BYTES * HUGE_PAGE_BYTES
        if end > first:  # never for a buffer under 2 MiB
            # Refused where the kernel has no transparent huge pages: the pages stay small.
            api.madvise(first, end - first, MADV_HUGEPAGE)
    return buffer

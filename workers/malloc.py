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
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: glibc's mallopt parameter number for the mmap threshold (malloc.h).
M_MMAP_THRESHOLD = -3
#: Allocations of this size and more are mapped, and unmapped when freed.
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
#: glibc's mallopt parameter number for the trim threshold (malloc.h).
M_TRIM_THRESHOLD = -1
#: Free memory at the top of the heap kept for reuse rather than given back.
TRIM_THRESHOLD_BYTES = 8 * 1024 * 1024


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold (which also stops it moving) and raise its trim threshold to
    match; False where they cannot be set."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False  # not glibc (or no C library found): its allocator has its own ways
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(
        mallopt(M_TRIM_THRESHOLD, max(TRIM_THRESHOLD_BYTES, 2 * threshold))
    )


#: mimalloc's options (read when pyarrow loads it): commit arena memory as it is used, and
#: return freed pages to the system at once rather than after a delay.
ARROW_ALLOCATOR_ENV = {"MIMALLOC_ARENA_EAGER_COMMIT": "0", "MIMALLOC_PURGE_DELAY": "0"}


def return_arrow_memory(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Have pyarrow's allocator give freed memory back; effective only before pyarrow is first
    imported in this process. A value the operator set is kept."""
    for name, value in ARROW_ALLOCATOR_ENV.items():
        environ.setdefault(name, value)

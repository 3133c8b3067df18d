"""Threads of the oracle's passes: the prompts split into contiguous ranges, one thread each.

numpy's ufuncs and the numba backend's kernels release the GIL, so plain Python threads run
them in parallel.  Each prompt's row (numba) or block of rows (numpy) is the same code
whatever the split, and the sums over them are made in the same order, so the results do not
depend on the number of threads.  :func:`set_threads` sets it (``None``: the usable cores, capped by
``NUMBA_NUM_THREADS`` when that is set); a table under ``THREAD_MIN_ENTRIES`` entries stays on
one thread.
"""

from __future__ import annotations

import contextvars
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cache

__all__ = ["THREAD_MIN_ENTRIES", "get_threads", "map_blocks", "row_ranges", "run_ranges",
           "set_threads", "usable_cores"]

#: Entries below which a pass runs on one thread (2^18: a pass of about 1 ms, where starting
#: the threads would cost a noticeable part of it).
THREAD_MIN_ENTRIES = 1 << 18

_threads: int | None = None
_PREFIX = "dualgap-pass"


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def get_threads() -> int:
    """Threads of the oracle's passes: :func:`set_threads`'s value, by default the usable cores
    (at most ``NUMBA_NUM_THREADS`` when that is set)."""
    if _threads is not None:
        return _threads
    cap = os.environ.get("NUMBA_NUM_THREADS")
    if cap is None:
        return usable_cores()
    if not cap.strip().isdigit() or int(cap) < 1:
        raise ValueError(f"NUMBA_NUM_THREADS: must be an integer >= 1, got {cap!r}")
    return min(usable_cores(), int(cap))


def set_threads(threads: int | None) -> None:
    """Set the threads of the oracle's passes (``None``: back to the usable cores)."""
    global _threads
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"threads: must be an integer >= 1 or None, got {threads!r}")
    _threads = threads


@cache
def _pool(threads: int, pid: int) -> ThreadPoolExecutor:
    """A pool of ``threads`` workers for process ``pid`` (a forked child has none of its
    parent's threads, so it gets a pool of its own)."""
    return ThreadPoolExecutor(threads, thread_name_prefix=_PREFIX)


def row_ranges(X: int, Y: int) -> list[tuple[int, int]]:
    """The prompt ranges of one pass: one per thread (contiguous, balanced); one range inside
    a pass's own worker thread (a pass nested in a pass waits for no pool)."""
    nested = threading.current_thread().name.startswith(_PREFIX)
    T = min(get_threads(), X) if X * Y >= THREAD_MIN_ENTRIES and not nested else 1
    cuts = [X * t // T for t in range(T + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def run_ranges(task, X: int, Y: int) -> list:
    """``task(lo, hi)`` on each prompt range of :func:`row_ranges`, in threads when there are
    several, each in a copy of the caller's context (a worker's exception is raised here)."""
    ranges = row_ranges(X, Y)
    if len(ranges) == 1:
        return [task(*ranges[0])]
    # each worker runs in a copy of the caller's context: numpy's errstate (a context variable)
    # set around the pass holds in its threads too
    context = contextvars.copy_context()
    return list(_pool(len(ranges), os.getpid()).map(
        lambda r: context.copy().run(task, *r), ranges))


def map_blocks(block, X: int, step: int, Y: int, scratch=lambda: None) -> list:
    """``block(start, stop, buf)`` for each block of ``step`` of the ``X`` prompts (``Y``
    entries each), the blocks split over :func:`run_ranges`; ``buf = scratch()`` is made once
    per thread.  Returns the blocks' results in block order, so that a caller adding them up in
    that order gets the same bits on any number of threads."""
    starts = range(0, X, step)

    def share(lo: int, hi: int) -> list:
        buf = scratch()
        return [block(a, min(X, a + step), buf) for a in starts[lo:hi]]

    return [r for part in run_ranges(share, len(starts), min(step, X) * Y) for r in part]

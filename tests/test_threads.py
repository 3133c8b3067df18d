"""The thread setting of the compiled passes and the prompt ranges it gives."""

import pytest

from dualgap import threads


def test_threads_setting_is_checked_and_small_tables_stay_on_one_thread(monkeypatch):
    monkeypatch.setattr(threads, "_threads", None)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match=r"^threads: must be an integer >= 1 or None, got "):
            threads.set_threads(bad)
    monkeypatch.setenv("NUMBA_NUM_THREADS", "x")
    with pytest.raises(ValueError, match=r"^NUMBA_NUM_THREADS: must be an integer >= 1, got 'x'"):
        threads.get_threads()
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    assert threads.get_threads() == 1
    monkeypatch.delenv("NUMBA_NUM_THREADS")
    assert threads.get_threads() == threads.usable_cores()
    threads.set_threads(4)  # restored by monkeypatch
    assert threads.get_threads() == 4
    small = threads.THREAD_MIN_ENTRIES - 1
    assert threads.row_ranges(small, 1) == [(0, small)]
    assert threads.row_ranges(2, threads.THREAD_MIN_ENTRIES) == [(0, 1), (1, 2)]


def test_run_ranges_runs_each_range_once_and_raises_a_workers_error(monkeypatch):
    monkeypatch.setattr(threads, "THREAD_MIN_ENTRIES", 0)
    monkeypatch.setattr(threads, "_threads", 3)
    seen = threads.run_ranges(lambda lo, hi: (lo, hi), 10, 1)
    assert seen == [(0, 3), (3, 6), (6, 10)]

    def fails(lo, hi):
        raise RuntimeError(f"range {lo}:{hi}")

    with pytest.raises(RuntimeError, match=r"^range 0:3$"):
        threads.run_ranges(fails, 10, 1)


def test_workers_run_under_the_callers_numpy_error_state(monkeypatch):
    import warnings

    import numpy as np

    monkeypatch.setattr(threads, "THREAD_MIN_ENTRIES", 0)
    monkeypatch.setattr(threads, "_threads", 2)

    def overflow(lo, hi):
        return float((np.full(hi - lo, 1e308) * 10.0)[0])

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="ignore"):
            assert threads.run_ranges(overflow, 4, 1) == [np.inf, np.inf]
        with np.errstate(over="raise"), pytest.raises(FloatingPointError):
            threads.run_ranges(overflow, 4, 1)

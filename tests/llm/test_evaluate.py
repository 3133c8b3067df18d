"""Tests of dualgap/llm/evaluate.py's statistics: the mean's interval against scipy's own
t-interval (``scipy.stats.ttest_1samp(...).confidence_interval``) and win rates by hand
(the run-level ``evaluate`` is exercised end to end in tests/llm/test_run.py)."""

import numpy as np
import pytest

from dualgap.llm.evaluate import mean_ci, win_rate

stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("n, level", [(2, 0.95), (7, 0.9), (40, 0.99)])
def test_mean_ci_is_scipys_t_interval(n, level):
    x = np.random.default_rng(n).normal(1.0, 2.0, size=n)
    mean, lo, hi = mean_ci(x, level)
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(confidence_level=level)
    assert mean == pytest.approx(x.mean())
    assert (lo, hi) == pytest.approx((ci.low, ci.high), rel=1e-12)


def test_one_value_has_an_unbounded_interval_and_none_is_an_error():
    assert mean_ci(np.array([3.0])) == (3.0, -np.inf, np.inf)
    with pytest.raises(ValueError, match="values: empty"):
        mean_ci(np.array([]))


def test_win_rate_counts_ties_half_per_prompt():
    a = np.array([[2.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[1.0, 3.0], [1.0, 0.0], [1.0, 1.0]])
    # per prompt: (1 + 0)/2, (0.5 + 1)/2, 0  ->  mean (0.5 + 0.75 + 0) / 3
    rate, lo, hi = win_rate(a, b)
    assert rate == pytest.approx(1.25 / 3) and lo < rate < hi
    assert win_rate(b, a)[0] == pytest.approx(1 - 1.25 / 3)
    with pytest.raises(ValueError, match=r"scores: shapes \(3, 2\) and \(3,\) must be equal"):
        win_rate(a, b[:, 0])

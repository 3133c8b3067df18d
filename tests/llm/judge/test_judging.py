"""Tests of dualgap/llm/judge/judging.py: both orders cancel a position bias; the Wilson interval
and the bootstrap over questions (against scipy and a hand count)."""

from __future__ import annotations

import numpy as np
import pytest

from dualgap.llm.judge.judging import combine, rate_ci


def test_both_orders_cancel_a_pure_position_bias():
    # a judge that always scores the first-shown answer 8 and the second 5
    ab = np.array([[8.0, 5.0]])
    ba = np.array([[8.0, 5.0]])
    outcome, disagree = combine(ab, ba)
    assert outcome.tolist() == [0.0] and disagree.tolist() == [1.0]
    # a consistent judge: A better in both orders
    outcome, disagree = combine(np.array([[9.0, 2.0]]), np.array([[2.0, 9.0]]))
    assert outcome.tolist() == [1.0] and disagree.tolist() == [0.0]
    # bias smaller than the real gap: verdicts agree, A wins
    outcome, disagree = combine(np.array([[9.0, 4.0]]), np.array([[6.0, 7.0]]))
    assert outcome.tolist() == [1.0] and disagree.tolist() == [0.0]
    outcome, _ = combine(np.array([[np.nan, np.nan]]), np.array([[6.0, 7.0]]))
    assert np.isnan(outcome[0])


def test_wilson_interval_matches_the_formula():
    x = np.array([1.0] * 7 + [0.0] * 3)[:, None]
    r = rate_ci(x)
    n, p, z = 10, 0.7, 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert r["interval"] == "wilson" and r["n"] == 10 and r["rate"] == pytest.approx(0.7)
    assert r["ci95"] == pytest.approx([centre - half, centre + half], rel=1e-9)
    # unjudged comparisons are left out (and counted by the caller)
    r2 = rate_ci(np.array([1.0, 0.0, np.nan])[:, None])
    assert r2["n"] == 2 and r2["rate"] == 0.5


def test_bootstrap_over_questions_with_several_samples():
    rng = np.random.default_rng(1)
    x = (rng.random((40, 2)) < 0.3).astype(float)
    r = rate_ci(x)
    assert r["interval"] == "bootstrap-questions" and r["n"] == 40
    assert r["rate"] == pytest.approx(x.mean())
    assert r["ci95"][0] < r["rate"] < r["ci95"][1]
    assert rate_ci(np.ones((5, 2)))["ci95"] == [1.0, 1.0]

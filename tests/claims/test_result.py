"""ClaimResult and the shared 95% interval."""

import math

import numpy as np
import pytest
from scipy import stats

from dualgap.claims import KINDS, ClaimResult, mean_ci


def test_mean_ci_matches_scipy_t_interval():
    v = np.array([0.3, -0.1, 0.7, 0.2, 0.05])
    mean, lo, hi = mean_ci(v)
    ref = stats.t.interval(0.95, v.size - 1, loc=v.mean(), scale=stats.sem(v))
    assert mean == pytest.approx(v.mean())
    assert (lo, hi) == pytest.approx(ref)


def test_mean_ci_one_value_and_bad_input():
    assert mean_ci([2.0]) == (2.0, -math.inf, math.inf)
    with pytest.raises(ValueError, match="values"):
        mean_ci([1.0, np.nan])
    with pytest.raises(ValueError, match="values"):
        mean_ci([])
    with pytest.raises(ValueError, match="level"):
        mean_ci([1.0, 2.0], level=1.5)


def test_claim_result_counts():
    r = ClaimResult("Lemma 9", "nothing", 3)
    r.add("holds", 2)
    r.add("failed")
    assert r.counts == {k: {"holds": 2, "failed": 1}.get(k, 0) for k in KINDS}
    with pytest.raises(ValueError, match="kind"):
        r.add("passed")
    assert r.to_dict()["holds"] == 2

"""Tests of dualgap/instances.py: random instances are valid, reproducible and strictly feasible
with the promised Slater margin (checked by the exact LP margin, solved by HiGHS)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dualgap as dg
from dualgap.instances import demo_problem, random_problem


@settings(max_examples=25)
@given(st.integers(0, 2**16), st.integers(1, 5), st.integers(1, 6), st.integers(0, 3),
       st.floats(0.05, 0.5), st.sampled_from([1.0, 0.5]))
def test_random_instances_have_the_promised_slater_margin(seed, x, y, m, margin, support):
    p = random_problem(seed, x, y, m, margin=margin, support_fraction=support)
    assert p.reward.shape == (x, y) and p.utilities.shape == (m, x, y)
    np.testing.assert_allclose(p.reference.sum(axis=1), 1.0, rtol=1e-12)
    assert (p.reference > 0).any(axis=1).all()  # at least one response kept per prompt
    if m:
        assert dg.feasibility_margin(p).margin >= margin - 1e-7


def test_the_seed_fixes_the_instance():
    a, b = random_problem(11, 3, 4, 2), random_problem(11, 3, 4, 2)
    assert np.array_equal(a.reward, b.reward) and np.array_equal(a.thresholds, b.thresholds)
    assert not np.array_equal(a.reward, random_problem(12, 3, 4, 2).reward)


def test_the_demo_problem_solves_and_matches_cvxpy():
    p = demo_problem()
    sol = dg.solve(p)
    ref = dg.solve_primal_cvxpy(p)
    assert sol.primal_value == pytest.approx(ref.primal_value, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("kw, field", [(dict(num_prompts=0), "num_prompts"),
                                       (dict(seed=-1), "seed")])
def test_bad_sizes_name_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        random_problem(**kw)

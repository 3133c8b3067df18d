"""Tests of dualgap/scaling.py: the normalization's summaries map back to the same numbers the
unscaled problem gives (attainable maxima, the maximizers' slacks, the support), at any scale."""

import numpy as np
import pytest

import dualgap as dg
from dualgap.feasibility import maximizer_slacks
from dualgap.scaling import normalize


@pytest.mark.parametrize("seed, scale, support", [(0, 1.0, 1.0), (3, 1e3, 1.0), (4, 1e-3, 0.5),
                                                  (5, 1e6, 0.7)])
def test_summaries_map_back_to_the_unscaled_problem(seed, scale, support):
    p = dg.instances.random_problem(seed, 5, 6, 2, scale=scale, support_fraction=support)
    n = normalize(p)
    a = n.constraint_scales
    assert n.reward_scale > 0 and (a > 0).all()
    np.testing.assert_allclose(n.maxima * a, dg.attainable_maxima(p), rtol=1e-12)
    np.testing.assert_allclose(n.witnesses * a[None, :], maximizer_slacks(p), rtol=1e-12)
    assert n.support_entries == int(p.support.sum())
    assert n.source is p


def test_the_solution_is_the_same_in_any_units():
    """Scaling the reward by s and each utility by a_i (beta by s too) scales the value by s and
    lam_i by s / a_i, and leaves the policy alone: the normalization must undo it exactly."""
    p = dg.instances.random_problem(7, 4, 5, 2)
    s, a = 1e4, np.array([1e-3, 1e2])
    q = dg.AlignmentProblem(p.reward * s, p.utilities * a[:, None, None], p.thresholds * a,
                            p.beta * s, p.reference, relative=p.relative)
    sp, sq = dg.solve(p), dg.solve(q)
    np.testing.assert_allclose(sq.policy, sp.policy, atol=1e-9)
    assert sq.primal_value == pytest.approx(s * sp.primal_value, rel=1e-8)
    np.testing.assert_allclose(sq.lam, sp.lam * s / a, rtol=1e-6, atol=1e-9)


def test_a_policy_is_kept_only_by_the_compiled_pass_and_only_for_its_lam():
    """``dual_sums_at(..., policy=True)`` is the plain oracle on numpy (nothing kept), and
    ``take_policy`` serves nothing it was not given; the kept policy (numba) is released by the
    next oracle pass."""
    p = dg.instances.random_problem(2, 6, 7, 2)
    n = normalize(p)
    lam_n = np.array([0.2, 0.1])
    plain = n.dual_sums_at(lam_n, n.beta, 2)
    got = n.dual_sums_at(lam_n, n.beta, 2, "numpy", policy=True)
    assert got.value == plain.value and "policy_at" not in n.memo
    assert n.take_policy(n.to_problem(lam_n, p.names)) is None
    from dualgap import dual_numba

    if dual_numba.available():
        n.dual_sums_at(lam_n, n.beta, 2, "numba", policy=True)
        assert "policy_at" in n.memo
        n.dual_sums_at(lam_n, n.beta, 2, "numba")  # the next pass releases it
        assert "policy_at" not in n.memo

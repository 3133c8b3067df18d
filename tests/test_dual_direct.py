"""The exact core without normalized copies (issue 15): the direct oracle, the stats pass and
the fused final pass, against the normalized copy and against independent implementations."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax

import dualgap as dg
import dualgap.scaling as scaling
from dualgap.dual import policy_sums
from dualgap.feasibility import attainable_maxima, maximizer_slacks
from dualgap.instances import random_problem
from dualgap.testing import problems


@settings(max_examples=30, deadline=None)
@given(problems(max_constraints=3))
def test_direct_and_copy_evaluations_give_one_solution(p):
    direct = dg.solve(p)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scaling, "DIRECT_RANGE", -1.0)  # no data qualify: the normalized copy
        q = p.replace()
        copy = dg.solve(q)
        assert not q.normalized.direct
    scale = max(1.0, p.score_bound)
    np.testing.assert_allclose(direct.lam, copy.lam, rtol=1e-6, atol=1e-7 * scale)
    np.testing.assert_allclose(direct.policy, copy.policy, atol=1e-8)
    np.testing.assert_allclose(direct.slack, copy.slack, atol=1e-9 * scale)
    for field in ("dual_value", "primal_value"):
        a, b = getattr(direct, field), getattr(copy, field)
        assert abs(a - b) <= 1e-9 * (1 + abs(b)), field
    assert direct.converged == copy.converged
    assert direct.strictly_feasible == copy.strictly_feasible


@pytest.mark.parametrize("seed", range(3))
def test_ordinary_data_take_the_direct_path_and_offsets_the_copy(seed):
    p = random_problem(seed, 30, 40, 3, tightness=0.9)
    assert p.normalized.direct
    q = p.replace(utilities=p.utilities + 1e6)  # relative: c ~ 1e6 >> max |h|
    assert not q.normalized.direct
    a, b = dg.solve(p), dg.solve(q)
    assert a.converged and b.converged
    np.testing.assert_allclose(a.lam, b.lam, rtol=1e-6)  # g + 1e6 rounds g by 1e-10


@settings(max_examples=30, deadline=None)
@given(problems(max_constraints=3), st.integers(0, 2**31))
def test_stats_pass_equals_the_whole_array_functions_on_the_copy(p, seed):
    norm = p.normalized
    n = norm.problem  # the normalized copy, built on demand
    s = n.support
    np.testing.assert_allclose(norm.maxima, attainable_maxima(n), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(norm.witnesses, maximizer_slacks(n), rtol=1e-12, atol=1e-12)
    want = [np.ptp(n.reward[s])] + [np.ptp(n.utilities[i][s]) for i in range(p.num_constraints)]
    np.testing.assert_allclose(norm.spreads, want, rtol=1e-12, atol=1e-12)
    assert norm.support_entries == int(s.sum())
    lam = np.random.default_rng(seed).exponential(size=p.num_constraints)
    ev = dg.dual_oracle(n, lam)
    got = norm.dual_sums_at(lam, n.beta, 2)
    # D' = (D - E_rho u) / s: the copy shifts by u = the support row max, direct by u = 0
    u_copy = scaling._support_row_max(p, p.reward)
    want = ev.value + float(p.prompt_weights @ (u_copy - norm.reward_shift)) / norm.reward_scale
    assert got.value == pytest.approx(want, rel=1e-11, abs=1e-11)
    np.testing.assert_allclose(got.gradient, ev.gradient, atol=1e-11 * (1 + lam.sum()))
    np.testing.assert_allclose(got.hessian, ev.hessian, rtol=1e-8,
                               atol=1e-11 * np.abs(ev.hessian).max(initial=1.0))


def test_policy_sums_against_softmax_and_the_policy_functionals():
    p = random_problem(7, 25, 30, 2, support_fraction=0.7)
    lam = np.array([0.3, 1.7])
    out = np.full_like(p.reward, np.nan)
    ps = policy_sums(p.reward, p.utilities, p.log_reference, p.prompt_weights, lam, p.beta, out,
                     block_entries=64)  # several blocks
    z = np.where(p.support, (p.reward + np.tensordot(lam, p.utilities, 1)) / p.beta, -np.inf)
    want = softmax(z + np.where(p.support, np.log(np.where(p.support, p.reference, 1.0)), 0.0),
                   axis=1)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ps.utilities, dg.expected_utilities(p, want), rtol=1e-12)
    rho = p.prompt_weights
    assert ps.reward == pytest.approx(float(rho @ (want * p.reward).sum(axis=1)), rel=1e-12)
    assert ps.kl == pytest.approx(float(rho @ dg.kl_divergence(p, want)), rel=1e-10)
    np.testing.assert_array_equal(dg.lagrangian_policy(p, lam)[~p.support], 0.0)


def test_solve_allocates_little_beyond_its_policy():
    """tracemalloc peak over the input arrays: the policy (1/(2 + m) of the input), log pi_ref
    and the support mask (cached on the problem), cache-sized blocks; no normalized copy."""
    p = random_problem(3, 100, 2000, 3, beta=0.5, support_fraction=0.9, tightness=0.9)
    table = p.reward.nbytes + p.utilities.nbytes + p.reference.nbytes
    tracemalloc.start()
    sol = dg.solve(p)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert sol.converged and p.normalized.direct
    assert peak < 0.6 * table, peak / table

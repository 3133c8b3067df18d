"""Dual descent in distribution space: against cvxpy, the descent property, the sampled
gradient's mean and second moment (Monte Carlo), and the stochastic best-iterate bound."""

import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings

import dualgap as dg
from dualgap.algorithms import dual_descent, sampled_slack, slack_second_moment
from dualgap.instances import random_problem
from dualgap.testing import problems
from dualgap.theory import smoothness_bound


@settings(max_examples=15)
@given(problems(min_constraints=1, max_constraints=3, max_prompts=4, max_responses=6))
def test_exact_dual_descent_reaches_the_cvxpy_optimum(p):
    assume(smoothness_bound(p) > 0)  # L_D = 0 (one response per prompt): no 1/L_D step
    ref = dg.solve_primal_cvxpy(p)
    sol = dg.solve(p)
    tr = dual_descent(p, 400, step_rule="smooth", exact_solution=sol)
    # 1/L_D steps: D non-increasing (Lemma 1 smoothness) and the O(1/T) rate
    assert (np.diff(tr.dual_value) <= 1e-10 * (1 + p.score_bound) * (1 + tr.lam.sum(1)[1:])).all()
    L = smoothness_bound(p)
    bound = L * float(np.sum(sol.lam ** 2)) / (2 * 400)
    assert tr.dual_value[-1] - ref.primal_value <= bound + 1e-6 * (1 + abs(ref.primal_value))


def test_converges_to_lam_star_on_a_fixed_instance():
    p = random_problem(1, 5, 8, 2, beta=0.5, tightness=0.9)
    ref = dg.solve_primal_cvxpy(p)
    tr = dual_descent(p, 500)
    np.testing.assert_allclose(tr.lam[-1], ref.lam, atol=1e-5)
    assert tr.objective[-1] == pytest.approx(ref.primal_value, abs=1e-6)


def test_sampled_slack_mean_and_second_moment_by_monte_carlo():
    p = random_problem(2, 4, 7, 2, beta=0.7)
    pi = dg.lagrangian_policy(p, [0.4, 0.9])
    rng = np.random.default_rng(0)
    N, reps = 3, 20_000
    draws = np.array([sampled_slack(p, pi, N, rng) for _ in range(reps)])
    exact = dg.constraint_slack(p, pi)
    se = draws.std(axis=0) / np.sqrt(reps)
    assert np.all(np.abs(draws.mean(axis=0) - exact) < 5 * se)  # unbiased
    m2 = (draws ** 2).sum(axis=1)
    assert abs(m2.mean() - slack_second_moment(p, pi, N)) < 5 * m2.std() / np.sqrt(reps)


def test_sampled_runs_are_seeded_and_record_second_moments():
    p = random_problem(2, 4, 7, 2, beta=0.7)
    a = dual_descent(p, 20, samples=2, step_rule="constant", step_size=0.1, seed=3)
    b = dual_descent(p, 20, samples=2, step_rule="constant", step_size=0.1, seed=3)
    c = dual_descent(p, 20, samples=2, step_rule="constant", step_size=0.1, seed=4)
    np.testing.assert_array_equal(a.lam, b.lam)
    assert not np.array_equal(a.lam, c.lam)
    assert np.isfinite(a.second_moment[:-1]).all() and np.isnan(a.second_moment[-1])


@pytest.mark.parametrize("eta_fraction", [1.0, 0.1])
def test_stochastic_best_iterate_bound_finite_T_form(eta_fraction):
    """E min_t D(lam_t) - D* <= ||lam_0 - lam*||^2 / (2 eta T) + eta S^2 / 2 (eps_app = 0).

    Harder-side estimates: D(lam_t) and D* exact; S^2 = the largest *exact* conditional second
    moment at the visited iterates (the smallest valid constant); the expectation is checked on
    the mean over 8 seeds (the bound is on the expectation)."""
    p = random_problem(7, 10, 12, 2, beta=0.5, tightness=0.9)
    sol = dg.solve(p)
    eta = eta_fraction / smoothness_bound(p)
    T, gaps, bounds = 200, [], []
    for seed in range(8):
        tr = dual_descent(p, T, step_rule="constant", step_size=eta, samples=2, seed=seed)
        gaps.append(tr.dual_value.min() - sol.dual_value)
        S2 = np.nanmax(tr.second_moment)
        bounds.append(float(np.sum(sol.lam ** 2)) / (2 * eta * T) + eta * S2 / 2)
    assert np.mean(gaps) <= np.mean(bounds)
    assert min(gaps) >= -1e-12  # D* is the minimum


def test_errors():
    p = random_problem(0, 2, 3, 1)
    with pytest.raises(ValueError, match="iterations"):
        dual_descent(p, -1)
    with pytest.raises(ValueError, match="samples"):
        dual_descent(p, 3, samples=0)
    with pytest.raises(ValueError, match="lam0"):
        dual_descent(p, 3, lam0=[-1.0])
    with pytest.raises(ValueError, match="step_size"):
        dual_descent(p, 3, step_rule="constant")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dual_descent(p, 0)  # zero iterations: one record, no warnings
    one = dg.AlignmentProblem([[0.0, 1.0]], [[[0.0, 1.0]]], [-0.5], 1.0, [[0.0, 1.0]])
    with pytest.raises(ValueError, match="smoothness bound L_D = 0"):
        dual_descent(one, 3, step_rule="smooth")

"""The constants and statements of docs/theory.md (dualgap.theory), and ``dualgap report``."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dualgap import dual_gradient, dual_hessian, solve, solve_primal_cvxpy
from dualgap.instances import random_problem
from dualgap.testing import multipliers, problems
from dualgap.theory import (
    dual_curvature,
    dual_descent_bound,
    fit_slope,
    gap_constant,
    optimality_gaps,
    smoothness_bound,
    tightened_multiplier,
)


@settings(max_examples=30)
@given(problems(max_prompts=5, max_responses=8, min_constraints=1, max_constraints=3),
       st.data())
def test_smoothness_bound_dominates_the_hessian(problem, data):
    """Lemma 1: lambda_max(hess D(lam)) <= L_D at random lam (hess from the core, exact)."""
    lam = data.draw(multipliers(problem.num_constraints, 20.0))
    L_D = smoothness_bound(problem)
    top = np.linalg.eigvalsh(dual_hessian(problem, lam))[-1]
    assert top <= L_D * (1 + 1e-12) + 1e-15
    M, m = problem.score_bound, problem.num_constraints
    assert L_D <= m * M * M / problem.beta * (1 + 1e-12)


def test_smoothness_bound_is_attained_by_a_two_point_prompt():
    """Closed form: one prompt, two responses with g = (0, d): Var <= d^2 / 4, equality at
    the 50/50 policy, which pi_lam reaches for the lam that equalizes the two logits."""
    ref = np.array([[0.5, 0.5]])
    r = np.array([[0.0, 0.0]])
    g = np.array([[[0.0, 2.0]]])
    from dualgap import AlignmentProblem

    p = AlignmentProblem(r, g, [-1.0], 0.5, ref, relative=False)
    assert smoothness_bound(p) == pytest.approx(4.0 / (4 * 0.5))
    assert dual_hessian(p, [0.0])[0, 0] == pytest.approx(smoothness_bound(p))


def test_dual_curvature_against_finite_differences_of_the_gradient():
    p = random_problem(3, 5, 6, 2, 0.4)
    lam = solve(p).lam
    h = 1e-6
    H = np.column_stack([(dual_gradient(p, lam + h * e) - dual_gradient(p, lam - h * e)) / (2 * h)
                         for e in np.eye(2)])
    assert dual_curvature(p) == pytest.approx(np.linalg.eigvalsh((H + H.T) / 2)[0], rel=1e-6)


def test_tightened_multiplier_against_cvxpy():
    """lam*_nu = the multiplier of the problem tightened by M nu (cvxpy's constraint duals)."""
    p = random_problem(4, 5, 6, 2, 0.5, margin=0.2)
    nu = 0.01
    t = tightened_multiplier(p, nu)
    assert t.feasible and t.eps == pytest.approx(p.score_bound * nu)
    ref = solve_primal_cvxpy(p.tightened(p.score_bound * nu))
    np.testing.assert_allclose(t.lam, ref.lam, atol=1e-5)
    assert np.all(t.lam >= solve(p).lam - 1e-9)  # tightening never lowers these multipliers
    assert not tightened_multiplier(p, 100.0).feasible


def test_gap_constant_and_validation():
    p = random_problem(5, 3, 4, 2, 0.7)
    M = p.score_bound
    assert gap_constant(p, [1.0, 2.0], 0.1) == pytest.approx((M + 0.7 + 3 * M) * 0.1)
    with pytest.raises(ValueError, match="nu"):
        gap_constant(p, [0.0, 0.0], -1.0)
    with pytest.raises(ValueError, match="eta"):
        dual_descent_bound(-1.0, 1.0, 0.0)
    assert dual_descent_bound(0.1, 2.0, 0.05) == pytest.approx(0.1 * 4 / 2 + 0.05)


def test_fit_slope_recovers_a_power_law():
    nu = np.logspace(-4, -1, 7)
    slope, a = fit_slope(nu, 3.0 * nu**1.5)
    assert slope == pytest.approx(1.5, abs=1e-12) and a == pytest.approx(math.log(3.0))
    assert math.isnan(fit_slope([1e-3], [1e-3])[0])
    with pytest.raises(ValueError, match="gap: shape"):
        fit_slope(nu, nu[:3])


def test_optimality_gaps_of_the_optimum_and_of_the_reference():
    p = random_problem(6, 4, 6, 2, 0.5, tightness=1.0)
    sol = solve(p)
    at_opt = optimality_gaps(p, sol.policy, sol)
    assert abs(at_opt.reward_gap) < 1e-12 and at_opt.violation < 1e-9
    at_ref = optimality_gaps(p, p.reference, sol)
    assert at_ref.violation > 0  # relative thresholds b > 0: pi_ref violates them
    np.testing.assert_allclose(at_ref.slack, -p.thresholds, atol=1e-12)


"""CAID against the exact solver (cvxpy), dual descent, and its two starts."""

import numpy as np
import pytest

import dualgap as dg
from dualgap.algorithms import caid, dual_descent, one_shot_multiplier
from dualgap.instances import random_problem

torch = pytest.importorskip("torch")
from dualgap.policies import LogLinearPolicy, TabularPolicy, problem_features  # noqa: E402


@pytest.fixture(scope="module")
def problem():
    return random_problem(1, 5, 8, 2, beta=0.5, tightness=0.9)


@pytest.fixture(scope="module")
def reference(problem):
    return dg.solve_primal_cvxpy(problem)


def test_tabular_caid_reaches_the_cvxpy_optimum(problem, reference):
    tr = caid(problem, TabularPolicy(problem), iterations=150, step_rule="smooth",
              inner_steps=1, one_shot_samples=16)
    np.testing.assert_allclose(tr.lam[-1], reference.lam, atol=1e-4)
    assert tr.objective[-1] == pytest.approx(reference.primal_value, abs=1e-5)
    assert tr.violation[-1] <= 1e-5


def test_exact_caid_is_dual_descent(problem):
    lam0 = np.array([2.0, 0.1])
    a = caid(problem, None, iterations=30, step_rule="constant", step_size=0.2, lam0=lam0)
    b = dual_descent(problem, 30, step_rule="constant", step_size=0.2, lam0=lam0)
    np.testing.assert_allclose(a.lam, b.lam, atol=1e-13)
    # tabular class with an exact (natural) policy step: the same iterates up to round-off
    c = caid(problem, TabularPolicy(problem), iterations=30, step_rule="constant",
             step_size=0.2, lam0=lam0, inner_steps=3)
    np.testing.assert_allclose(c.lam, b.lam, atol=1e-7)


def test_practical_start_uses_the_one_shot_multiplier(problem):
    tr = caid(problem, None, iterations=2, step_rule="constant", step_size=0.1,
              one_shot_samples=8, seed=5)
    lam_hat, _ = one_shot_multiplier(problem, 8, 5)
    np.testing.assert_array_equal(tr.lam[0], lam_hat)
    np.testing.assert_array_equal(tr.extra["one_shot_lam"], lam_hat)
    # the first record's policy is the Lagrangian maximizer at lam_hat
    pi = dg.lagrangian_policy(problem, lam_hat)
    assert tr.objective[0] == pytest.approx(dg.objective(problem, pi), abs=1e-12)


def test_literal_start_takes_the_first_dual_step_at_pi_ref(problem):
    tr = caid(problem, TabularPolicy(problem), iterations=3, step_rule="constant",
              step_size=0.3, start="literal")
    ref_slack = dg.constraint_slack(problem, problem.reference)
    np.testing.assert_allclose(tr.slack[0], ref_slack, atol=1e-12)
    np.testing.assert_allclose(tr.lam[1], np.maximum(0 - 0.3 * ref_slack, 0), atol=1e-12)
    assert tr.objective[0] == pytest.approx(dg.objective(problem, problem.reference), abs=1e-12)


def test_loglinear_class_containing_pi_lam_reaches_lam_star(problem, reference):
    pc = LogLinearPolicy(problem, problem_features(problem))  # contains every pi_lam: nu = 0
    tr = caid(problem, pc, iterations=120, step_rule="smooth", inner_steps=10)
    np.testing.assert_allclose(tr.lam[-1], reference.lam, atol=1e-3)


def test_inexact_inner_steps_are_lower_estimates_of_D(problem):
    tr = caid(problem, TabularPolicy(problem), iterations=10, step_rule="constant",
              step_size=0.2, inner_steps=1, inner_method="lbfgs", samples=4, seed=0)
    # L(pi_theta, lam) <= D_p(lam) = D(lam) for the tabular class (Lemma 3 with nu = 0)
    assert (tr.lagrangian <= tr.dual_value + 1e-12).all()
    assert (tr.dual_value - tr.lagrangian).max() > 1e-4  # the policy step really was inexact
    assert np.isfinite(tr.second_moment[:-1]).all()


def test_errors(problem):
    with pytest.raises(ValueError, match="start"):
        caid(problem, None, iterations=1, step_size=0.1, start="warm")
    with pytest.raises(ValueError, match="inner_steps"):
        caid(problem, None, iterations=1, step_size=0.1, inner_steps=0)
    with pytest.raises(ValueError, match="step_size"):
        caid(problem, None, iterations=1)

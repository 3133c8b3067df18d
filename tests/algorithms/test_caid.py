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
    with pytest.raises(ValueError, match="step_size: step_rule 'constant' needs a number"):
        caid(problem, None, iterations=1, step_rule="constant")
    with pytest.raises(ValueError, match="step_size: step_rule 'newton' computes its own"):
        caid(problem, None, iterations=1, step_rule="newton", step_size=0.1)
    with pytest.raises(ValueError, match="step_size: a positive float or 'auto'"):
        caid(problem, None, iterations=1, step_size="fast")


# ------------------------------------------------------------ the self-tuning dual step (auto)
def test_auto_step_converges_to_lam_star_with_exact_expectations(problem, reference):
    # no number from the user: the default step_size="auto" (projected Newton, trust region)
    tr = caid(problem, TabularPolicy(problem), iterations=12, inner_steps=1, one_shot_samples=16)
    np.testing.assert_allclose(tr.lam[-1], reference.lam, atol=1e-6)
    assert tr.objective[-1] == pytest.approx(reference.primal_value, abs=1e-7)
    steps = tr.extra["dual_steps"]
    assert len(steps) == 12 and {s["rule"] for s in steps} == {"newton"}
    assert all(s["used"] == "newton" and s["fallback"] is None for s in steps)
    assert tr.config["step_size"] == "auto" and tr.config["step_rule"] == "auto"
    # the 1/L_D step is far slower on the same instance
    slow = caid(problem, TabularPolicy(problem), iterations=12, step_rule="smooth",
                inner_steps=1, one_shot_samples=16)
    assert np.abs(slow.lam[-1] - reference.lam).max() > 100 * np.abs(
        tr.lam[-1] - reference.lam).max()
    # from the literal start lam_0 = 0 at pi_ref as well
    lit = caid(problem, TabularPolicy(problem), iterations=15, inner_steps=1, start="literal")
    np.testing.assert_allclose(lit.lam[-1], reference.lam, atol=1e-6)


def test_auto_step_converges_with_sampled_gradients(problem, reference):
    tr = caid(problem, TabularPolicy(problem), iterations=200, inner_steps=1, samples=64,
              one_shot_samples=4, seed=1)
    start_err = np.abs(tr.lam[0] - reference.lam).max()
    end_err = np.abs(tr.lam[-1] - reference.lam).max()
    assert end_err < 0.05 * np.abs(reference.lam).max() and end_err < start_err, (start_err,
                                                                                 end_err)
    gains = [s["gain"] for s in tr.extra["dual_steps"]]
    assert gains[0] == 1.0 and gains[-1] < 0.1  # Kesten's gain fell as the steps turned back
    # the sampled u_t is the sampled_slack of a numeric-step run with the same seed
    ref = caid(problem, TabularPolicy(problem), iterations=1, step_rule="constant", step_size=1e-12,
               inner_steps=1, samples=64, one_shot_samples=4, seed=1)
    np.testing.assert_allclose(tr.direction[0], ref.direction[0], atol=1e-15)


def test_auto_step_with_one_sample_falls_back_and_says_so(problem):
    tr = caid(problem, TabularPolicy(problem), iterations=3, inner_steps=1, samples=1, seed=0)
    for s in tr.extra["dual_steps"]:
        assert s["used"] == "damped" and "fewer than 2 samples" in s["fallback"]
        assert s["eta"] > 0
    np.testing.assert_allclose(  # the damped step [lam - eta u]_+ with the recorded eta
        tr.lam[1], np.maximum(tr.lam[0] - tr.extra["dual_steps"][0]["eta"] * tr.direction[0], 0),
        atol=1e-12)
    tr.to_json()  # the records are JSON-ready


@pytest.mark.parametrize("rule", ["curvature", "empirical"])
def test_other_rules_are_options(problem, reference, rule):
    tr = caid(problem, TabularPolicy(problem), iterations=60, step_rule=rule, inner_steps=1)
    assert {s["rule"] for s in tr.extra["dual_steps"]} == {rule}
    np.testing.assert_allclose(tr.lam[-1], reference.lam, atol=1e-3)

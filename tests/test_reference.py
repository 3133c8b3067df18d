"""Tests of dualgap/reference.py: the cvxpy primal against closed forms (the unconstrained
Gibbs policy; two responses, one binding constraint), its KKT signs, and zeros of pi_ref."""

import numpy as np
import pytest

import dualgap as dg
from dualgap.instances import random_problem

pytest.importorskip("cvxpy")


def test_unconstrained_is_the_gibbs_policy():
    p = random_problem(2, 4, 5, 0, beta=0.7)
    ref = dg.solve_primal_cvxpy(p)
    gibbs = p.reference * np.exp(p.reward / 0.7)
    gibbs /= gibbs.sum(axis=1, keepdims=True)
    # the interior-point solver at its default tolerances (objective to ~1e-8) gives the policy
    # only to ~1e-5 (the objective is flat to first order at the optimum)
    np.testing.assert_allclose(ref.policy, gibbs, atol=1e-4)
    expected = 0.7 * p.prompt_weights @ np.log((p.reference * np.exp(p.reward / 0.7)).sum(1))
    assert ref.primal_value == pytest.approx(expected, rel=1e-6)
    assert ref.status.startswith("optimal") and ref.lam.shape == (0,)


def test_two_responses_one_binding_constraint():
    q, beta, c = 0.7, 0.3, 0.6
    p = dg.AlignmentProblem(np.array([[1.0, 0.0]]), np.array([[[0.0, 1.0]]]), [c], beta,
                            np.array([[q, 1 - q]]), relative=False)
    ref = dg.solve_primal_cvxpy(p)
    logit = lambda z: np.log(z / (1 - z))  # noqa: E731
    assert ref.lam[0] == pytest.approx(1.0 + beta * (logit(c) - logit(1 - q)), rel=1e-4)
    assert ref.policy[0, 1] == pytest.approx(c, abs=1e-6)
    kl = c * np.log(c / (1 - q)) + (1 - c) * np.log((1 - c) / q)
    assert ref.primal_value == pytest.approx((1 - c) - beta * kl, rel=1e-6)
    assert ref.slack[0] == pytest.approx(0.0, abs=1e-6)


def test_kkt_signs_and_the_reference_support():
    p = random_problem(5, 5, 6, 2, support_fraction=0.6)
    ref = dg.solve_primal_cvxpy(p)
    assert (ref.lam >= -1e-7).all() and (ref.slack >= -1e-6).all()
    assert np.abs(ref.lam * ref.slack).max() < 1e-5  # complementary slackness
    assert (ref.policy[p.reference == 0] == 0).all()
    np.testing.assert_allclose(ref.policy.sum(axis=1), 1.0, atol=1e-7)

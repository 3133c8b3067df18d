"""One-shot dualization: exact limit, convergence in K, and the policy step."""

import numpy as np
import pytest

import dualgap as dg
from dualgap.algorithms import one_shot, one_shot_multiplier
from dualgap.empirical import empirical_problem
from dualgap.instances import random_problem


@pytest.fixture(scope="module")
def problem():
    return random_problem(4, 6, 10, 2, beta=0.5, tightness=0.8)


def test_exact_one_shot_is_the_optimum(problem):
    ref = dg.solve_primal_cvxpy(problem)
    tr = one_shot(problem, samples=None)
    assert tr.num_records == 1
    np.testing.assert_allclose(tr.lam[0], ref.lam, atol=1e-5)
    assert tr.objective[0] == pytest.approx(ref.primal_value, abs=1e-6)


def test_lam_hat_is_the_empirical_instance_optimum(problem):
    lam_hat, emp = one_shot_multiplier(problem, 12, seed=3)
    again = dg.solve(empirical_problem(problem, 12, 3))
    np.testing.assert_array_equal(lam_hat, again.lam)
    # KKT on the empirical instance: its gradient vanishes on the active set
    g = dg.dual_gradient(empirical_problem(problem, 12, 3), lam_hat)
    assert np.all(np.abs(np.where(lam_hat > 0, g, 0)) < 1e-8)


def test_lam_hat_approaches_lam_star_as_K_grows(problem):
    lam_star = dg.solve(problem).lam
    err = {K: np.mean([np.abs(one_shot_multiplier(problem, K, s)[0] - lam_star).sum()
                       for s in range(6)]) for K in (4, 4096)}
    assert err[4096] < 0.25 * err[4]
    assert err[4096] < 0.05 * (1 + lam_star.sum())


def test_policy_class_step(problem):
    torch = pytest.importorskip("torch")  # noqa: F841
    from dualgap.policies import TabularPolicy

    a = one_shot(problem, TabularPolicy(problem), samples=16, seed=1)
    b = one_shot(problem, None, samples=16, seed=1)
    np.testing.assert_array_equal(a.lam, b.lam)
    np.testing.assert_allclose(a.slack, b.slack, atol=1e-7)  # tabular: exact maximizer
    assert a.extra["lam_hat"].shape == (2,)

"""Tests of dualgap/feasibility.py: attainable maxima, the ray certificate of joint infeasibility,
the feasibility margin, and boundary feasibility (a warning and an unbounded multiplier)."""

import numpy as np
import pytest

import dualgap as dg
from dualgap.instances import random_problem


def test_single_constraint_out_of_reach_is_infeasible():
    p = random_problem(0, 4, 5, 2)
    best = dg.attainable_maxima(p)
    q = p.replace(thresholds=p.thresholds + np.array([best[0] + 0.1, 0.0]))
    with pytest.raises(dg.InfeasibleError) as err:
        dg.solve(q)
    assert "constraint 0 (g1): best attainable E h = -0.1" in str(err.value)
    assert err.value.maxima[0] == pytest.approx(-0.1)
    with pytest.raises(dg.InfeasibleError):
        dg.solve_primal_cvxpy(q)


def test_jointly_infeasible_has_a_ray_certificate():
    # one prompt, two responses: g1 = (1, -1), g2 = (-1, 1); each alone attainable, not both
    g = np.array([[[1.0, -1.0]], [[-1.0, 1.0]]])
    p = dg.AlignmentProblem(
        np.zeros((1, 2)), g, [0.2, 0.2], 0.1, np.array([[0.5, 0.5]]), relative=False
    )
    assert (dg.attainable_maxima(p) > 0).all()
    with pytest.raises(dg.InfeasibleError, match="not jointly") as err:
        dg.solve(p)
    w = err.value.weights
    assert dg.ray_bound(p, w) < 0 and err.value.bound == pytest.approx(dg.ray_bound(p, w))
    assert dg.feasibility_margin(p).margin == pytest.approx(-0.2)


def test_boundary_feasible_warns_and_flags_unbounded_multiplier():
    g = np.array([[[1.0, -1.0]], [[-1.0, 1.0]]])
    p = dg.AlignmentProblem(
        np.array([[1.0, 0.0]]), g, [0.0, 0.0], 0.1, np.array([[0.5, 0.5]]), relative=False
    )
    with pytest.warns(dg.BoundaryFeasibleWarning):
        sol = dg.solve(p)
    assert sol.multiplier_unbounded and sol.strictly_feasible is False
    np.testing.assert_allclose(sol.policy, [[0.5, 0.5]], atol=1e-6)
    # a single constraint that can only be met with equality
    q = dg.AlignmentProblem(
        np.array([[1.0, 0.0]]),
        np.array([[[0.0, -1.0]]]),
        [0.0],
        0.1,
        np.array([[0.5, 0.5]]),
        relative=False,
    )
    with pytest.warns(dg.BoundaryFeasibleWarning):
        sol = dg.solve(q)
    assert sol.multiplier_unbounded
    assert sol.policy[0, 1] < 1e-6

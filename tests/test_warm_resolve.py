"""A warm re-solve skips the passes that depend on the constraint set alone."""

import numpy as np
import pytest

import dualgap as dg
import dualgap.scaling as scaling
import dualgap.solver as solver
from dualgap.instances import random_problem


def _forbid(*args, **kwargs):
    raise AssertionError("recomputed on a warm re-solve")


def test_warm_resolve_reuses_the_stats_pass_and_the_slater_certificate(monkeypatch):
    p = random_problem(5, 30, 20, 3, tightness=0.9)
    cold = dg.solve(p)
    fresh = dg.solve(p.replace(), lam0=cold.lam)  # the same warm start on a new problem object
    monkeypatch.setattr(solver, "certify_slater", _forbid)
    monkeypatch.setattr(scaling, "normalize", _forbid)  # maxima, ranges, Slater candidates
    warm = dg.solve(p, lam0=cold.lam)
    assert warm.strictly_feasible is cold.strictly_feasible is True
    assert warm.margin == cold.margin == pytest.approx(fresh.margin, rel=1e-6)
    np.testing.assert_allclose(warm.lam, cold.lam, rtol=1e-9, atol=1e-12)
    assert warm.passes == fresh.passes - 1  # no stats pass
    # a different problem (even one sharing the arrays) computes its own
    monkeypatch.undo()
    q = p.replace(beta=2 * p.beta)
    assert "normalized" not in q.__dict__
    assert dg.solve(q).strictly_feasible


def test_boundary_feasible_warm_resolve_still_warns():
    g = np.array([[[1.0, -1.0]], [[-1.0, 1.0]]])
    p = dg.AlignmentProblem(
        np.array([[1.0, 0.0]]), g, [0.0, 0.0], 0.1, np.array([[0.5, 0.5]]), relative=False
    )
    with pytest.warns(dg.BoundaryFeasibleWarning):
        sol = dg.solve(p)
    with pytest.warns(dg.BoundaryFeasibleWarning):
        again = dg.solve(p, lam0=sol.lam)
    assert again.multiplier_unbounded and again.strictly_feasible is False

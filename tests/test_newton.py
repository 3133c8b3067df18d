"""Tests of dualgap/newton.py: the KKT residual against its definition ``||lam - [lam - g]_+||``
(computed here the naive way, exact for small integers), its cancellation-free form at large
multipliers, and the loop's result satisfying KKT to the reported tolerance."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dualgap as dg
from dualgap.newton import kkt_residual

_ints = st.lists(st.integers(-50, 50), min_size=1, max_size=6)


@given(_ints.flatmap(lambda v: st.tuples(st.just(v), st.lists(
    st.integers(-50, 50), min_size=len(v), max_size=len(v)))))
def test_the_residual_is_the_projected_step_norm(pair):
    lam = np.abs(np.array(pair[0], dtype=float))  # multipliers are >= 0
    grad = np.array(pair[1], dtype=float)
    naive = np.abs(lam - np.maximum(lam - grad, 0.0)).max()
    assert kkt_residual(lam, grad) == naive


def test_no_cancellation_at_large_multipliers():
    # naive lam - (lam - g) with lam = 1e20 returns 0, hiding the stationarity error g
    assert kkt_residual(np.array([1e20]), np.array([1e-3])) == 1e-3
    assert kkt_residual(np.array([0.0, 2.0]), np.array([5.0, 0.0])) == 0.0  # KKT holds
    assert kkt_residual(np.array([]), np.array([])) == 0.0


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="lam and grad must be vectors of one shape"):
        kkt_residual(np.zeros(2), np.zeros(3))


def test_the_solver_meets_kkt_at_its_reported_tolerance():
    p = dg.instances.random_problem(9, 6, 7, 3, tightness=0.95)
    sol = dg.solve(p)
    assert sol.converged
    assert kkt_residual(sol.lam, sol.slack) <= sol.kkt_tolerance

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


def test_speculation_only_where_quadratic_convergence_predicts_the_end():
    """The speculate oracle takes the full step of an iteration predicted to converge
    (kkt^3 / kkt_prev^2 <= tol) and nothing else; the iterates are those of the plain
    loop (the same oracle behind both)."""
    from dualgap.newton import Newton

    p = dg.instances.random_problem(4, 30, 40, 2, tightness=0.9)
    norm = p.normalized
    oracle = lambda x: norm.dual_sums_at(x, norm.beta, 2)  # noqa: E731
    calls = []

    def speculate(x):
        calls.append(x.copy())
        return oracle(x)

    args = (norm.maxima, 1e-12, 1.0, norm.ray_bound, p)
    plain, spec = Newton(oracle, *args), Newton(oracle, *args, speculate=speculate)
    lam_a = plain.run(np.zeros(2), tol=1e-10, max_iter=50)
    lam_b = spec.run(np.zeros(2), tol=1e-10, max_iter=50)
    np.testing.assert_array_equal(lam_a, lam_b)
    assert spec.passes == plain.passes and spec.history == plain.history
    # never on the first iteration (no prediction yet), at most once per later iteration
    assert 1 <= len(calls) <= spec.iterations - 1
    np.testing.assert_array_equal(calls[-1], lam_b)  # the last pass was the speculated one
    kkts = [h[1] for h in plain.history]
    assert kkts[-2] ** 3 <= 1e-10 * kkts[-3] ** 2  # the last step was predicted to converge

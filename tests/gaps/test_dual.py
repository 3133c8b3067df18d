"""The parametrized dual D*_p by the bundle method (dualgap.gaps.dual), with P*_p beside it."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dualgap import (
    constraint_slack,
    objective,
    solve,
    solve_primal_cvxpy,
)
from dualgap.gaps import (
    lagrangian_max,
    parametrized_dual,
    parametrized_primal,
)
from dualgap.instances import random_problem
from dualgap.policies import LogLinearPolicy, TabularPolicy, problem_features
from dualgap.testing import problems

small = problems(max_prompts=4, max_responses=6, min_constraints=1, max_constraints=2)


@settings(max_examples=6)
@given(problems(max_prompts=3, max_responses=5, min_constraints=1, max_constraints=2),
       st.floats(0.05, 0.5))
def test_weak_duality_against_every_feasible_theta_found(problem, noise):
    """D_p(lam) >= J(theta) for each feasible theta found, at every lam the bundle visited
    (D_p a lower estimate: the harder side).  The estimate is the report's: a local search
    warm-started at the bundle's best cut there (``gap_report``'s ``best_theta``); a search
    from the class's default start alone may end in a worse local maximum (seen: 0.00417
    against a feasible J of 0.01045 at X = 2, Y = 3, beta = 0.1), which is a search failure,
    not a failure of weak duality."""
    cls = LogLinearPolicy(problem, problem_features(problem, noise=noise, seed=2))
    dual = parametrized_dual(problem, cls)
    primal = parametrized_primal(problem, cls, dual)
    assert primal.found
    feasible_J = [primal.value]
    for th in dual.thetas:
        pol = cls.policy(th)
        if constraint_slack(problem, pol).min() >= 0:
            feasible_J.append(objective(problem, pol))
    for lam, _, _, _ in dual.cuts:
        best = int(np.argmax([J + lam @ sl for _, _, J, sl in dual.cuts]))
        est = lagrangian_max(problem, cls, lam, theta0=dual.thetas[best]).value
        assert est >= max(feasible_J) - 1e-12
    assert dual.lower_bound >= primal.value - 1e-9  # weak duality, certified side
    assert dual.lower_bound <= dual.value + 1e-15


@settings(max_examples=6)
@given(problems(max_prompts=4, max_responses=6, min_constraints=1, max_constraints=2))
def test_tabular_class_reproduces_the_distribution_space_solution(problem):
    """lam*_p = lam*, D*_p = D*, P*_p = P* within 1e-6; P* also from cvxpy (independent)."""
    sol = solve(problem)
    cls = TabularPolicy(problem)
    dual = parametrized_dual(problem, cls)
    primal = parametrized_primal(problem, cls, dual)
    ref = solve_primal_cvxpy(problem)
    assert dual.value == pytest.approx(sol.dual_value, abs=1e-6)
    assert dual.lower_bound == pytest.approx(sol.dual_value, abs=1e-6)
    np.testing.assert_allclose(dual.lam, sol.lam, atol=1e-6 * (1 + sol.lam.max()))
    assert primal.value == pytest.approx(ref.primal_value, abs=1e-6)
    assert (primal.slack >= 0).all()
    # the feasible theta is feasible by the numpy core too
    assert constraint_slack(problem, primal.policy).min() >= -1e-15


def test_parametrized_dual_with_a_restricted_class():
    p = random_problem(1, 5, 8, 2, 0.5, support_fraction=0.6)
    sol = solve(p)
    cls = LogLinearPolicy(p, problem_features(p, noise=0.3))
    dual = parametrized_dual(p, cls)
    assert dual.box_certified and dual.converged
    assert dual.lower_bound <= dual.value <= sol.dual_value + 1e-12
    assert dual.value - dual.lower_bound <= 1e-8
    assert sol.dual_value - dual.value > 1e-3  # a real gap for this class
    # the cut slopes are subgradients: D_p(lam) >= D_p(lam_p) + s^T (lam - lam_p) nearby
    primal = parametrized_primal(p, cls, dual)
    assert primal.found and 0 <= dual.value - primal.value <= 1e-6


def _model_min_by_breakpoints(a, s, radius):
    """The exact minimum over ``[0, radius]`` of ``max_k a_k + s_k lam`` (m = 1)."""
    points = [0.0, radius]
    for i in range(a.size):
        for j in range(a.size):
            if s[i] != s[j]:
                lam = (a[j] - a[i]) / (s[i] - s[j])
                if 0.0 <= lam <= radius:
                    points.append(lam)
    return min(float((a + s * lam).max()) for lam in points)


@pytest.mark.parametrize("seed", range(20))
def test_model_min_bound_is_valid_and_tight_beside_a_nearly_flat_cut(seed):
    """Cuts through one point ``(lam0, v0)``, one of them nearly flat (slope -1e-10 scale, as a
    theta with slack ~0 at lam*_p gives): the certified bound stays below the exact model
    minimum and within 1e-12 of it (the LP's own weights, on the flat cut alone, lose
    ``radius`` x its slope, about 1e-9)."""
    from dualgap.gaps.dual import model_min

    rng = np.random.default_rng(seed)
    K, lam0, v0, radius = int(rng.integers(3, 15)), rng.uniform(0.2, 2.0), rng.normal(), 20.0
    s = rng.normal(size=K)
    s[0], s[1] = -abs(rng.normal()) * 1e-10, abs(s[1])
    a = v0 - s * lam0 - np.r_[0.0, 0.0, rng.uniform(0.0, 1e-3, K - 2)]
    exact = _model_min_by_breakpoints(a, s, radius)
    lower, _ = model_min(a, s[:, None], radius)
    assert lower <= exact + 1e-15
    assert exact - lower <= 1e-12

"""The parametrized primal P*_p from below (dualgap.gaps.primal)."""

import math

import torch

from dualgap import solve
from dualgap.gaps import parametrized_dual, parametrized_primal, with_candidate
from dualgap.instances import random_problem
from dualgap.policies import LogLinearPolicy, TabularPolicy, problem_features


def test_feasible_theta_is_below_the_exact_primal_and_the_dual():
    """Any feasible theta's J is <= P* (distribution space, exact) and <= D*_p (weak duality);
    with every stage skipped only the bundle's thetas are candidates."""
    p = random_problem(3, 3, 5, 1)
    cls = LogLinearPolicy(p, problem_features(p, noise=0.3, seed=2))
    dual = parametrized_dual(p, cls)
    full = parametrized_primal(p, cls, dual)
    bare = parametrized_primal(p, cls, dual, newton_steps=0, bisections=0, penalty_rounds=0)
    P = solve(p).primal_value
    for res in (full, bare):
        if res.found:
            assert (res.slack >= 0).all()
            assert res.value <= P + 1e-12 and res.value <= dual.value + 1e-9
    assert full.value >= bare.value and bare.evaluations == 0


def test_with_candidate_keeps_only_a_better_feasible_theta():
    p = random_problem(0, 2, 4, 1)
    cls = TabularPolicy(p)
    sol = solve(p)
    dual = parametrized_dual(p, cls)
    primal = parametrized_primal(p, cls, dual)
    worse = with_candidate(p, cls, primal, cls.init_params())  # pi_ref: infeasible or worse
    assert worse.value == primal.value and worse.margin >= primal.margin
    empty = primal.__class__(-math.inf, None, None, None, False, -math.inf, 0, 0.0)
    theta = torch.as_tensor(primal.theta)
    better = with_candidate(p, cls, empty, theta)
    assert better.found and better.value == primal.value <= sol.primal_value + 1e-9

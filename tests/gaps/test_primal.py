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


def test_a_hair_infeasible_dual_witness_still_gives_the_tabular_primal():
    """A counterexample hypothesis found (tests/gaps/test_dual.py, random profile): both
    constraints bind at lam*, the dual's theta misses feasibility by 3e-17 and the Newton polish
    stops at its tolerance without a Jacobian.  The search direction ``w = 1`` then lowered one
    slack (the constraints are correlated) and the best feasible theta was at J = -0.971 against
    P* = -0.568.  With the slacks' Jacobian the tabular class reaches P*."""
    import numpy as np

    from dualgap import AlignmentProblem

    p = AlignmentProblem(
        reward=np.array([
            [1.4493092864891945, -0.644978051185903, -0.9658968404094657, -0.7586362637030121],
            [0.5761788077604073, 0.1678756573663499, 0.5033582056473875, -0.7593653643664864],
            [-0.40085297963500827, -0.5938417921097481, 0.056362741801084505,
             -0.0017623469937732231]]),
        utilities=np.array([
            [[-0.01863487186060386, -1.432477114028715, -1.1215364028812937, 0.6285303123078841],
             [0.2654660819458425, 2.2438746457238485, 0.7853644581969637, -0.329207755510992],
             [-0.023929038734434267, 0.10324917669012063, 2.543850524962635, 0.3319005156096405]],
            [[-1.8528542243070025, 0.7528674030987771, 0.015584184039043613, 0.3002773804021653],
             [-0.4871938169712985, -2.021282335006909, 2.4221447733569756, 0.7131618037822322],
             [-0.11130044611966608, 0.19737157991611753, -0.6550481727527567,
              0.6955006518425887]]]),
        thresholds=np.array([0.8307373461718934, 0.43121868279314607]), beta=1.0, relative=False,
        reference=np.array([
            [0.01342419643062232, 0.0, 0.0, 0.9865758035693777],
            [0.4076209334087186, 0.14711051225398686, 0.11231809906767784, 0.33295045526961686],
            [0.0, 0.29184272000825234, 0.011192840326043056, 0.6969644396657046]]))
    sol = solve(p)
    cls = TabularPolicy(p)
    dual = parametrized_dual(p, cls)
    primal = parametrized_primal(p, cls, dual)
    assert primal.found and (primal.slack >= 0).all()
    assert primal.value <= sol.dual_value + 1e-12  # a lower estimate
    assert primal.value >= sol.primal_value - 1e-6

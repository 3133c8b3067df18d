"""The Lagrangian and D_p from below (dualgap.gaps.lagrangian)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dualgap import (
    dual_value,
    lagrangian,
    lagrangian_policy,
)
from dualgap.gaps import (
    lagrangian_max,
    lagrangian_objective,
    parametrized_dual,
)
from dualgap.instances import random_problem
from dualgap.policies import LogLinearPolicy, MLPPolicy, TabularPolicy, problem_features
from dualgap.testing import multipliers, problems
from dualgap.theory import gap_constant

small = problems(max_prompts=4, max_responses=6, min_constraints=1, max_constraints=2)


@settings(max_examples=15)
@given(small, st.integers(0, 10**6), st.data())
def test_lagrangian_objective_matches_the_numpy_core(problem, seed, data):
    """torch L(pi_theta, lam) against dualgap.lagrangian (numpy, written independently)."""
    lam = data.draw(multipliers(problem.num_constraints, 5.0))
    for cls in (TabularPolicy(problem),
                MLPPolicy(problem, problem_features(problem, noise=0.5), hidden=3)):
        theta = cls.init_params(seed)
        got = float(lagrangian_objective(problem, cls, theta, lam))
        want = lagrangian(problem, cls.policy(theta), lam)
        assert got == pytest.approx(want, abs=1e-12 * (1 + abs(want)))


@settings(max_examples=15)
@given(small, st.data())
def test_tabular_lagrangian_max_is_the_closed_form(problem, data):
    """Tabular D_p = D and the maximizer is pi_lam (within 1e-6; natural steps and L-BFGS)."""
    lam = data.draw(multipliers(problem.num_constraints, 5.0))
    cls = TabularPolicy(problem)
    res = lagrangian_max(problem, cls, lam)
    assert res.value == pytest.approx(dual_value(problem, lam), abs=1e-10)
    np.testing.assert_allclose(res.policy, lagrangian_policy(problem, lam), atol=1e-6)


def test_tabular_lbfgs_alone_reaches_the_closed_form():
    p = random_problem(1, 5, 8, 2, 0.5, support_fraction=0.6)
    lam = [0.4, 0.9]
    res = lagrangian_max(p, TabularPolicy(p), lam, method="lbfgs")
    assert res.value == pytest.approx(dual_value(p, lam), abs=1e-9)
    np.testing.assert_allclose(res.policy, lagrangian_policy(p, lam), atol=1e-5)


@settings(max_examples=12)
@given(small, st.floats(0.05, 1.0), st.data())
def test_parametrized_dual_function_is_below_the_dual(problem, noise, data):
    """D_p(lam) <= D(lam) (exact for any theta) and Lemma 3's upper side with the measured nu
    of the target pi_lam, D_p from the best of two starts and the fit witness (a lower
    estimate: the harder side).  The witness start is needed for both classes: a plain search
    can stop at a local maximum below D - K nu, which is the search's failure, not Lemma 3's
    (the two strict xfails below; on main a random hypothesis example also hit it for the
    log-linear class: two starts at 3.5e-6 below D at lam = (0, 1), K nu = 1.3e-6)."""
    lam = data.draw(multipliers(problem.num_constraints, 5.0))
    D = dual_value(problem, lam)
    target = lagrangian_policy(problem, lam)
    ll = LogLinearPolicy(problem, problem_features(problem, noise=noise, seed=1))
    mlp = MLPPolicy(problem, problem_features(problem, noise=noise, seed=1), hidden=2)
    for cls in (ll, mlp):
        fit = cls.fit(target)
        res = lagrangian_max(problem, cls, lam, starts=2, theta0=fit.theta)
        assert res.value <= D + 1e-12 * (1 + abs(D))
        assert D - res.value <= gap_constant(problem, lam, fit.nu) + 1e-12


@pytest.mark.xfail(strict=True, reason=(
    "counterexample found by hypothesis: on this MLP class (hidden=2) two L-BFGS starts find a "
    "local maximum of L(pi_theta, lam) 3.4e-5 below D(lam), while the fit witness of pi_lam has "
    "nu = 8.7e-12, so D_p(lam) >= D(lam) - 5.7e-11 (Lemma 3 itself holds: the failure is the "
    "local search's, which errs on the low side of D_p)"))
def test_mlp_local_search_misses_the_lagrangian_max():
    from dualgap import AlignmentProblem

    p = AlignmentProblem(
        reward=[[-0.47702717, 0.13141004, -1.85530984], [0.8798417, 0.89590808, 0.26250804]],
        utilities=[[[0.62685477, 1.16367212, -0.82746482], [0.42885311, 0.88525351, 0.31557514]]],
        thresholds=[0.79224394], beta=1.0,
        reference=[[0.1042518, 0.82098198, 0.07476622], [0.29809677, 0.02083464, 0.6810686]],
        prompt_weights=[0.5, 0.5], relative=False)
    lam = np.array([2.0])
    cls = MLPPolicy(p, problem_features(p, noise=0.875, seed=1), hidden=2)
    nu = cls.fit(lagrangian_policy(p, lam)).nu
    res = lagrangian_max(p, cls, lam, starts=2)
    assert dual_value(p, lam) - res.value <= gap_constant(p, lam, nu) + 1e-12


def test_inputs_are_validated():
    p = random_problem(0, 3, 4, 2, 0.5)
    cls = TabularPolicy(p)
    with pytest.raises(ValueError, match="lam"):
        lagrangian_max(p, cls, [-1.0, 0.0])
    with pytest.raises(ValueError, match="lam: shape"):
        lagrangian_max(p, cls, [1.0])
    with pytest.raises(ValueError, match="steps"):
        lagrangian_max(p, cls, [0.0, 0.0], steps=0)
    with pytest.raises(ValueError, match="method"):
        lagrangian_max(p, cls, [0.0, 0.0], method="adam")
    other = random_problem(0, 3, 5, 2, 0.5)
    with pytest.raises(ValueError, match="problem: shape"):
        lagrangian_objective(other, cls, cls.init_params(), [0.0, 0.0])
    with pytest.raises(ValueError, match="level"):
        parametrized_dual(p, cls, level=1.5)


def test_warm_started_inexact_step_improves_monotonically():
    """CAID's policy step: from theta0, more steps never lower L(pi_theta, lam)."""
    p = random_problem(3, 4, 6, 2, 0.3)
    cls = MLPPolicy(p, problem_features(p, noise=0.3), hidden=4)
    lam = [0.5, 0.5]
    theta0 = cls.init_params(5)
    start = float(lagrangian_objective(p, cls, theta0, lam))
    vals = [lagrangian_max(p, cls, lam, theta0=theta0, steps=k).value for k in (1, 5, 50)]
    assert start <= vals[0] + 1e-15 and vals[0] <= vals[1] + 1e-15 and vals[1] <= vals[2] + 1e-15
    assert torch.is_tensor(lagrangian_max(p, cls, lam, theta0=theta0, steps=3).theta)


@pytest.mark.xfail(strict=True, reason=(
    "counterexample found by hypothesis: on this log-linear class the plain two-start search at "
    "lam = (0, 4) stops 2.3e-6 below D(lam), above K nu = 3.6e-7 of the fit witness (nu = "
    "2.9e-8), while a search warm-started at that witness ends 1.2e-11 below D: Lemma 3 holds, "
    "the local search errs on the low side of D_p"))
def test_loglinear_local_search_stops_short_of_the_lagrangian_max():
    from dualgap import AlignmentProblem

    P = dict(
        reward=[[0.82198451, -0.05042389, 0.13722841, 1.02262335, -0.14975368, 0.41755566],
                [1.22712216, -0.37164365, -0.19593588, -0.06694957, -1.33975939, -2.19981157],
                [1.18437468, 1.39475375, 0.10918075, -0.16564505, -0.49097721, -0.83869138],
                [-0.12062521, 1.16863932, 0.84179342, -1.00706242, -0.61515749, -0.01985412]],
        utilities=[[[0.9069454, 0.08406151, 0.72989802, -0.35269311, -0.74283862, -0.44331692],
                    [-0.83978619, 2.63511207, 0.58237701, 0.28453921, -1.81922754, 1.0198221],
                    [0.69260615, 0.29660487, 0.58364775, -1.73833197, -0.42621914, 0.26621185],
                    [-1.26209445, -0.04931757, -1.09963586, 2.19274966, -0.35517724, 0.10827984]],
                   [[0.3942301, -1.22207704, 0.980251, -1.92958661, 0.1730544, -0.85630874],
                    [0.56941532, -0.93328172, -0.03799927, 0.43060193, 1.05360692, 0.65695846],
                    [1.87460844, 0.81159564, -0.60673582, 1.64248941, 0.3325782, -1.59628506],
                    [0.08887855, 2.63863761, -0.64520351, -0.65224613, -0.99198097, -0.24236049]]],
        thresholds=[0.70250219, 0.11872893], beta=0.05623413251903491,
        reference=[[0.28992483, 0.0, 0.16689714, 0.37181913, 0.14474042, 0.02661848],
                   [0.00984375, 0.09115313, 0.47925738, 0.06361893, 0.11824462, 0.2378822],
                   [0.16326604, 0.05553261, 0.18742282, 0.47999177, 0.11378677, 0.0],
                   [0.06501911, 0.0, 0.08142466, 0.04820107, 0.64436664, 0.16098851]],
        prompt_weights=[0.25] * 4, relative=False)
    ref = np.array(P["reference"])  # printed to 8 digits: renormalize the rows
    P["reference"] = ref / ref.sum(1, keepdims=True)
    p = AlignmentProblem(**P)
    lam = np.array([0.0, 4.0])
    cls = LogLinearPolicy(p, problem_features(p, noise=0.5, seed=1))
    fit = cls.fit(lagrangian_policy(p, lam))
    D = dual_value(p, lam)
    cold = lagrangian_max(p, cls, lam, starts=2)
    warm = lagrangian_max(p, cls, lam, starts=2, theta0=fit.theta)
    assert D - warm.value <= gap_constant(p, lam, fit.nu)  # the witness start: Lemma 3 holds
    assert D - cold.value <= gap_constant(p, lam, fit.nu)  # the plain search: fails (xfail)


def test_lagrangian_max_batch_equals_single_searches():
    """Each search of the batch is the one-start lagrangian_max at its lam and start."""
    from dualgap.gaps import lagrangian_max_batch

    p = random_problem(4, 4, 6, 2, 0.3, support_fraction=0.7)
    cls = MLPPolicy(p, problem_features(p, noise=0.3), hidden=3)
    lams = [[0.2, 0.8], [1.0, 0.0]]
    starts = [None, cls.init_params(3)]
    got = lagrangian_max_batch(p, cls, lams, starts, steps=30)
    for lam, th0, res in zip(lams, starts, got, strict=True):
        want = lagrangian_max(p, cls, lam, theta0=th0, steps=30)
        assert res.steps == want.steps
        assert res.value == pytest.approx(want.value, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(res.slack, want.slack, rtol=1e-9, atol=1e-12)
    assert lagrangian_max_batch(p, cls, []) == []
    with pytest.raises(ValueError, match="theta0s: 1 starts for 2 multipliers"):
        lagrangian_max_batch(p, cls, lams, [None])
    with pytest.raises(ValueError, match="lam: multipliers must be finite and >= 0"):
        lagrangian_max_batch(p, cls, [[-1.0, 0.0]])

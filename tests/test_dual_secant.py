"""The secant correction of the sampled dual Hessian: closed forms, bounds, noise, and the
parametrized class whose curvature the sampled Hessian misstates."""

import json

import numpy as np
import pytest

import dualgap as dg
from dualgap.dual_secant import (
    SECANT_BOUNDS,
    SECANT_Z,
    SecantMemory,
    SecantPair,
    secant_hessian,
)
from dualgap.dual_steps import DualStepper, dual_step, exact_samples, policy_samples
from dualgap.gaps import lagrangian_max
from dualgap.instances import random_problem


def _pd(rng, m):
    a = rng.normal(size=(m, m))
    return a @ a.T + m * np.eye(m)


def test_one_constraint_is_the_secant_ratio_times_the_sampled_hessian():
    H, Hprev = np.array([[2.0]]), np.array([[1.0]])
    s, y = np.array([0.5]), np.array([0.3])  # predicted change H_bar s = 0.75
    B, ratio, reason = secant_hessian(H, SecantPair(s, y, np.zeros((1, 1)), Hprev))
    assert reason is None and ratio == pytest.approx(0.4)
    np.testing.assert_allclose(B, [[2.0 * 0.4]])
    # far off: clipped into the bounds relative to H
    B, ratio, _ = secant_hessian(H, SecantPair(s, 100 * y, np.zeros((1, 1)), Hprev))
    assert ratio == pytest.approx(40.0) and B[0, 0] == pytest.approx(2.0 * SECANT_BOUNDS[1])


@pytest.mark.parametrize("m", [2, 3])
def test_secant_equation_holds_at_the_averaged_hessian_and_bounds_hold(m):
    rng = np.random.default_rng(m)
    for _ in range(50):
        H = _pd(rng, m)
        s = rng.normal(size=m)
        A = H @ (np.eye(m) + 0.3 * np.diag(rng.uniform(-1, 1, m)))  # a nearby curvature
        y = (A + A.T) / 2 @ s
        B, ratio, reason = secant_hessian(H, SecantPair(s, y, np.zeros((m, m))))
        assert reason is None
        assert ratio == pytest.approx(float(s @ y) / float(s @ H @ s))
        # no hessian given: H_bar = H, and within the bounds B s = y exactly (BFGS)
        rel = np.linalg.eigvals(np.linalg.solve(H, B)).real
        if rel.min() > SECANT_BOUNDS[0] and rel.max() < SECANT_BOUNDS[1]:
            np.testing.assert_allclose(B @ s, y, rtol=1e-8, atol=1e-10)
        wild = SecantPair(s, rng.normal(size=m) * 50, np.zeros((m, m)))
        Bw, _, why = secant_hessian(H, wild)
        if Bw is not None:
            rel = np.linalg.eigvals(np.linalg.solve(H, Bw)).real
            assert SECANT_BOUNDS[0] - 1e-9 <= rel.min() and rel.max() <= SECANT_BOUNDS[1] + 1e-9
            np.testing.assert_allclose(Bw, Bw.T, atol=1e-9 * np.abs(Bw).max())
        else:
            assert "curvature" in why or "noise" in why


def test_a_change_within_its_noise_or_of_negative_curvature_leaves_the_hessian():
    H = np.array([[1.0]])
    s = np.array([0.1])
    # predicted 0.1; observed 0.2, ratio 2 +- SECANT_Z * 0.5: contains 1
    B, ratio, why = secant_hessian(H, SecantPair(s, np.array([0.2]), np.array([[0.05 ** 2]])))
    assert B is None and ratio == pytest.approx(2.0) and "within its noise" in why
    # shrunk to the end of the interval nearest to 1: ratio 3 +- SECANT_Z * 0.1 * 0.01 / 0.01
    C = np.array([[(0.3 / SECANT_Z * 0.01 / 0.1) ** 2]])  # half-width 0.3
    B, ratio, why = secant_hessian(H, SecantPair(s, np.array([0.3]), C))
    assert why is None and ratio == pytest.approx(3.0) and B[0, 0] == pytest.approx(2.7)
    B, _, why = secant_hessian(H, SecantPair(s, np.array([-0.3]), np.zeros((1, 1))))
    assert B is None and "negative curvature" in why
    B, _, why = secant_hessian(H, SecantPair(np.zeros(1), np.zeros(1), np.zeros((1, 1))))
    assert B is None and "no step" in why


def test_tabular_exact_pairs_predict_the_change_so_newton_keeps_its_steps():
    # the sampled Hessian is the tabular dual's own: the trapezoid prediction matches the
    # observed change to second order, and the ratio tends to 1 as the steps shrink
    p = random_problem(5, num_prompts=8, num_responses=10, num_constraints=2, tightness=0.9)
    st, lam, ratios = DualStepper("newton"), np.zeros(2), []
    for _ in range(8):
        lam, rec = st(exact_samples(p, dg.lagrangian_policy(p, lam)), lam)
        if rec.secant_ratio is not None:
            ratios.append(rec.secant_ratio)
    np.testing.assert_allclose(lam, dg.solve(p).lam, atol=1e-8)
    assert abs(ratios[2] - 1) < 0.05


def test_log_linear_class_converges_faster_with_the_secant():
    # the sampled (distribution-space) Hessian overstates D_p's curvature for this class
    from dualgap.policies import LogLinearPolicy, problem_features
    p = random_problem(21, num_prompts=10, num_responses=12, num_constraints=1,
                       tightness=0.8, beta=0.3)
    pc = LogLinearPolicy(p, problem_features(p, noise=0.5, seed=1))

    def run(step, iters=12):
        lam, theta, hist = np.zeros(1), pc.init_params(), []
        for _ in range(iters):
            res = lagrangian_max(p, pc, lam, theta0=theta)
            theta = res.theta
            lam, rec = step(exact_samples(p, res.policy), lam)
            hist.append((lam.copy(), rec))
        return hist

    st = DualStepper("newton")
    with_secant = run(st)
    plain = run(lambda s, lam: dual_step(s, lam, "newton"))
    ref = with_secant[-1][0]
    ratios = [r.secant_ratio for _, r in with_secant if r.curvature == "secant"]
    assert ratios and np.median(ratios) < 0.9  # the class's curvature is below the sampled
    err_sec = [abs(lam - ref)[0] for lam, _ in with_secant[:6]]
    err_plain = [abs(lam - ref)[0] for lam, _ in plain[:6]]
    assert abs(plain[-1][0] - ref)[0] < 1e-3  # both reach the same lam*_p
    assert err_sec[5] < 0.2 * err_plain[5]


def test_sampled_pairs_at_a_fixed_point_are_mostly_left_alone():
    # at lam* with few draws the slack's change is noise: the correction is rarely taken
    p = random_problem(12, num_prompts=10, num_responses=12, num_constraints=2, tightness=0.9)
    sol = dg.solve(p)
    rng = np.random.default_rng(0)
    st, lam, used = DualStepper("newton"), sol.lam.copy(), 0
    for _ in range(60):
        lam, rec = st(policy_samples(p, dg.lagrangian_policy(p, lam), 8, rng), lam)
        used += rec.curvature == "secant"
    assert used <= 12


def test_memory_state_round_trips_and_bad_state_is_named():
    p = random_problem(2, num_prompts=5, num_responses=6, num_constraints=2)
    s = policy_samples(p, p.reference, 4, np.random.default_rng(0))
    mem = SecantMemory()
    assert mem(s, np.zeros(2), np.eye(2)) is None and mem.noise is not None
    back = SecantMemory.from_state(json.loads(json.dumps(mem.state_dict())))
    for a, b in zip(mem.last, back.last, strict=True):
        np.testing.assert_array_equal(a, b)
    assert SecantMemory.from_state({}).last is None  # a state saved before the secant existed
    with pytest.raises(ValueError, match="state: secant_lam, secant_slack"):
        SecantMemory.from_state({"secant_lam": [0.0, 0.0]})
    bad = dict(mem.state_dict(), secant_noise=[[1.0]])
    with pytest.raises(ValueError, match=r"state: secant shapes"):
        SecantMemory.from_state(bad)
    assert mem(s, np.zeros(2), None) is None and mem.last is None  # no covariance: no pair

"""The dual on scores: one-shot lam = dualgap.solve (checked against cvxpy), the dual step,
the self-tuning dual step on scores, and pseudo-preference label frequencies."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

import dualgap
from dualgap.dual import dual_hessian
from dualgap.dual_steps import TRUST_KL, DualStepper
from dualgap.dual_steps import dual_step as core_dual_step
from dualgap.llm.dual import (
    auto_dual_step,
    dual_step,
    empirical_instance,
    mean_utilities,
    one_shot_multiplier,
    reference_statistics,
    scored_samples,
)
from dualgap.llm.preferences import (
    composite_reward,
    preference_dataset,
    preference_probabilities,
    pseudo_labels,
)


def _scores(seed=0, N=12, K=6, m=2):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(N, K))
    g = -0.6 * r[None] + 0.8 * rng.normal(size=(m, N, K))
    return r, g


def test_one_shot_equals_core_solve_and_cvxpy():
    r, g = _scores()
    b = np.array([0.15, 0.1])
    beta = 0.5
    sol = one_shot_multiplier(r, g, b, beta, names=["safety", "humor"])
    N, K = r.shape
    same = dualgap.solve(dualgap.AlignmentProblem(r, g, b, beta, np.full((N, K), 1 / K)))
    np.testing.assert_allclose(sol.lam, same.lam, rtol=1e-12, atol=1e-12)
    assert sol.converged and (sol.lam > 0).all()  # both constraints active here
    # independent check: the primal by cvxpy on the same empirical instance
    ref = dualgap.solve_primal_cvxpy(empirical_instance(r, g, b, beta))
    np.testing.assert_allclose(sol.primal_value, ref.primal_value, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(sol.lam, ref.lam, rtol=1e-3, atol=1e-5)
    # relative constraints: E_ref g is the sample mean of the reference samples
    np.testing.assert_allclose(mean_utilities(g), g.mean(axis=(1, 2)))
    assert reference_statistics is mean_utilities  # the former name, still used by llm.run
    prob = empirical_instance(r, g, b, beta)
    np.testing.assert_allclose(prob.offsets, g.mean(axis=(1, 2)) + b)


def test_dual_step_formula_vectorised():
    lam = np.array([0.5, 0.0, 2.0])
    e_pi = np.array([1.0, 3.0, -1.0])
    e_ref = np.array([0.5, 1.0, 0.0])
    b = np.array([1.0, 1.0, 0.5])
    new = dual_step(lam, e_pi, e_ref, b, 0.4)
    # slack = e_pi - e_ref - b = (-0.5, 1.0, -1.5): raise, clip at 0, raise
    np.testing.assert_allclose(new, [0.5 + 0.2, 0.0, 2.0 + 0.6])
    np.testing.assert_allclose(dual_step(lam, e_pi, e_ref, b, 0.0), lam)
    with pytest.raises(ValueError,
                       match=r"thresholds \(constraints.N.threshold\): 2 values for 3 constr"):
        dual_step(lam, e_pi, e_ref, b[:2], 0.1)
    with pytest.raises(ValueError, match="lam: must be finite and >= 0"):
        dual_step(-lam, e_pi, e_ref, b, 0.1)


def _inverse_curvature(problem, lam) -> float:
    """``1 / lambda_max(hess D_hat(lam))``: the former LLM 'auto' step size, kept here as the
    reference it is compared with."""
    return 1.0 / float(np.linalg.eigvalsh(dual_hessian(problem, lam)).max())


def test_dual_step_converges_on_an_exact_instance():
    """With an exact policy step (pi = pi_lam), repeated dual steps from 0 reach the core's lam*
    when eta is the inverse curvature at the one-shot lam (the former 'auto' step)."""
    r, g = _scores(3, N=8, K=5, m=2)
    b = np.array([0.2, 0.1])
    prob = empirical_instance(r, g, b, 0.5)
    star = dualgap.solve(prob).lam
    lam = np.zeros(2)
    eta = _inverse_curvature(prob, star)
    e_ref = mean_utilities(g)
    for _ in range(300):
        e_pi = dualgap.expected_utilities(prob, dualgap.lagrangian_policy(prob, lam))
        lam = dual_step(lam, e_pi, e_ref, b, eta)
    np.testing.assert_allclose(lam, star, rtol=1e-5, atol=1e-6)
    # the curvature grows from 0 to lam* here (x4.4): the inverse curvature at lam = 0 exceeds
    # 2 / L_D near lam* and the iteration cycles instead of converging (why that step was only
    # a local rule, replaced by the self-tuning step)
    eta0 = _inverse_curvature(prob, np.zeros(2))
    assert eta0 > 2 * eta


def test_auto_dual_step_is_the_core_rule_on_the_scored_samples():
    r, g = _scores(2, N=10, K=6, m=2)
    b, beta = np.array([0.2, 0.1]), 0.5
    e_ref = mean_utilities(_scores(9, N=10, K=6, m=2)[1])  # another sample set's E_ref g
    lam = np.array([0.4, 0.0])
    s = scored_samples(r, g, e_ref, b, beta)
    # the slack the numeric dual step uses: E_pi g - E_ref g - b
    np.testing.assert_allclose(s.slack(), mean_utilities(g) - e_ref - b, atol=1e-14)
    new, rec = auto_dual_step(DualStepper(), lam, r, g, e_ref, b, beta)
    ref, ref_rec = core_dual_step(s, lam, "newton")  # the first step: Kesten gain 1
    np.testing.assert_allclose(new, ref, atol=1e-14)
    assert rec["rule"] == rec["used"] == "newton" and rec["fallback"] is None
    assert rec["gain"] == 1.0
    # no sequence log-probabilities on LLM scores: the empirical rule falls back and says so
    _, emp = auto_dual_step(DualStepper("empirical"), lam, r, g, e_ref, b, beta)
    assert emp["used"] == "damped" and "log-probabilities" in emp["fallback"]
    # one sample per prompt: no covariance, a damped step that says so
    _, one = auto_dual_step(DualStepper(), lam, r[:, :1], g[:, :, :1], e_ref, b, beta)
    assert one["used"] == "damped" and "fewer than 2 samples" in one["fallback"]
    with pytest.raises(ValueError, match="reference_utilities, thresholds: 1 values for 2"):
        auto_dual_step(DualStepper(), lam, r, g, e_ref[:1], b[:1], beta)


def test_auto_dual_step_stays_near_where_the_old_auto_step_jumps():
    """The rehearsal's failure (eta = 1/lambda_max at the one-shot lam = 10540, lam 37405 one
    step later), reproduced: a tight threshold puts the one-shot pi_lam where the empirical
    dual is flat, so the old 'auto' eta is large, and an iterate the policy step barely moved
    (here pi_ref itself) has a slack that eta multiplies.  The new rule measures the curvature
    on the iterate's own samples and bounds the step's KL."""
    rng = np.random.default_rng(0)
    r = rng.normal(size=(8, 8))
    g = -0.6 * r[None] + 0.8 * rng.normal(size=(1, 8, 8))
    e_ref, beta = mean_utilities(g), 0.1
    b = 0.98 * (g.max(axis=2).mean(axis=1) - e_ref)  # near the largest achievable improvement
    lam0 = one_shot_multiplier(r, g, b, beta).lam
    eta_old = _inverse_curvature(empirical_instance(r, g, b, beta), lam0)
    old = dual_step(lam0, e_ref, e_ref, b, eta_old)
    new, rec = auto_dual_step(DualStepper(), lam0, r, g, e_ref, b, beta)
    assert eta_old > 20 and old[0] - lam0[0] > 20 * (new[0] - lam0[0]) > 0
    assert rec["predicted_kl"] <= TRUST_KL + 1e-12 and rec["trust_scale"] < 1.0
    # the trust region's promise, recomputed by hand: d^2 H / (2 beta) with
    # H = (1/beta) mean_x Var_k g(x, .) (Bessel-corrected) is the bound TRUST_KL itself
    H = g[0].var(axis=1, ddof=1).mean() / beta
    assert (new[0] - lam0[0]) ** 2 * H / (2 * beta) == pytest.approx(TRUST_KL, rel=1e-9)


def test_pseudo_label_frequencies_match_the_sigmoid():
    """Four composite-reward gaps, 20k pairs each: the share of y_1 wins lies within 4.5
    binomial standard deviations of sigmoid(r_lam(y_1) - r_lam(y_0))."""
    levels = np.array([-2.0, -0.3, 0.5, 3.0])
    P = 20_000 * len(levels)
    gap = np.repeat(levels, P // len(levels))
    lam = np.array([0.7, 1.5])
    g = np.zeros((2, P, 2))
    g[0, :, 1] = 0.5  # utilities move the composite reward: r_lam = r + lam^T g
    g[1, :, 0] = 0.2
    shift = lam[0] * 0.5 - lam[1] * 0.2
    r = np.stack([np.zeros(P), gap - shift], axis=1)
    p = preference_probabilities(r, g, lam)
    np.testing.assert_allclose(p, expit(gap), rtol=1e-12)
    labels = pseudo_labels(r, g, lam, seed=[0, 3, 1])
    for lev in levels:
        sel = gap == lev
        freq, q = labels[sel].mean(), expit(lev)
        assert abs(freq - q) < 4.5 * np.sqrt(q * (1 - q) / sel.sum()), (lev, freq, q)
    np.testing.assert_array_equal(labels, pseudo_labels(r, g, lam, seed=[0, 3, 1]))
    assert (labels != pseudo_labels(r, g, lam, seed=[0, 3, 2])).any()


def test_composite_reward_and_dataset():
    r = np.array([[1.0, 0.0], [0.0, 2.0]])
    g = np.array([[[0.0, 3.0], [1.0, 0.0]]])
    np.testing.assert_allclose(composite_reward(r, g, [2.0]), [[1.0, 6.0], [2.0, 2.0]])
    ds = preference_dataset(["p1", "p2"], ["a", "b"], ["c", "d"], np.array([1, 0]))
    assert ds == {"prompt": ["p1", "p2"], "chosen": [" c", " b"], "rejected": [" a", " d"]}
    with pytest.raises(ValueError, match="utilities: shape"):
        composite_reward(r, g, [1.0, 2.0])

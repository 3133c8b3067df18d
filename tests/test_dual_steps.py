"""Self-tuning dual steps against the exact dual core (dual_hessian, solve) and closed forms."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import dualgap as dg
from dualgap.dual_samples import slack_margin
from dualgap.dual_secant import SecantPair
from dualgap.dual_steps import (
    DUAL_STEP_RULES,
    MIN_ESS,
    TRUST_KL,
    DualStepper,
    OnPolicySamples,
    damped_step_size,
    dual_step,
    exact_samples,
    policy_samples,
    sampled_hessian,
    slack_noise,
)
from dualgap.instances import random_problem
from dualgap.testing import problems

ROOT = Path(__file__).resolve().parents[1]


@settings(max_examples=25)
@given(problems(max_constraints=3, restrict_support=True), st.floats(0.0, 3.0))
def test_exact_samples_give_the_core_gradient_and_hessian(p, scale):
    lam = np.full(p.num_constraints, scale)
    s = exact_samples(p, dg.lagrangian_policy(p, lam))
    ev = dg.dual_oracle(p, lam, order=2)
    np.testing.assert_allclose(s.slack(), ev.gradient, atol=1e-9)
    np.testing.assert_allclose(sampled_hessian(s), ev.hessian, atol=1e-9 * (1 + np.abs(
        ev.hessian).max(initial=0)))


def test_sampled_hessian_is_unbiased():
    p = random_problem(1, num_prompts=5, num_responses=6, num_constraints=2)
    lam = np.array([0.3, 0.8])
    pi = dg.lagrangian_policy(p, lam)
    rng = np.random.default_rng(0)
    mean = np.mean([sampled_hessian(policy_samples(p, pi, 3, rng)) for _ in range(3000)], axis=0)
    exact = dg.dual_hessian(p, lam)
    # Monte-Carlo error of 3000 draws: a few percent of the entries' scale
    np.testing.assert_allclose(mean, exact, atol=0.05 * np.abs(exact).max())


@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("rule", DUAL_STEP_RULES)
def test_exact_steps_reach_the_solver_lam(m, rule):
    p = random_problem(m, num_prompts=8, num_responses=10, num_constraints=m, tightness=0.9)
    sol = dg.solve(p)
    lam = np.zeros(m)
    # Newton and the exact empirical dual: a few steps; 1/lambda_max: linear rate (kappa)
    for _ in range(400 if rule == "curvature" else 20):
        lam, rec = dual_step(exact_samples(p, dg.lagrangian_policy(p, lam)), lam, rule)
        assert rec.used == rule and rec.fallback is None
    np.testing.assert_allclose(lam, sol.lam, atol=1e-7)


def test_newton_converges_quadratically_near_lam_star():
    p = random_problem(3, num_prompts=8, num_responses=10, num_constraints=2, tightness=0.95)
    sol = dg.solve(p)
    assert (sol.lam > 0).all()
    lam = sol.lam * 1.05
    errs = []
    for _ in range(3):
        lam, _ = dual_step(exact_samples(p, dg.lagrangian_policy(p, lam)), lam, "newton")
        errs.append(np.abs(lam - sol.lam).max())
    assert errs[1] <= 10 * errs[0] ** 2 + 1e-12 and errs[2] < 1e-9


def test_empirical_rule_with_exact_weights_is_the_solver_in_one_step():
    p = random_problem(4, num_prompts=6, num_responses=8, num_constraints=2, tightness=0.9)
    sol = dg.solve(p)
    lam = sol.lam * 1.02
    new, rec = dual_step(exact_samples(p, dg.lagrangian_policy(p, lam)), lam, "empirical")
    assert rec.trust_scale == 1.0
    np.testing.assert_allclose(new, sol.lam, atol=1e-8)
    # reweighting pi_lam's exact weights to the reference gives the reference: ESS = 1/sum ref^2
    ess = 1.0 / (p.reference ** 2).sum(axis=1)
    assert rec.ess == pytest.approx(float(np.median(ess)))


def test_curvature_eta_is_one_over_the_hessian_top_eigenvalue():
    p = random_problem(5, num_prompts=6, num_responses=8, num_constraints=2)
    lam = np.array([0.5, 0.2])
    _, rec = dual_step(exact_samples(p, dg.lagrangian_policy(p, lam)), lam, "curvature")
    assert rec.eta == pytest.approx(1.0 / np.linalg.eigvalsh(dg.dual_hessian(p, lam))[-1])


def test_trust_region_bounds_the_second_order_kl():
    p = random_problem(6, num_prompts=6, num_responses=8, num_constraints=2, beta=0.05)
    lam = np.zeros(2)
    H = dg.dual_hessian(p, lam)
    new, rec = dual_step(exact_samples(p, dg.lagrangian_policy(p, lam)), lam, "newton")
    d = lam - new
    assert d @ H @ d / (2 * p.beta) <= TRUST_KL * (1 + 1e-9)
    assert rec.predicted_kl <= TRUST_KL * (1 + 1e-9)


def test_trust_region_kl_is_the_second_order_kl():
    # the trust region's KL(pi_lam || pi_lam-d) ~ d^T H d / (2 beta) for a small step
    p = random_problem(7, num_prompts=5, num_responses=7, num_constraints=2)
    lam, d = np.array([0.4, 0.6]), np.array([1e-3, -2e-3])
    a, b = dg.lagrangian_policy(p, lam), dg.lagrangian_policy(p, lam - d)
    kl = float(p.prompt_weights @ np.where(a > 0, a * np.log(np.where(a > 0, a / b, 1)), 0).sum(1))
    assert kl == pytest.approx(d @ dg.dual_hessian(p, lam) @ d / (2 * p.beta), rel=1e-2)


@pytest.mark.parametrize("rule", DUAL_STEP_RULES)
def test_one_sample_per_prompt_falls_back_to_a_damped_step(rule):
    p = random_problem(8, num_prompts=6, num_responses=8, num_constraints=2)
    s = policy_samples(p, p.reference, 1, rng=0)
    new, rec = dual_step(s, np.zeros(2), rule)
    assert rec.used == "damped" and "fewer than 2 samples" in rec.fallback
    assert rec.eta == damped_step_size(s)
    np.testing.assert_allclose(new, np.maximum(-rec.eta * s.slack(), 0.0))


@settings(max_examples=30)
@given(problems(max_constraints=3), st.floats(0.0, 5.0))
def test_damped_eta_never_exceeds_one_over_the_true_curvature(p, scale):
    # Popoviciu: with every response observed, L_hat bounds every covariance of h, so the
    # damped step's eta = 1/L_hat <= 1/lambda_max(hess D) at every lam
    assume(p.num_constraints > 0)
    lam = np.full(p.num_constraints, scale)
    s = exact_samples(p, dg.lagrangian_policy(p, lam))
    top = np.linalg.eigvalsh(dg.dual_hessian(p, lam))[-1]
    assert damped_step_size(s) * top <= 1 + 1e-9


def test_empirical_rule_without_log_probs_or_with_tiny_ess_falls_back():
    p = random_problem(9, num_prompts=6, num_responses=8, num_constraints=1)
    s = policy_samples(p, p.reference, 4, rng=0)
    bare = OnPolicySamples(s.reward, s.utilities, s.offsets, s.beta)
    _, rec = dual_step(bare, np.zeros(1), "empirical")
    assert rec.used == "damped" and "log-probabilities" in rec.fallback
    # a policy far from the reference: weights concentrate on one sample per prompt
    far = OnPolicySamples(s.reward, s.utilities, s.offsets, s.beta, log_policy=s.log_policy,
                          log_reference=s.log_reference + 50 * np.eye(6, 4))
    _, rec = dual_step(far, np.zeros(1), "empirical")
    assert rec.used == "damped" and rec.ess < MIN_ESS and "effective sample size" in rec.fallback


def test_samples_from_the_reference_have_full_ess():
    # by construction: the reweighting of reference draws to the reference is uniform
    p = random_problem(10, num_prompts=6, num_responses=8, num_constraints=1, tightness=0.5)
    _, rec = dual_step(policy_samples(p, p.reference, 32, rng=1), np.zeros(1), "empirical")
    assert rec.ess == pytest.approx(32.0)


def test_bad_input_is_named():
    p = random_problem(0, num_prompts=3, num_responses=4, num_constraints=2)
    s = exact_samples(p, p.reference)
    with pytest.raises(ValueError, match="rule: must be"):
        dual_step(s, np.zeros(2), "adam")
    with pytest.raises(ValueError, match="lam: expected 2"):
        dual_step(s, np.zeros(3))
    with pytest.raises(ValueError, match="lam: expected 2"):
        dual_step(s, [-1.0, 0.0])
    with pytest.raises(ValueError, match="weights: expected shape"):
        OnPolicySamples(s.reward, s.utilities, s.offsets, s.beta, weights=np.ones((3, 2)))
    with pytest.raises(ValueError, match="beta"):
        OnPolicySamples(s.reward, s.utilities, s.offsets, 0.0)
    with pytest.raises(ValueError, match="offsets"):
        OnPolicySamples(s.reward, s.utilities, s.offsets[:1], 1.0)


def test_record_is_json_and_names_the_rule():
    p = random_problem(0, num_prompts=3, num_responses=4, num_constraints=2)
    _, rec = dual_step(exact_samples(p, p.reference), np.zeros(2), "auto")
    d = json.loads(json.dumps(rec.to_dict()))
    assert d["rule"] == "newton" and d["used"] in ("newton", "damped")


def test_module_imports_numpy_only():
    code = ("import sys, dualgap.dual_steps; "
            "print(any(k in sys.modules for k in ('torch', 'transformers', 'trl')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_benchmark_quick_mode_runs_and_newton_converges(tmp_path):
    pytest.importorskip("cooper")  # the bench extra (the Makefile installs it)
    out = tmp_path / "dual_steps.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dual_steps.py"), "--quick",
                    "--out", str(out), "--no-readme"], check=True, capture_output=True)
    rows = {r["method"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["caid-newton"]["converged"] and rows["caid-newton"]["fallbacks"] == 0
    assert rows["fixed eta (grid)"]["tuning_runs"] == 2
    assert {"cooper-gda (grid)", "cooper-nupi (grid)", "cooper-alm (grid)"} <= set(rows)


def test_slack_noise_is_the_variance_of_the_sampled_slack():
    p = random_problem(2, num_prompts=5, num_responses=6, num_constraints=2)
    pi = dg.lagrangian_policy(p, np.array([0.5, 0.5]))
    rng = np.random.default_rng(3)
    draws = [policy_samples(p, pi, 4, rng) for _ in range(3000)]
    empirical = np.cov(np.array([s.slack() for s in draws]).T)
    estimate = np.mean([slack_noise(s) for s in draws], axis=0)
    np.testing.assert_allclose(estimate, empirical, atol=0.08 * np.abs(empirical).max())
    assert not slack_noise(exact_samples(p, pi)).any()  # exact expectation: no noise


def test_stepper_is_the_rule_with_its_secant_pair_on_exact_expectations():
    # gain 1 (no noise to average); the first step has no pair and is the plain rule, later
    # ones get the change of the slack since the previous call
    p = random_problem(3, num_prompts=6, num_responses=8, num_constraints=2, tightness=0.9)
    st, lam, last = DualStepper("newton"), np.zeros(2), None
    for t in range(6):
        s = exact_samples(p, dg.lagrangian_policy(p, lam))
        pair = None if last is None else SecantPair(
            lam - last[0], s.slack() - last[1], np.zeros((2, 2)), last[2])
        plain, _ = dual_step(s, lam, "newton", secant=pair)
        last = (lam, s.slack(), sampled_hessian(s))
        lam, rec = st(s, lam)
        np.testing.assert_array_equal(lam, plain)
        assert rec.gain == 1.0
        if t == 0:
            assert rec.curvature == "sampled" and rec.secant_skip == "no earlier samples"
    np.testing.assert_allclose(lam, dg.solve(p).lam, atol=1e-8)


def test_stepper_averages_the_noise_away_at_lam_star():
    # started at lam*, a full Newton step moves lam by the noise of one sample set; Kesten's
    # gain makes the iterate a running average, so after 200 steps it sits much closer
    p = random_problem(12, num_prompts=10, num_responses=12, num_constraints=2, tightness=0.9)
    sol = dg.solve(p)
    assert (sol.lam > 0).all()
    rng = np.random.default_rng(0)
    one_step = [np.abs(dual_step(policy_samples(p, sol.policy, 8, rng), sol.lam)[0]
                       - sol.lam).max() for _ in range(50)]
    st, lam = DualStepper("newton"), sol.lam.copy()
    for _ in range(200):
        lam, rec = st(policy_samples(p, dg.lagrangian_policy(p, lam), 8, rng), lam)
    assert rec.gain < 0.1 and st.turns > 10
    assert np.abs(lam - sol.lam).max() < 0.3 * np.median(one_step)
    with pytest.raises(ValueError, match="rule: must be"):
        DualStepper("sgd")


def test_stepper_state_round_trips_through_json():
    # a resumed LLM run rebuilds the stepper from state.json: the same next steps follow
    import json
    p = random_problem(12, num_prompts=10, num_responses=12, num_constraints=2, tightness=0.9)
    lam = np.zeros(2)
    a = DualStepper()
    draws = [policy_samples(p, p.reference, 8, np.random.default_rng(i)) for i in range(8)]
    for s in draws[:4]:
        lam, _ = a(s, lam)
    b = DualStepper.from_state(json.loads(json.dumps(a.state_dict())))
    la, lb = lam.copy(), lam.copy()
    for s in draws[4:]:
        la, ra = a(s, la)
        lb, rb = b(s, lb)
        np.testing.assert_array_equal(la, lb)
        assert ra.gain == rb.gain
    with pytest.raises(ValueError, match="state: unknown key"):
        DualStepper.from_state({"rule": "auto", "turns": 0, "previous": None, "eta": 1})
    with pytest.raises(ValueError, match="state: turns must be an int >= 0, got -1"):
        DualStepper.from_state({"rule": "auto", "turns": -1, "previous": None})


def test_sampled_kl_is_the_exact_kl_with_exact_weights():
    from dualgap.dual_steps import sampled_kl
    p = random_problem(3, num_prompts=6, num_responses=9, num_constraints=2, tightness=0.9)
    lam, d = np.array([0.3, 0.8]), np.array([0.7, -0.5])
    pi, pi2 = dg.lagrangian_policy(p, lam), dg.lagrangian_policy(p, lam + d)
    kl = p.prompt_weights @ np.where(pi > 0, pi * (np.log(pi) - np.log(pi2)), 0.0).sum(axis=1)
    assert sampled_kl(exact_samples(p, pi), d) == pytest.approx(kl, rel=1e-9)


def test_newton_from_a_nearly_deterministic_policy_does_not_cycle():
    # counterexample to the second-order trust region alone (notebook 04's instance, beta 0.05,
    # lam_0 = 0, exact expectations): pi_0 is nearly deterministic, H(0) ~ 1e-3, so the step
    # whose d^T H d / (2 beta) is 0.5 jumps to lam = 7.42, where H ~ 1e-59 and the step back to
    # 0 looks free: a 2-cycle 0 <-> 7.42.  The sampled-KL bound stops it.
    r, g = np.array([[1.0, 0.0, 0.5]]), np.array([[[-1.0, 1.0, 0.0]]])
    p = dg.AlignmentProblem(r, g, [0.3], 0.05, np.full((1, 3), 1 / 3))
    star = dg.solve(p).lam
    lam = np.zeros(1)
    for _ in range(8):
        lam, rec = dual_step(exact_samples(p, dg.lagrangian_policy(p, lam)), lam)
        assert rec.sampled_kl <= TRUST_KL * (1 + 1e-9)
    np.testing.assert_allclose(lam, star, atol=1e-9)


@pytest.mark.parametrize("rule", DUAL_STEP_RULES)
def test_margin_leaves_exact_steps_unchanged(rule):
    p = random_problem(5, num_prompts=8, num_responses=10, num_constraints=2, tightness=0.9)
    lam = np.array([0.2, 0.6])
    s = exact_samples(p, dg.lagrangian_policy(p, lam))
    plain, rec0 = dual_step(s, lam, rule, confidence=None)
    new, rec = dual_step(s, lam, rule, confidence=0.95)
    np.testing.assert_array_equal(new, plain)
    assert rec.confidence == 0.95 and rec.margin == [0.0, 0.0] and rec0.confidence is None


@pytest.mark.parametrize("rule", DUAL_STEP_RULES)
def test_margin_makes_the_step_zero_the_lower_bound(rule):
    # with sampled slacks the step with a margin is the plain step on samples whose thresholds
    # are raised by z SE: it drives u_hat - z SE, not u_hat, to 0
    p = random_problem(6, num_prompts=10, num_responses=12, num_constraints=2, tightness=0.9)
    lam = dg.solve(p).lam
    s = policy_samples(p, dg.lagrangian_policy(p, lam), 16, np.random.default_rng(2))
    margin = slack_margin(s, 0.9)
    assert (margin > 0).all()
    shifted = OnPolicySamples(s.reward, s.utilities, s.offsets + margin, s.beta,
                              log_policy=s.log_policy, log_reference=s.log_reference,
                              prompt_weights=s.prompt_weights)
    new, rec = dual_step(s, lam, rule, confidence=0.9)
    ref, ref_rec = dual_step(shifted, lam, rule, confidence=None)
    np.testing.assert_allclose(new, ref, rtol=1e-10, atol=1e-12)
    assert rec.used == ref_rec.used
    # the record keeps the estimate itself and the margin the step subtracted
    np.testing.assert_allclose(rec.slack, s.slack(), rtol=1e-12)
    np.testing.assert_allclose(rec.margin, margin, rtol=1e-12)
    assert rec.confidence == 0.9
    if rule == "newton" and rec.trust_scale == 1.0:  # inside the trust region: closed form
        u_low = s.slack() - margin
        free = (lam > 0) | (u_low < 0)
        d = np.zeros(2)
        d[free] = np.linalg.solve(sampled_hessian(s)[np.ix_(free, free)], u_low[free])
        np.testing.assert_allclose(new, np.maximum(lam - d, 0), rtol=1e-9)
    # the margin raises lam on the constraints it binds
    plain, _ = dual_step(s, lam, rule, confidence=None)
    assert (new >= plain - 1e-12).all() and (new > plain).any()


def test_margin_moves_caid_into_the_feasible_set():
    # at its fixed point the stepper with a margin sits where the *true* slack is about z SE
    # above 0; without it, at the solver's lam* (slack 0), half the runs end infeasible
    p = random_problem(12, num_prompts=10, num_responses=12, num_constraints=1, tightness=0.9)
    sol = dg.solve(p)
    finals = {}
    for level in (None, 0.95):
        ends = []
        for seed in range(12):
            tr = dg.algorithms.caid(p, None, iterations=6, confidence=level, samples=8,
                                    one_shot_samples=8, seed=seed)
            ends.append(np.asarray(tr.slack)[-1, 0])
            assert all(r["confidence"] == level for r in tr.extra["dual_steps"])
        finals[level] = np.array(ends)
    assert (finals[0.95] >= 0).mean() >= 0.9 > (finals[None] >= 0).mean()
    assert finals[0.95].mean() > finals[None].mean() and sol.lam[0] > 0


def test_stepper_keeps_its_confidence_through_its_state():
    a = DualStepper(confidence=0.9)
    assert a.state_dict()["confidence"] == 0.9
    assert DualStepper.from_state(a.state_dict()).confidence == 0.9
    old = {k: v for k, v in a.state_dict().items() if k != "confidence"}  # saved before it
    assert DualStepper.from_state(old).confidence is None
    assert DualStepper(confidence=0).confidence is None
    for bad in ("high", 1.2):
        with pytest.raises(ValueError, match="^confidence: must be"):
            DualStepper(confidence=bad)


def test_stepper_margin_is_the_standard_error_of_its_average():
    # the stepper's iterate averages about turns + 1 sample sets: its margin is z SE over the
    # root of that, full while the steps point one way, shrinking once they turn back and forth
    p = random_problem(12, num_prompts=10, num_responses=12, num_constraints=2, tightness=0.9)
    rng = np.random.default_rng(4)
    st, lam = DualStepper("newton", confidence=0.9), dg.solve(p).lam
    scales = []
    for _ in range(40):
        s = policy_samples(p, dg.lagrangian_policy(p, lam), 8, rng)
        before = st.turns
        lam, rec = st(s, lam)
        np.testing.assert_allclose(rec.margin, slack_margin(s, 0.9) / np.sqrt(before + 1),
                                   rtol=1e-12)
        scales.append(before + 1)
    assert scales[0] == 1 and scales[-1] > 5
    s = policy_samples(p, p.reference, 8, rng)
    _, rec = dual_step(s, np.zeros(2), "newton", confidence=0.9, averaged=4)
    np.testing.assert_allclose(rec.margin, slack_margin(s, 0.9) / 2, rtol=1e-12)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="^averaged: must be an int >= 1"):
            dual_step(s, np.zeros(2), "newton", averaged=bad)


def test_benchmark_rerun_caid_keeps_the_peers_rows(tmp_path):
    # --rerun-caid recomputes only the CAID rules' rows (after a change of the dual step) and
    # keeps the peers' rows of --out as they were
    pytest.importorskip("cooper")
    out = tmp_path / "dual_steps.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "dual_steps.py"), "--quick", "--out",
           str(out), "--no-readme"]
    subprocess.run(cmd, check=True, capture_output=True)
    before = json.loads(out.read_text())["rows"]
    for r in before:  # mark the stored rows: a peer row must come back as it was stored
        r["seconds"] = -1.0
    out.write_text(json.dumps({"rows": before}))
    subprocess.run(cmd + ["--resume", "--rerun-caid", "--instances", "0"], check=True,
                   capture_output=True)
    after = json.loads(out.read_text())["rows"]
    assert [r["method"] for r in after] == [r["method"] for r in before]
    for a, b in zip(after, before, strict=True):
        if a["method"].startswith("caid-"):
            assert a["seconds"] >= 0 and a["iterations"] == b["iterations"]
        else:
            assert a == b
    # the refusal in this process (a third subprocess spent ~5 s importing to print it)
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("_dual_steps_bench",
                                                  ROOT / "benchmarks" / "dual_steps.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit, match="--rerun-caid: needs --resume"):
            bench.main(cmd[2:-1] + ["--rerun-caid", "--no-readme"])
    finally:
        torch.set_num_threads(threads)  # main sets 1 for its runs

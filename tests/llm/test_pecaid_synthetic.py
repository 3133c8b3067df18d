"""The tabular PeCAID comparison on the synthetic language (dualgap.llm.pecaid_synthetic):
its pieces against independent computations, at small sizes."""

from __future__ import annotations

import numpy as np
import pytest

import dualgap
from dualgap.llm.pecaid import reference_kl_term
from dualgap.llm.pecaid_synthetic import (
    bradley_terry_pairs,
    compare,
    dual_loop,
    fit_tabular_dpo,
)
from dualgap.llm.synthetic import SyntheticLanguage


@pytest.fixture(scope="module")
def lang():
    lang = SyntheticLanguage(prompt_length=1, max_response_length=2)
    return lang, lang.data_distribution(), lang.scores("safety")


def test_bradley_terry_labels_follow_the_true_scores(lang):
    _, ref, g = lang
    x, y0, y1, label = bradley_terry_pairs(ref, g, 40000, np.random.default_rng(0))
    assert (ref[x, y0] > 0).all() and (ref[x, y1] > 0).all()  # drawn from pi_ref
    p = 1.0 / (1.0 + np.exp(-(g[x, y1] - g[x, y0])))
    # seeded check: the label frequency matches the BT probability within 4 standard errors
    se = np.sqrt((p * (1 - p)).sum()) / len(p)
    assert abs(label.mean() - p.mean()) < 4 * se


def test_the_fit_is_a_policy_whose_reference_term_is_minus_beta_kl(lang):
    """The identity E_ref[beta log pi_g/pi_ref] = -beta KL(pi_ref || pi_g), holding by
    construction for any pi_g, checked against scipy's rel_entr on the fitted table."""
    from scipy.special import rel_entr

    _, ref, g = lang
    beta = 0.5
    g_hat = fit_tabular_dpo(ref, bradley_terry_pairs(ref, g, 3000, np.random.default_rng(1)),
                            beta, alpha=1.0)
    pi_g = ref * np.exp(g_hat / beta)
    np.testing.assert_allclose(pi_g.sum(axis=1), 1.0, rtol=1e-12)
    kl = rel_entr(ref, pi_g).sum(axis=1)  # size = (X,)
    term = reference_kl_term(g_hat[None], beta, weights=ref)
    np.testing.assert_allclose(term["e_ref"][0], -beta * kl.mean(), rtol=1e-10)


def test_more_labels_bring_the_implicit_rewards_closer(lang):
    """Seeded check (not a theorem at finite n): the pi_ref-weighted error up to per-prompt
    constants falls as the number of Bradley-Terry labels grows."""
    from dualgap.llm.pecaid import implicit_reward_error

    _, ref, g = lang
    w = ref / ref.sum(axis=1, keepdims=True)
    errs = [implicit_reward_error(
        fit_tabular_dpo(ref, bradley_terry_pairs(ref, g, n, np.random.default_rng(2)), 1.0,
                        alpha=1.0), g, w)["rmse"] for n in (500, 5000, 50000)]
    assert errs[0] > errs[1] > errs[2], errs


def test_the_dual_loop_does_not_see_per_prompt_constants(lang):
    """Scores shifted by c(x) give the same lam trajectory and policy (invariance of
    docs/pecaid.md, section 2)."""
    language, ref, g = lang
    r = language.scores("helpfulness")
    truth = dualgap.AlignmentProblem(r, g[None], [0.3], 1.0, ref, relative=True)
    c = np.random.default_rng(3).normal(size=(ref.shape[0], 1))
    a = dual_loop(r, g, truth, 3, 32, seed=0)
    b = dual_loop(r + 2 * c, g - c, truth, 3, 32, seed=0)
    np.testing.assert_allclose(b.lam, a.lam, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.slack, a.slack, rtol=1e-9, atol=1e-12)


def test_compare_reports_against_the_exact_optimum():
    out = compare(num_pairs=2000, iterations=2, samples=16, prompt_length=1,
                  max_response_length=2)
    language = SyntheticLanguage(prompt_length=1, max_response_length=2)
    exact = dualgap.solve(dualgap.AlignmentProblem(
        language.scores("helpfulness"), language.scores("safety")[None],
        [out["setting"]["threshold"]], 1.0, language.data_distribution()))
    np.testing.assert_allclose(out["exact"]["lam"], exact.lam, rtol=1e-9)
    assert abs(out["exact"]["slack"]) < 1e-8
    for name in ("caid_true_scores", "pecaid"):
        assert len(out[name]["lam"]) == 2 and np.isfinite(out[name]["true_slack"])
    assert out["reference_term"]["kl"] >= 0


def test_the_dual_loop_takes_the_self_tuning_step(lang):
    """The loop's dual step is the LLM pipeline's ``dual.step_size: auto``: one DualStepper
    over the loop, each step recorded; with the true tables, 64 samples per prompt and an exact
    policy step and no margin it lands near lam* within a few steps (seeded); with the default
    margin (``dual.confidence``) it lands above lam*, on the feasible side."""
    language, ref, g = lang
    r = language.scores("helpfulness")
    truth = dualgap.AlignmentProblem(r, g[None], [0.3], 1.0, ref, relative=True)
    star = dualgap.solve(truth).lam[0]
    res = dual_loop(r, g, truth, 6, 64, seed=0, confidence=None)
    assert len(res.dual_steps) == 5 and {s["rule"] for s in res.dual_steps} == {"newton"}
    assert all(s["used"] == "newton" and s["fallback"] is None for s in res.dual_steps)
    np.testing.assert_allclose(res.estimated_slack, [s["slack"][0] for s in res.dual_steps])
    assert abs(res.lam[-1][0] - star) < 0.05 * star
    assert all(s["confidence"] is None and s["margin"] == [0.0] for s in res.dual_steps)
    safe = dual_loop(r, g, truth, 6, 64, seed=0)
    from dualgap.dual_steps import DEFAULT_CONFIDENCE

    assert all(s["confidence"] == DEFAULT_CONFIDENCE and s["margin"][0] > 0
               for s in safe.dual_steps)
    assert safe.lam[-1][0] > star and safe.slack >= 0

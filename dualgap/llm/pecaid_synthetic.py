"""PeCAID against the truth on the synthetic language (issue 14's comparison), tabular.

The synthetic language (:class:`dualgap.llm.synthetic.SyntheticLanguage`, the only synthetic
name used here) enumerates every prompt ``x`` and response ``y`` with the true reward ``r``
(``helpfulness``) and utility ``g`` (``safety``), and ``pi_ref = p_data``.  Everything below is a
table ``(X, Y)``, so every quantity has an exact value to compare with:

1. **Labels** from the true Bradley-Terry model: ``n`` pairs ``x ~ uniform``, ``y_0, y_1 ~
   pi_ref(.|x)`` i.i.d., ``P(y_1 preferred) = sigmoid(s(x, y_1) - s(x, y_0))`` for ``s = r``
   (the "better" label) and ``s = g`` (the "safer" label), drawn independently.
2. **Pre-alignment** = DPO on a tabular policy ``log pi_s = log pi_ref + theta/beta - log Z``:
   DPO's loss is ``-log sigmoid(u(y_w) - u(y_l))`` in ``u = theta``, minimized with a ridge
   ``(alpha/2) ||u||^2`` (the tabular model separates finite data; ``alpha`` is the only
   regularizer) by L-BFGS.  The implicit reward is ``s_hat = beta log pi_s / pi_ref = u - beta
   log Z(x)`` (``u = 0`` on pairs never seen: those responses keep ``pi_ref``'s odds).
3. **Implicit-reward error** up to per-prompt constants,
   :func:`dualgap.llm.pecaid.implicit_reward_error` weighted by ``pi_ref``.
4. **The dual loop at equal budget** for scorer tables ``(r, g)`` (the truth: model-based CAID
   with perfect score models) and ``(r_hat, g_hat)`` (PeCAID): ``K`` reference samples per
   prompt give ``E_ref`` and the one-shot ``lam_0`` (:func:`dualgap.llm.dual.
   one_shot_multiplier`); the policy step is exact, ``pi_t = pi_ref exp((s_r + lam_t s_g)/beta)
   / Z`` (:func:`dualgap.lagrangian_policy` on the method's own table: the DPO optimum of its
   pseudo-preferences); ``K`` samples per prompt of ``pi_{t-1}``, scored by the method's own
   table, give the dual step: the self-tuning step of ``dual.step_size: auto``
   (:func:`dualgap.llm.dual.auto_dual_step`, one :class:`dualgap.dual_steps.DualStepper` per
   loop, as in the LLM pipeline).  The final
   policy is judged by the TRUE problem: its slack ``E_pi g - E_ref g - b`` and objective, against
   the exact optimum (:func:`dualgap.solve` on the true table).

The same seeds draw the reference and on-policy samples of both methods.  Numpy, scipy and the
exact core only (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["bradley_terry_pairs", "fit_tabular_dpo", "dual_loop", "compare"]


def _sample_rows(p: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` indices per row drawn from the rows of ``p`` ``(X, Y)``, shape ``(X, k)``."""
    c = np.cumsum(p, axis=1)  # size = (X, Y)
    u = rng.random((p.shape[0], k)) * c[:, -1:]
    idx = np.stack([np.searchsorted(c[i], u[i], side="right") for i in range(p.shape[0])])
    return np.minimum(idx, p.shape[1] - 1)


def bradley_terry_pairs(reference: np.ndarray, scores: np.ndarray, n: int,
                        rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """``(x, y_0, y_1, label)`` of ``n`` pairs, ``label = 1`` when ``y_1`` is preferred, drawn
    as in the module docstring (item 1)."""
    X = reference.shape[0]
    x = rng.integers(0, X, size=n)
    c = np.cumsum(reference, axis=1)
    u = rng.random((n, 2)) * c[x, -1:]
    y = np.stack([np.searchsorted(c[x[i]], u[i], side="right") for i in range(n)])
    y = np.minimum(y, reference.shape[1] - 1)  # size = (n, 2)
    d = scores[x, y[:, 1]] - scores[x, y[:, 0]]
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-d))).astype(np.int64)
    return x, y[:, 0], y[:, 1], label


def fit_tabular_dpo(reference: np.ndarray, pairs: tuple[np.ndarray, ...], beta: float,
                    alpha: float = 1e-2) -> np.ndarray:
    """The implicit reward ``s_hat = beta log pi_s / pi_ref`` ``(X, Y)`` of the tabular DPO fit
    (module docstring, item 2)."""
    from scipy.optimize import minimize
    from scipy.special import expit, logsumexp

    x, y0, y1, label = pairs
    yw, yl = np.where(label == 1, y1, y0), np.where(label == 1, y0, y1)
    X, Y = reference.shape
    keys = np.unique(np.concatenate([x * Y + yw, x * Y + yl]))
    iw, il = np.searchsorted(keys, x * Y + yw), np.searchsorted(keys, x * Y + yl)

    def loss(u: np.ndarray) -> tuple[float, np.ndarray]:
        d = u[iw] - u[il]
        val = float(np.logaddexp(0.0, -d).sum() + 0.5 * alpha * u @ u)
        gd = -expit(-d)
        grad = alpha * u
        np.add.at(grad, iw, gd)
        np.add.at(grad, il, -gd)
        return val, grad

    res = minimize(loss, np.zeros(keys.size), jac=True, method="L-BFGS-B",
                   options={"maxiter": 5000, "gtol": 1e-9})
    u = np.zeros(X * Y)
    u[keys] = res.x
    u = u.reshape(X, Y)
    with np.errstate(divide="ignore"):
        log_ref = np.log(reference)
    log_z = logsumexp(log_ref + u / beta, axis=1, keepdims=True)  # size = (X, 1)
    return u - beta * log_z


@dataclass
class LoopResult:
    lam: list[list[float]]  # lam of each policy step
    slack: float  # the true slack of the final policy, E_pi g - E_ref g - b (exact)
    objective: float  # the true objective of the final policy (exact)
    estimated_slack: list[float]  # the slack each dual step saw
    dual_steps: list[dict]  # the record of each dual step (dualgap.dual_steps.DualStepRecord)


def dual_loop(reward: np.ndarray, utility: np.ndarray, truth: Any, iterations: int,
              samples: int, seed: int, confidence: float | str | None = "auto") -> LoopResult:
    """Module docstring, item 4, for the scorer tables ``reward``, ``utility`` ``(X, Y)``;
    ``truth`` is the true :class:`dualgap.AlignmentProblem` (its reference, beta, threshold);
    ``confidence`` the dual step's margin (``dual.confidence``; "auto": the pipeline's
    default)."""
    import dualgap

    from ..dual_steps import DualStepper
    from .dual import auto_dual_step, one_shot_multiplier

    ref, beta, b = truth.reference, truth.beta, truth.thresholds
    rng = np.random.default_rng([seed, 1])
    idx = _sample_rows(ref, samples, rng)  # size = (X, K)
    rows = np.arange(ref.shape[0])[:, None]
    r_s, g_s = reward[rows, idx], utility[rows, idx][None]  # size = (X, K), (1, X, K)
    e_ref = g_s.mean(axis=(1, 2))
    lam = one_shot_multiplier(r_s, g_s, b, beta).lam
    own = dualgap.AlignmentProblem(reward, utility[None], b, beta, ref, relative=True)
    stepper = DualStepper(confidence=confidence)
    lams, seen, steps = [lam.tolist()], [], []
    for t in range(1, iterations):
        pi = dualgap.lagrangian_policy(own, lam)
        idx = _sample_rows(pi, samples, np.random.default_rng([seed, 2, t]))
        lam, rec = auto_dual_step(stepper, lam, reward[rows, idx], utility[rows, idx][None],
                                  e_ref, b, beta)
        seen.append(float(rec["slack"][0]))  # E_pi g - E_ref g - b on the samples
        steps.append(rec)
        lams.append(lam.tolist())
    pi = dualgap.lagrangian_policy(own, lam)
    return LoopResult(lams, float(dualgap.constraint_slack(truth, pi)[0]),
                      float(dualgap.objective(truth, pi)), seen, steps)


def compare(num_pairs: int = 20000, beta: float = 1.0, threshold: float | None = None,
            iterations: int = 4, samples: int = 64, seed: int = 0, alpha: float = 1e-2,
            prompt_length: int = 2, max_response_length: int = 3) -> dict:
    """The comparison of the module docstring: implicit-reward errors, and PeCAID's and
    model-based CAID's ``lam`` and true constraint values against the exact optimum.
    ``threshold`` default: half the largest attainable improvement,
    ``b = 0.5 (E_rho max_{y in supp} g - E_rho E_ref g)``."""
    import dualgap

    from ..dual import lagrangian_policy
    from .pecaid import implicit_reward_error, reference_kl_term
    from .synthetic import SyntheticLanguage

    lang = SyntheticLanguage(prompt_length=prompt_length, max_response_length=max_response_length)
    ref = lang.data_distribution()
    r, g = lang.scores("helpfulness"), lang.scores("safety")
    support = ref > 0
    e_ref_g = float((ref * g).sum(axis=1).mean())
    if threshold is None:
        best = np.where(support, g, -np.inf).max(axis=1).mean()
        threshold = 0.5 * (best - e_ref_g)
    truth = dualgap.AlignmentProblem(r, g[None], [threshold], beta, ref, relative=True,
                                     names=("safety",))
    sol = dualgap.solve(truth)
    pi_star = lagrangian_policy(truth, sol.lam)
    rng = np.random.default_rng([seed, 0])
    r_hat = fit_tabular_dpo(ref, bradley_terry_pairs(ref, r, num_pairs, rng), beta, alpha)
    g_hat = fit_tabular_dpo(ref, bradley_terry_pairs(ref, g, num_pairs, rng), beta, alpha)
    w = np.where(support, ref, 0.0)
    kl = reference_kl_term(g_hat[None], beta, weights=w)  # exact E_ref g_hat = -beta KL
    out: dict[str, Any] = {
        "setting": {"prompts": lang.num_prompts, "responses": lang.num_responses,
                    "num_pairs_per_label": num_pairs, "beta": beta, "threshold": threshold,
                    "iterations": iterations, "samples_per_prompt": samples, "ridge": alpha,
                    "seed": seed},
        "implicit_error": {"reward": implicit_reward_error(
            np.where(support, r_hat, 0.0), np.where(support, r, 0.0), w),
            "safety": implicit_reward_error(np.where(support, g_hat, 0.0),
                                            np.where(support, g, 0.0), w)},
        "reference_term": {"E_ref_g_hat": float(kl["e_ref"][0]), "kl": float(kl["kl"][0])},
        "exact": {"lam": sol.lam.tolist(), "objective": float(dualgap.objective(truth, pi_star)),
                  "slack": float(dualgap.constraint_slack(truth, pi_star)[0])},
    }
    implicit_exact = dualgap.solve(dualgap.AlignmentProblem(r_hat, g_hat[None], [threshold],
                                                            beta, ref, relative=True))
    out["pecaid_infinite_samples_lam"] = implicit_exact.lam.tolist()
    for name, (sr, sg) in (("caid_true_scores", (r, g)), ("pecaid", (r_hat, g_hat))):
        res = dual_loop(sr, sg, truth, iterations, samples, seed)
        out[name] = {"lam": res.lam, "true_slack": res.slack, "true_objective": res.objective,
                     "estimated_slack": res.estimated_slack,
                     "dual_rules_used": [s["used"] for s in res.dual_steps]}
    return out

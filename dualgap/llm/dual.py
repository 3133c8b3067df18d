"""The dual on LLM scores: reference statistics, the one-shot multiplier, the online dual step.

No second dual here: the one-shot ``lam`` is :func:`dualgap.solve` on the empirical instance of
``N`` prompts x ``K`` reference samples with weights ``1/K``
(:func:`dualgap.empirical.empirical_problem_from_scores`), whose relative constraints use
``E_ref g`` estimated from the same samples, as in the paper.

Shapes: ``reward (N, K)``, ``utilities (m, N, K)``, ``thresholds (m,)``, ``lam (m,)``.
Numpy only (the scores arrive as float64 arrays, already gathered from every process).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..algorithms.multipliers import projected_step
from ..dual_steps import DualStepper, OnPolicySamples
from ..empirical import empirical_problem_from_scores
from ..problem import AlignmentProblem
from ..solver import DualSolution, solve

__all__ = ["mean_utilities", "reference_statistics", "empirical_instance", "one_shot_multiplier",
           "dual_step", "scored_samples", "auto_dual_step"]


def _utilities(utilities: np.ndarray) -> np.ndarray:
    g = np.asarray(utilities, dtype=np.float64)
    if g.ndim != 3:
        raise ValueError(f"utilities: expected shape (m, N, K), got {g.shape}")
    if not np.isfinite(g).all():
        raise ValueError("utilities: non-finite scores")
    return g


def mean_utilities(utilities: np.ndarray) -> np.ndarray:
    """``E g_i ~= (1/(N K)) sum_{x,k} g_i(x, y_{x,k})`` from K samples per prompt, ``(m,)``.

    ``utilities``: ``(m, N, K)`` scores of K samples for each of N prompts.  From reference
    samples it estimates ``E_ref g`` (the offsets of the relative constraints), from samples of
    the current policy ``E_pi g`` (the dual step's slack is their difference minus ``b``).
    """
    g = _utilities(utilities)
    return g.mean(axis=(1, 2))


#: the former name of :func:`mean_utilities` (it estimates ``E_pi g`` as well as ``E_ref g``),
#: kept because :mod:`dualgap.llm.run` calls it by that name
reference_statistics = mean_utilities


def empirical_instance(reward: np.ndarray, utilities: np.ndarray, thresholds: Sequence[float],
                       beta: float, names: Sequence[str] | None = None) -> AlignmentProblem:
    """The empirical instance: responses = the K reference samples, ``pi_ref = 1/K`` each,
    relative constraints ``E_pi g - E_ref g >= b``."""
    return empirical_problem_from_scores(
        np.asarray(reward, dtype=np.float64), _utilities(utilities),
        np.asarray(thresholds, dtype=np.float64), beta, relative=True,
        names=tuple(names) if names is not None else None)


def one_shot_multiplier(reward: np.ndarray, utilities: np.ndarray, thresholds: Sequence[float],
                        beta: float, names: Sequence[str] | None = None,
                        tol: float = 1e-10) -> DualSolution:
    """``lam_hat = argmin_{lam >= 0} D_hat(lam)`` by :func:`dualgap.solve` on
    :func:`empirical_instance` (raises :class:`dualgap.InfeasibleError` when no reweighting of
    the reference samples meets the thresholds)."""
    return solve(empirical_instance(reward, utilities, thresholds, beta, names), tol=tol)


def dual_step(lam: Sequence[float], policy_utilities: Sequence[float],
              reference_utilities: Sequence[float], thresholds: Sequence[float],
              step_size: float) -> np.ndarray:
    """One projected dual subgradient step, for any number ``m`` of constraints::

        lam <- [lam - eta (E_pi g - E_ref g - b)]_+

    ``E_pi g - E_ref g - b`` is the estimated constraint slack of the current policy (a
    subgradient of the dual at ``lam``): a violated constraint (negative slack) raises its
    multiplier, a satisfied one lowers it, never below 0.  The step is the core's
    :func:`dualgap.algorithms.multipliers.projected_step` (one projected dual step everywhere).
    """
    lam = np.asarray(lam, dtype=np.float64).reshape(-1)
    m = lam.shape[0]
    # the message names each argument with what it is, in the run's terms
    arrays = {"policy_utilities (E_pi g, the current policy's mean utilities)": policy_utilities,
              "reference_utilities (E_ref g, the reference's mean utilities)":
                  reference_utilities,
              "thresholds (constraints.N.threshold)": thresholds}
    vals = {}
    for k, v in arrays.items():
        a = np.asarray(v, dtype=np.float64).reshape(-1)
        if a.shape != (m,):
            raise ValueError(f"{k}: {a.shape[0] if a.ndim == 1 else a.shape} values for "
                             f"{m} constraints (lam has shape {lam.shape})")
        vals[k.split(" ")[0]] = a
    if (lam < 0).any() or not np.isfinite(lam).all():
        raise ValueError(f"lam: must be finite and >= 0, got {lam!r}")
    if not np.isfinite(step_size) or step_size < 0:
        raise ValueError(f"step_size (dual.step_size): must be finite and >= 0, got "
                         f"{step_size!r}")
    slack = vals["policy_utilities"] - vals["reference_utilities"] - vals["thresholds"]
    return projected_step(lam, slack, step_size)


def scored_samples(reward: np.ndarray, utilities: np.ndarray,
                   reference_utilities: Sequence[float], thresholds: Sequence[float],
                   beta: float) -> OnPolicySamples:
    """The iterate's ``K`` scored samples per prompt as :class:`dualgap.dual_steps.OnPolicySamples`
    with offsets ``c = E_ref g + b``, so ``h = g - E_ref g - b`` and ``u_hat`` is the slack of
    :func:`dual_step`.  No sequence log-probabilities are attached: the ``"empirical"`` rule
    falls back to a damped step there and its record says so."""
    g = _utilities(utilities)
    m = g.shape[0]
    c = (np.asarray(reference_utilities, dtype=np.float64).reshape(-1)
         + np.asarray(thresholds, dtype=np.float64).reshape(-1))
    if c.shape != (m,):
        raise ValueError(f"reference_utilities, thresholds: {c.shape[0]} values for {m} "
                         "constraints")
    return OnPolicySamples(np.asarray(reward, dtype=np.float64), g, c, beta)


def auto_dual_step(stepper: DualStepper, lam: Sequence[float], reward: np.ndarray,
                   utilities: np.ndarray, reference_utilities: Sequence[float],
                   thresholds: Sequence[float], beta: float) -> tuple[np.ndarray, dict]:
    """``dual.step_size: auto``: the next ``lam`` by ``stepper`` (the core's self-tuning dual
    step, :mod:`dualgap.dual_steps`: projected Newton with the sampled Hessian
    ``(1/beta) E_x Cov_k(g)``, secant-corrected where the slack's change since the previous
    call is above its noise, in a KL trust region, Kesten's gain against the samples' noise,
    a damped ``1 / L_hat`` step when the samples cannot support it) on the iterate's scores
    ``reward (N, K)``, ``utilities (m, N, K)``.  Returns ``(lam+, record dict)``: the record
    names the rule asked for and used, the fallback and its reason, and the step's figures.
    """
    lam = np.asarray(lam, dtype=np.float64).reshape(-1)
    if (lam < 0).any() or not np.isfinite(lam).all():
        raise ValueError(f"lam: must be finite and >= 0, got {lam!r}")
    samples = scored_samples(reward, utilities, reference_utilities, thresholds, beta)
    new, rec = stepper(samples, lam)
    return new, rec.to_dict()

"""Projected (sub)gradient descent on the distribution-space dual ``D`` (docs/problem.md).

For ``t = 0 .. T-1``::

    pi_t      = pi_{lam_t}  ∝ pi_ref exp((r + lam_t^T g) / beta)       (exact Lagrangian maximizer)
    u_t       = grad D(lam_t) = E_rho E_{pi_t} h                          (exact), or
              = sum_x rho(x) (1/N) sum_n h(x, y_{x,n}),  y_{x,n} ~ pi_t(.|x)  (N samples per prompt)
    lam_{t+1} = [lam_t - eta_t u_t]_+

with ``eta_t`` from :func:`~dualgap.algorithms.trajectory.step_size_schedule` (``"constant"``,
``"sqrt"``: ``eta / sqrt(t+1)``, ``"smooth"``: ``1 / L_D``).  With the exact gradient and
``eta <= 1/L_D``, ``D(lam_t)`` is non-increasing and ``D(lam_T) - D* <= L_D ||lam_0 - lam*||^2
/ (2T)``; with sampled gradients of second moment ``<= S^2`` and a constant step, the best
iterate satisfies ``E min_t D(lam_t) - D* <= ||lam_0 - lam*||^2 / (2 eta T) + eta S^2 / 2``.

The dual step itself is :func:`~.multipliers.projected_step`, shared by CAID and the LLM
pipeline.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..dual import lagrangian_policy
from ..problem import AlignmentProblem
from ..solver import DualSolution
from .estimators import estimate_slack
from .multipliers import projected_step
from .trajectory import Trajectory, TrajectoryRecorder, step_size_schedule

__all__ = ["dual_descent", "projected_step", "exact_summary", "default_smoothness",
           "check_lam0", "progress_range"]


def exact_summary(solution: DualSolution | dict | None) -> dict | None:
    """``{"lam", "dual_value", "primal_value"}`` from an exact :class:`DualSolution`."""
    if solution is None or isinstance(solution, dict):
        return solution
    return {"lam": np.asarray(solution.lam, float), "dual_value": float(solution.dual_value),
            "primal_value": float(solution.primal_value)}


def default_smoothness(problem: AlignmentProblem) -> Callable[[], float]:
    """``L_D`` from :func:`dualgap.theory.smoothness_bound`, computed when first needed."""
    def L() -> float:
        from ..theory import smoothness_bound
        return float(smoothness_bound(problem))
    return L


def check_lam0(problem: AlignmentProblem, lam0: object) -> np.ndarray:
    m = problem.num_constraints
    if lam0 is None:
        return np.zeros(m)
    lam = np.asarray(lam0, dtype=np.float64).reshape(-1)
    if lam.shape != (m,) or not np.isfinite(lam).all() or (lam < 0).any():
        raise ValueError(f"lam0: expected {m} finite non-negative values, got {lam0!r}")
    return lam


def check_positive_int(name: str, value: object, allow_none: bool = False,
                       minimum: int = 1) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: must be an int >= {minimum}, got {value!r}")
    return int(value)


def progress_range(n: int, enabled: bool, desc: str):
    """``range(n)``, wrapped in a tqdm bar when ``enabled``."""
    if not enabled:
        return range(n)
    from tqdm.auto import tqdm
    return tqdm(range(n), desc=desc, leave=False)


def dual_descent(
    problem: AlignmentProblem,
    iterations: int,
    *,
    step_rule: str = "smooth",
    step_size: float | None = None,
    samples: int | None = None,
    lam0: object = None,
    seed: int | None = 0,
    smoothness: float | None = None,
    exact_solution: DualSolution | dict | None = None,
    feas_tol: float = 1e-6,
    progress: bool = False,
) -> Trajectory:
    """``iterations`` projected (sub)gradient steps on ``D`` in distribution space.

    Args:
        problem: the instance.
        iterations: ``T``; the trajectory has ``T + 1`` records (``lam_0 .. lam_T``).
        step_rule: ``"constant"``, ``"sqrt"`` or ``"smooth"`` (``1/L_D``; then ``step_size``,
            if given, multiplies ``1/L_D``).
        step_size: ``eta``.
        samples: ``N`` sampled responses per prompt for ``u_t``; None = the exact gradient.
        lam0: starting multiplier (default 0).
        seed: for the samples.
        smoothness: ``L_D`` (default :func:`dualgap.theory.smoothness_bound`, when needed).
        exact_solution: ``dualgap.solve(problem)``, stored for plots and distances.
        feas_tol: the violation tolerated by ``best_feasible``.
        progress: show a tqdm bar.
    """
    T = check_positive_int("iterations", iterations, minimum=0)
    samples = check_positive_int("samples", samples, allow_none=True)
    lam = check_lam0(problem, lam0)
    L = (lambda: float(smoothness)) if smoothness is not None else default_smoothness(problem)
    eta = step_size_schedule(step_rule, step_size, L)
    rng = np.random.default_rng(seed)
    config = {"iterations": T, "step_rule": step_rule, "step_size": step_size,
              "samples": samples, "lam0": lam.tolist(), "seed": seed,
              "smoothness": None if smoothness is None else float(smoothness)}
    if step_rule == "smooth":
        config["eta"] = eta(0)
    rec = TrajectoryRecorder(problem, "dual_descent", config, exact_summary(exact_solution),
                             feas_tol)
    for t in progress_range(T + 1, progress, "dual descent"):
        policy = lagrangian_policy(problem, lam)  # size = (X, Y)
        if t == T:
            rec.record(lam, policy)
            break
        u = estimate_slack(problem, policy, samples, rng)
        rec.record(lam, policy, direction=u, samples=samples)
        lam = projected_step(lam, u, eta(t))
    return rec.finish()

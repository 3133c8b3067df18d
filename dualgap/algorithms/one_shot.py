"""One-shot dualization (the earlier "optimal dualization" method).

1. Draw ``K`` reference samples per prompt and solve the dual of that empirical instance
   exactly (:func:`dualgap.empirical.empirical_problem`, :func:`dualgap.solve`)::

       lam_hat = argmin_{lam >= 0}
                 beta E_rho log (1/K) sum_k exp((r + lam^T h_hat)(x, y_{x,k}) / beta)

   (``samples=None`` uses the exact ``lam*`` of the full problem instead: Theorem 4's
   one-shot policy ``pi_p(lam*)``).
2. Maximize the Lagrangian once at that multiplier, on the *original* problem::

       theta_hat = argmax_theta L(pi_theta, lam_hat)      (policy class; ``inner_steps``
                                                           iterations from pi_ref, None = to
                                                           convergence)
       pi_hat    = pi_{lam_hat}                           (``policy_class=None``: exact)

The trajectory has one record, ``(lam_hat, pi_hat)``; ``extra`` holds ``lam_hat``, the
empirical instance's dual value and ``K``.
"""

from __future__ import annotations

import time

import numpy as np

from ..dual import lagrangian_policy
from ..empirical import empirical_problem
from ..problem import AlignmentProblem
from ..solver import DualSolution, solve
from .dual_descent import check_positive_int, exact_summary
from .trajectory import Trajectory, TrajectoryRecorder

__all__ = ["one_shot", "one_shot_multiplier", "policy_step", "policy_stepper"]


def one_shot_multiplier(problem: AlignmentProblem, samples: int | None,
                        seed: int | np.random.Generator | None = 0
                        ) -> tuple[np.ndarray, DualSolution]:
    """``lam_hat`` from the exact solver on ``K = samples`` reference samples per prompt.

    Returns ``(lam_hat, solution of the empirical instance)`` (the full problem's solution
    when ``samples`` is None).  Raises :class:`~dualgap.feasibility.InfeasibleError` when no
    policy on the *samples* meets the thresholds (too few samples for the thresholds).
    """
    samples = check_positive_int("samples", samples, allow_none=True)
    if samples is None:
        sol = solve(problem)
    else:
        sol = solve(empirical_problem(problem, samples, seed))
    return np.asarray(sol.lam, dtype=np.float64), sol


def policy_step(problem: AlignmentProblem, policy_class, lam: np.ndarray, theta,
                inner_steps: int | None, inner_method: str = "auto"):
    """``(policy, theta, L(pi_theta, lam))``: the exact ``pi_lam`` when ``policy_class`` is None,
    else :func:`dualgap.gaps.lagrangian_max` (``method=inner_method``, ``steps=inner_steps``)
    warm-started from ``theta`` (always the torch search; :func:`policy_stepper` takes the
    numpy one where it computes the same)."""
    if policy_class is None:
        return lagrangian_policy(problem, lam), None, None
    from ..gaps import lagrangian_max
    res = lagrangian_max(problem, policy_class, lam, theta0=theta, steps=inner_steps,
                         method=inner_method)
    return res.policy, res.theta, res.value


def policy_stepper(problem: AlignmentProblem, policy_class, inner_steps: int | None,
                   inner_method: str = "auto"):
    """``step(lam, theta) -> (policy, theta, L(pi_theta, lam))``: :func:`policy_step` with
    these settings, for an algorithm's repeated policy steps.  A finite step on the
    log-linear class runs in numpy (:mod:`.loglinear_numpy`: the same search without torch's
    per-call overhead, ~10x faster on the ledger's tables); anything else is
    :func:`policy_step`."""
    from .loglinear_numpy import loglinear_steps

    fast = (None if policy_class is None
            else loglinear_steps(problem, policy_class, inner_steps, inner_method))
    if fast is not None:
        return fast.step
    return lambda lam, theta: policy_step(problem, policy_class, lam, theta, inner_steps,
                                          inner_method)


def one_shot(
    problem: AlignmentProblem,
    policy_class=None,
    *,
    samples: int | None = 64,
    seed: int | None = 0,
    inner_steps: int | None = None,
    inner_method: str = "auto",
    exact_solution: DualSolution | dict | None = None,
    feas_tol: float = 1e-6,
) -> Trajectory:
    """One-shot: ``lam_hat`` from ``samples`` reference samples per prompt, one policy step.

    Args:
        problem: the instance.
        policy_class: a :class:`dualgap.policies.PolicyClass`, or None for the exact ``pi_lam``.
        samples: ``K`` (None: the exact ``lam*``).
        seed: for the samples.
        inner_steps: iterations of the policy step (None: to convergence).
        inner_method: :func:`dualgap.gaps.lagrangian_max`'s ``method`` (``"auto"``: natural
            steps then L-BFGS, exact in one step for the tabular class; ``"lbfgs"``;
            ``"natural"``).
        exact_solution: ``dualgap.solve(problem)``, stored for plots.
    """
    inner_steps = check_positive_int("inner_steps", inner_steps, allow_none=True)
    config = {"samples": samples, "seed": seed, "inner_steps": inner_steps,
              "inner_method": inner_method,
              "policy_class": None if policy_class is None else repr(policy_class)}
    rec = TrajectoryRecorder(problem, "one_shot", config, exact_summary(exact_solution),
                             feas_tol)
    t0 = time.perf_counter()
    lam_hat, emp = one_shot_multiplier(problem, samples, seed)
    t_dual = time.perf_counter() - t0
    theta0 = None if policy_class is None else policy_class.init_params()
    policy, theta, value = policy_stepper(problem, policy_class, inner_steps,
                                          inner_method)(lam_hat, theta0)
    rec.record(lam_hat, policy, lagrangian_value=value)
    extra = {"lam_hat": lam_hat, "empirical_dual_value": float(emp.dual_value),
             "empirical_converged": bool(emp.converged), "dual_seconds": t_dual}
    return rec.finish(extra=extra, theta=theta)

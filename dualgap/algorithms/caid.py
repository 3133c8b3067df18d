"""CAID: constrained alignment via iterative dualization (arXiv 2505.19387, Alg. 1).

Practical start (the default; the paper's experiments)::

    lam_0     = one-shot lam_hat from K reference samples per prompt (or ``lam0`` when given)
    for t = 0 .. T:
        theta_t   = argmax_theta L(pi_theta, lam_t), inexact: ``inner_steps`` iterations of
                    :func:`dualgap.gaps.lagrangian_max` warm-started from theta_{t-1}
                    (theta_{-1} = init_params(), i.e. pi_ref)
        u_t       = E_rho E_{pi_theta_t} h          (exact), or
                  = sum_x rho(x) (1/N) sum_n h(x, y_{x,n}),  y_{x,n} ~ pi_theta_t(.|x)
        lam_{t+1} = [lam_t - eta_t u_t]_+           (for t < T; a numeric ``step_size``)
        lam_{t+1} = DualStepper(rule)(samples_t, lam_t)   (``step_size="auto"``, the default)

With ``step_size="auto"`` the dual step needs no number: :class:`dualgap.dual_steps.DualStepper`
takes a projected Newton step with the sampled dual Hessian ``Cov_{pi_t}(h) / beta``, corrected
by the secant of the slack's change since the previous iterate (:mod:`dualgap.dual_secant`),
inside a KL trust region (``step_rule`` picks another rule of
:data:`dualgap.dual_steps.DUAL_STEP_RULES`),
from the same samples that give ``u_t`` (:func:`~dualgap.dual_steps.exact_samples` or
:func:`~dualgap.dual_steps.policy_samples`); when the samples cannot support the rule it takes a
damped step and says why.  With sampled slacks it drives the slack's lower confidence bound
``u_hat - z SE / sqrt(n)`` to 0 (``confidence``, default 0.84; :mod:`dualgap.dual_samples`),
so a short run ends on the feasible side.  Each step's
:class:`~dualgap.dual_steps.DualStepRecord` is in ``extra["dual_steps"]``.

Literal start (the algorithm as written): ``lam_0 = lam0`` (default 0) and ``theta_0 =
init_params()`` (pi_ref, no policy step), so the first dual step is taken at ``pi_ref``;
the loop above then runs from ``t = 1``.

Record ``t`` is ``(lam_t, pi_theta_t)``: ``T`` dual steps give ``T + 1`` records.
``policy_class=None`` takes the exact maximizer ``pi_lam`` (then CAID with exact ``u`` is
:func:`~dualgap.algorithms.dual_descent`).  ``lagrangian[t] = L(pi_theta_t, lam_t)`` is the
policy step's lower estimate of ``D_p(lam_t)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..dual_steps import DUAL_STEP_RULES, DualStepper, exact_samples, policy_samples
from ..problem import AlignmentProblem
from ..solver import DualSolution
from .dual_descent import (
    check_lam0,
    check_positive_int,
    default_smoothness,
    exact_summary,
    progress_range,
    projected_step,
)
from .estimators import estimate_slack
from .one_shot import one_shot_multiplier, policy_step, policy_stepper
from .trajectory import Trajectory, TrajectoryRecorder, step_size_schedule

__all__ = ["caid", "caid_update_rule", "CAID_STARTS"]

CAID_STARTS = ("practical", "literal")


def caid(
    problem: AlignmentProblem,
    policy_class=None,
    *,
    iterations: int = 20,
    step_rule: str | None = None,
    step_size: float | str | None = "auto",
    confidence: float | str | None = "auto",
    inner_steps: int | None = 5,
    inner_method: str = "auto",
    samples: int | None = None,
    start: str = "practical",
    one_shot_samples: int | None = 64,
    lam0: object = None,
    seed: int | None = 0,
    smoothness: float | None = None,
    exact_solution: DualSolution | dict | None = None,
    feas_tol: float = 1e-6,
    progress: bool = False,
) -> Trajectory:
    """Run CAID (see the module docstring for the iteration).

    Args:
        problem: the instance.
        policy_class: a :class:`dualgap.policies.PolicyClass` (None: the exact ``pi_lam``).
        iterations: ``T`` dual steps.
        step_rule, step_size: the dual step.  ``step_size="auto"`` (the default; None is the
            same) gives no number: with ``step_rule`` None or ``"auto"`` (the measured winner,
            ``"newton"``) or another of ``"newton"``, ``"curvature"``, ``"empirical"`` the
            self-tuning step of :mod:`dualgap.dual_steps`; with ``"smooth"`` ``eta = 1 / L_D``.
            A number ``eta`` keeps the projected step ``[lam - eta_t u]_+`` with the schedule
            ``step_rule`` (``"constant"``, the default then, ``"sqrt"``, or ``"smooth"`` =
            ``eta / L_D``).
        confidence: the self-tuning step's margin, the one-sided confidence level at which
            it drives the sampled slack's lower bound ``u_hat - z SE`` to 0
            (:mod:`dualgap.dual_samples`): ``"auto"`` (the default,
            :data:`dualgap.dual_steps.DEFAULT_CONFIDENCE`), 0 or None for none, or a level in
            ``[0.5, 1)``; no effect with exact expectations (``SE = 0``).
        inner_steps: iterations per policy step (None: to convergence).
        inner_method: :func:`dualgap.gaps.lagrangian_max`'s ``method``: ``"auto"`` (natural
            steps, then L-BFGS; one natural step is exact for the tabular class), ``"lbfgs"``
            or ``"natural"``.
        samples: ``N`` on-policy samples per prompt for ``u_t`` (None: exact expectation).
        start: ``"practical"`` or ``"literal"``.
        one_shot_samples: ``K`` of the practical start's one-shot ``lam_0`` (None: exact lam*).
        lam0: the starting multiplier; for the practical start it replaces the one-shot one.
        seed: for all samples (the one-shot draw uses ``seed``, the dual steps a stream
            spawned from it).
        smoothness: ``L_D`` for ``step_rule="smooth"`` (default
            :func:`dualgap.theory.smoothness_bound`).
        exact_solution: ``dualgap.solve(problem)``, stored for plots.
        feas_tol: violation tolerated by ``best_feasible``.
        progress: tqdm bar.
    """
    if start not in CAID_STARTS:
        raise ValueError(f"start: must be one of {CAID_STARTS}, got {start!r}")
    T = check_positive_int("iterations", iterations, minimum=0)
    inner_steps = check_positive_int("inner_steps", inner_steps, allow_none=True)
    samples = check_positive_int("samples", samples, allow_none=True)
    one_shot_samples = check_positive_int("one_shot_samples", one_shot_samples, allow_none=True)
    step_rule, step_size, stepper = _dual_rule(step_rule, step_size, confidence)
    L = (lambda: float(smoothness)) if smoothness is not None else default_smoothness(problem)
    eta = None if stepper is not None else step_size_schedule(step_rule, step_size, L)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    config = {"iterations": T, "step_rule": step_rule, "step_size": step_size,
              "inner_steps": inner_steps, "inner_method": inner_method, "samples": samples,
              "start": start, "confidence": None if stepper is None else stepper.confidence,
              "one_shot_samples": one_shot_samples, "seed": seed,
              "policy_class": None if policy_class is None else repr(policy_class)}
    if step_rule == "smooth":
        config["eta"] = eta(0)
    rec = TrajectoryRecorder(problem, "caid", config, exact_summary(exact_solution), feas_tol)
    extra: dict = {} if stepper is None else {"dual_steps": []}
    theta = None if policy_class is None else policy_class.init_params()
    step_policy = policy_stepper(problem, policy_class, inner_steps, inner_method)
    if start == "practical":
        if lam0 is None:
            t0 = time.perf_counter()
            lam, _ = one_shot_multiplier(problem, one_shot_samples, seed)
            extra["one_shot_lam"] = lam.copy()
            extra["one_shot_seconds"] = time.perf_counter() - t0
        else:
            lam = check_lam0(problem, lam0)
        policy, theta, value = step_policy(lam, theta)
    else:
        lam = check_lam0(problem, lam0)
        policy = (problem.reference if policy_class is None
                  else policy_class.policy(theta))  # pi_ref: no policy step yet
        value = None
    for t in progress_range(T, progress, "CAID"):
        if stepper is None:
            u = estimate_slack(problem, policy, samples, rng)
        else:  # the same draws as estimate_slack's for the same rng (both sample_responses)
            s = (exact_samples(problem, policy) if samples is None
                 else policy_samples(problem, policy, samples, rng))
            u = s.slack()
        rec.record(lam, policy, direction=u, lagrangian_value=value, samples=samples)
        if stepper is None:
            lam = projected_step(lam, u, eta(t))
        else:
            lam, step = stepper(s, lam)
            extra["dual_steps"].append(step.to_dict())
        policy, theta, value = step_policy(lam, theta)
    rec.record(lam, policy, lagrangian_value=value)
    return rec.finish(extra=extra, theta=theta)


def _dual_rule(step_rule: str | None, step_size: object, confidence: object = "auto"
               ) -> tuple[str, float | str | None, DualStepper | None]:
    """``(step_rule, step_size, stepper)``: a :class:`DualStepper` for the self-tuning rules
    (``step_size`` "auto" or None with no rule, "auto" or a rule of ``DUAL_STEP_RULES``), with
    the margin ``confidence`` (a level for any other step is refused)."""
    auto_rules = ("auto", *DUAL_STEP_RULES)
    no_number = step_size is None or (isinstance(step_size, str) and step_size == "auto")
    if isinstance(step_size, str) and not no_number:
        raise ValueError(f"step_size: a positive float or 'auto', got {step_size!r}")
    if step_rule is None:
        step_rule = "auto" if no_number else "constant"
    if step_rule in auto_rules:
        if not no_number:
            raise ValueError(f"step_size: step_rule {step_rule!r} computes its own step; got "
                             f"step_size={step_size!r} (use step_rule 'constant' for a number)")
        return step_rule, "auto", DualStepper(step_rule, confidence)
    if not (isinstance(confidence, str) and confidence == "auto") and confidence not in (None, 0):
        raise ValueError(f"confidence: a margin needs the self-tuning step (step_size 'auto'), "
                         f"got confidence={confidence!r} with step_rule {step_rule!r}")
    if no_number:
        if step_rule != "smooth":
            raise ValueError(f"step_size: step_rule {step_rule!r} needs a number, got "
                             f"{step_size!r} (or use step_size 'auto')")
        step_size = None
    return step_rule, step_size, None


def caid_update_rule(policy_class_factory: Callable[[AlignmentProblem], object] | None = None,
                     inner_steps: int | None = None, samples: int | None = None, seed: int = 0,
                     inner_method: str = "auto"
                     ) -> Callable[[AlignmentProblem, float], Callable[[np.ndarray], np.ndarray]]:
    """CAID's dual update as a rule for :mod:`dualgap.testing`: ``step(lam)`` takes the policy
    step at ``lam`` (warm-started from the previous call's theta), then returns
    ``[lam - eta u]_+`` with ``u`` at the new policy.

    ``policy_class_factory(problem)`` builds the class (e.g. ``TabularPolicy``; None: exact).
    """
    def rule(problem: AlignmentProblem, eta: float) -> Callable[[np.ndarray], np.ndarray]:
        pc = None if policy_class_factory is None else policy_class_factory(problem)
        state = {"theta": None if pc is None else pc.init_params()}
        rng = np.random.default_rng(seed)

        def step(lam: np.ndarray) -> np.ndarray:
            lam = np.asarray(lam, dtype=np.float64)
            policy, theta, _ = policy_step(problem, pc, lam, state["theta"], inner_steps,
                                           inner_method)
            state["theta"] = theta
            return projected_step(lam, estimate_slack(problem, policy, samples, rng), eta)

        return step

    rule.__name__ = "caid_update_rule"
    return rule

"""Parameter-space duality: ``D_p``, ``D*_p``, ``P*_p`` and the parametrization gap ``nu``.

For a policy class ``theta -> pi_theta`` (:mod:`dualgap.policies`) and ``lam >= 0`` (docs/problem.md)::

    L(pi_theta, lam) = E_rho [ E_{pi_theta}(r + lam^T h) - beta KL(pi_theta(.|x) || pi_ref(.|x)) ]
                     = D(lam) - beta E_rho KL(pi_theta || pi_lam)          (exact identity)
    D_p(lam)  = max_theta L(pi_theta, lam)      <= D(lam)                 (convex, not smooth)
    D*_p      = min_{lam >= 0} D_p(lam),  lam*_p its minimizer
    P*_p      = max_theta J(pi_theta)  s.t.  E_rho E_{pi_theta} h >= 0   <= D*_p (weak duality)

Every number here is an estimate that errs on a known side (docs/theory.md, "Which side each estimate errs on"):

* :func:`lagrangian_max` finds *a* theta by local search: its value ``L(pi_theta, lam)`` is a
  lower estimate of ``D_p(lam)`` and theta is the certificate.
* :func:`parametrized_dual` minimizes ``D_p`` by a level bundle method whose cuts are
  ``L(pi_theta_k, lam) = J(theta_k) + lam^T s_k`` for the thetas found: every cut is an exact
  lower bound on ``D_p`` everywhere, so the minimum of the model over a box that contains
  ``lam*_p`` (certified from a strictly feasible theta) is a *certified lower bound* on ``D*_p``;
  the best value found, ``min_k max_j cut_j(lam_k)``, is the point estimate (it errs low
  through the inner search and high through the outer one).  :func:`refine_dual` adds the cuts
  of more thetas (e.g. fit witnesses).
* :func:`parametrized_primal`: any feasible theta gives a *lower estimate* of ``P*_p``.
* :func:`parametrization_gap`: any theta gives a valid (upper) ``nu`` for its target.

Imports torch.
"""

from __future__ import annotations

import functools
import math
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch

from .dual import lagrangian_policy
from .policies import DTYPE, FitResult, PolicyClass, _lbfgs, small_problem_threads
from .problem import AlignmentProblem

__all__ = [
    "lagrangian_objective",
    "lagrangian_max",
    "LagrangianMax",
    "parametrized_dual",
    "ParametrizedDual",
    "refine_dual",
    "parametrized_primal",
    "ParametrizedPrimal",
    "parametrization_gap",
    "ParametrizationGap",
    "policy_terms",
]

# per-problem torch copies of (rho, r, h, log pi_ref on the support, support)
_TENSORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tensors(problem: AlignmentProblem) -> dict[str, torch.Tensor]:
    t = _TENSORS.get(problem)
    if t is None:
        sup = problem.support
        t = {
            "rho": torch.as_tensor(problem.prompt_weights, dtype=DTYPE),  # size = (X,)
            "r": torch.as_tensor(np.where(sup, problem.reward, 0.0), dtype=DTYPE),  # (X, Y)
            "h": torch.as_tensor(np.where(sup[None], problem.h, 0.0), dtype=DTYPE),  # (m, X, Y)
            "log_ref": torch.as_tensor(np.where(sup, problem.log_reference, 0.0), dtype=DTYPE),
            "support": torch.as_tensor(sup),
        }
        _TENSORS[problem] = t
    return t


def _small_threads(fn):
    """Run ``fn(problem, ...)`` under :func:`~dualgap.policies.small_problem_threads`."""
    @functools.wraps(fn)
    def wrapper(problem, *args, **kwargs):
        if not isinstance(problem, AlignmentProblem):
            raise ValueError(f"problem: expected an AlignmentProblem, got "
                             f"{type(problem).__name__}")
        with small_problem_threads(problem):
            return fn(problem, *args, **kwargs)
    return wrapper


def _check_compatible(problem: AlignmentProblem, policy_class: PolicyClass) -> None:
    if not isinstance(policy_class, PolicyClass):
        raise ValueError(f"policy_class: expected a PolicyClass, got {type(policy_class).__name__}")
    if problem is policy_class.problem:
        return
    if problem.reward.shape != policy_class.problem.reward.shape:
        raise ValueError(f"problem: shape {problem.reward.shape} does not match the policy "
                         f"class's {policy_class.problem.reward.shape}")
    if not np.array_equal(problem.support, policy_class.problem.support):
        raise ValueError("problem: reference support differs from the policy class's")


def _lam_tensor(problem: AlignmentProblem, lam: object) -> torch.Tensor:
    m = problem.num_constraints
    arr = np.asarray(lam.detach().numpy() if isinstance(lam, torch.Tensor) else lam,
                     dtype=np.float64).reshape(-1) if m else np.zeros(0)
    if arr.shape != (m,):
        raise ValueError(f"lam: shape {arr.shape} does not match m = {m}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"lam: multipliers must be finite and >= 0, got {arr!r}")
    return torch.as_tensor(arr, dtype=DTYPE)


def policy_terms(problem: AlignmentProblem, policy_class: PolicyClass,
                 theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(J(pi_theta), E_rho E_{pi_theta} h)`` as torch (scalar, ``(m,)``), differentiable.

    ``J = E_rho sum_{y in supp} pi_theta (r - beta (log pi_theta - log pi_ref))``; entries
    outside the support contribute exactly 0 (no ``0 * -inf``).
    """
    _check_compatible(problem, policy_class)
    t = _tensors(problem)
    sup = t["support"]
    logp = torch.where(sup, policy_class.log_policy(theta), 0.0)  # size = (X, Y)
    p = torch.where(sup, torch.exp(logp), 0.0)  # size = (X, Y)
    J = t["rho"] @ (p * (t["r"] - problem.beta * (logp - t["log_ref"]))).sum(1)
    slack = torch.einsum("x,xy,ixy->i", t["rho"], p, t["h"])  # size = (m,)
    return J, slack


def lagrangian_objective(problem: AlignmentProblem, policy_class: PolicyClass,
                         theta: torch.Tensor, lam: object) -> torch.Tensor:
    """``L(pi_theta, lam) = E_rho[E_{pi_theta}(r + lam^T h)] - beta E_rho KL(pi_theta || pi_ref)``.

    A differentiable torch scalar (float64).  ``problem`` may differ from
    ``policy_class.problem`` (e.g. a tightened copy) if the shapes and supports agree.
    """
    lam_t = _lam_tensor(problem, lam)
    J, slack = policy_terms(problem, policy_class, theta)
    return J + lam_t @ slack


@dataclass
class LagrangianMax:
    """The best ``theta`` :func:`lagrangian_max` found for ``max_theta L(pi_theta, lam)``.

    Attributes:
        value: ``L(pi_theta, lam)``, a lower estimate of ``D_p(lam)`` (theta certifies it).
        theta: the maximizer found, ``(num_params,)`` (detached float64 tensor).
        policy: ``pi_theta``, ``(X, Y)``.
        steps: L-BFGS iterations of the run that produced ``theta``.
        objective: ``J(pi_theta)``.
        slack: ``E_rho E_{pi_theta} h``, ``(m,)``: a subgradient of ``D_p`` at ``lam`` when
            theta is an exact maximizer (and always the slope of the cut
            ``lam' -> J + lam'^T slack <= D_p(lam')``).
        lam: the multiplier.
        start_values: the final value of each start (for diagnosing local maxima).
        total_steps: iterations over all starts.
    """

    value: float
    theta: torch.Tensor = field(repr=False)
    policy: np.ndarray = field(repr=False)
    steps: int
    objective: float = math.nan
    slack: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lam: np.ndarray = field(default_factory=lambda: np.zeros(0))
    start_values: list[float] = field(default_factory=list)
    total_steps: int = 0


#: optimizers :func:`lagrangian_max` knows
LAGRANGIAN_METHODS = ("auto", "natural", "lbfgs")


def _natural_ascent(problem: AlignmentProblem, policy_class: PolicyClass, lam_t: torch.Tensor,
                    theta: torch.Tensor, max_iter: int) -> tuple[torch.Tensor, int, bool]:
    """Damped natural-gradient (Fisher scoring) ascent on ``L(pi_theta, lam)``.

    ``L(pi_theta, lam) = D(lam) - beta E_rho KL(pi_theta || pi_lam)``, so each step fits the
    score change to ``delta = (r + lam^T h) / beta - f_theta`` in the ``rho pi_theta``-weighted,
    per-prompt-centered least-squares sense (:meth:`PolicyClass.score_step`; for the tabular
    class the step is exact), followed by a backtracking line search on ``L`` (a full step is
    also accepted when it loses no more than float rounding, ``1e-15 |L|``: near the optimum
    the gain is quadratic in the step and below rounding while the policy still moves).  The
    Levenberg-Marquardt damping grows when a step is rejected and shrinks after a full step.
    Stops (``converged``) when ``||d||_inf <= 1e-12 (1 + ||theta||_inf)``, the direction
    vanishing at a stationary point; unconverged when no step is accepted even with heavy
    damping, or after ``max_iter`` steps.
    """
    t = _tensors(problem)
    sup = t["support"]
    s_over_beta = (t["r"] + torch.einsum("i,ixy->xy", lam_t, t["h"])) / problem.beta

    def value(th: torch.Tensor) -> float:
        J, sl = policy_terms(problem, policy_class, th)
        return float(J + lam_t @ sl)

    theta = theta.detach().clone()
    damping = 1e-8
    converged = False
    with torch.no_grad():
        cur = value(theta)
        it = 0
        while it < max_iter:
            f = policy_class.scores(theta)
            p = torch.where(sup, torch.exp(policy_class.log_policy(theta)), 0.0)
            delta = torch.where(sup, s_over_beta - f, 0.0)
            d = policy_class.score_step(theta, delta, t["rho"][:, None] * p, damping)
            if float(d.abs().max() if d.numel() else 0.0) <= 1e-12 * (
                    1.0 + float(theta.abs().max() if theta.numel() else 0.0)):
                converged = True
                break
            it += 1
            rounding = 1e-15 * max(1.0, abs(cur))
            step, accepted = 1.0, False
            for _ in range(40):
                trial = theta + step * d
                v = value(trial)
                if math.isfinite(v) and (v > cur or (step == 1.0 and v >= cur - rounding)):
                    accepted = True
                    break
                step *= 0.5
            if not accepted:
                if damping > 1e6:
                    break  # no ascent along natural directions: let L-BFGS try
                damping *= 100.0
                continue
            theta, cur = trial, max(v, cur)
            damping = max(damping / 10.0, 1e-12) if step == 1.0 else damping * 10.0
    return theta, it, converged


@_small_threads
def lagrangian_max(problem: AlignmentProblem, policy_class: PolicyClass, lam: object,
                   theta0: torch.Tensor | None = None, steps: int | None = None,
                   starts: int = 1, seed: int = 0, method: str = "auto") -> LagrangianMax:
    """``D_p(lam) = max_theta L(pi_theta, lam)``, estimated from below by local search.

    Starts: ``theta0`` (default ``policy_class.init_params()``) and ``starts - 1`` random ones
    (``init_params(seed + k)``).  ``method``:

    * ``"natural"``: damped natural-gradient (Fisher scoring) steps with a line search
      (:func:`_natural_ascent`); needs ``policy_class.has_score_step``;
    * ``"lbfgs"``: L-BFGS (:func:`~dualgap.policies._lbfgs`: two-loop recursion, Armijo
      backtracking, autograd gradients);
    * ``"auto"`` (default): for classes that prefer them (``prefers_natural``: tabular,
      log-linear) natural steps, then an L-BFGS polish unless they converged (the polish would
      only drift along directions that are flat at float precision); L-BFGS alone otherwise
      (on MLPs the natural steps were seen to stall in worse local maxima than L-BFGS reaches).

    ``steps`` caps the iterations of each start (natural and L-BFGS together; default: run to
    convergence: at most 200 natural steps, or 30 natural + 500 L-BFGS for ``"auto"``).
    ``theta0`` with a small ``steps`` is the inexact, warm-started policy step of CAID.
    Returns the best start; its ``value`` is a lower estimate of ``D_p(lam)`` and ``theta``
    is the certificate.
    """
    _check_compatible(problem, policy_class)
    lam_t = _lam_tensor(problem, lam)
    if steps is not None and (int(steps) != steps or int(steps) < 1):
        raise ValueError(f"steps: must be a positive integer or None, got {steps!r}")
    if int(starts) < 1:
        raise ValueError(f"starts: must be >= 1, got {starts!r}")
    if method not in LAGRANGIAN_METHODS:
        raise ValueError(f"method: must be one of {LAGRANGIAN_METHODS}, got {method!r}")
    natural = method == "natural" or (method == "auto" and policy_class.prefers_natural
                                      and policy_class.has_score_step)
    if method == "natural" and not policy_class.has_score_step:
        raise ValueError(f"method: 'natural' is not available for {policy_class!r}")
    polish = method == "lbfgs" or method == "auto"
    firsts = [policy_class.init_params() if theta0 is None
              else policy_class.check_params(theta0).detach()]
    firsts += [policy_class.init_params(seed + k) for k in range(1, int(starts))]

    def neg_l(th: torch.Tensor) -> torch.Tensor:
        J, s = policy_terms(problem, policy_class, th)
        return -(J + lam_t @ s)

    best = None
    values, total = [], 0
    for th0 in firsts:
        theta = th0.detach().clone()
        budget = math.inf if steps is None else int(steps)
        n, done = 0, False
        if natural:
            cap = 200 if method == "natural" else 30
            theta, n, done = _natural_ascent(problem, policy_class, lam_t, theta,
                                             cap if steps is None else int(min(budget, cap)))
        if polish and n < budget and not done:
            theta = theta.requires_grad_(True)
            n += _lbfgs(theta, neg_l, 500 if steps is None else int(budget - n))
            theta = theta.detach()
        total += n
        with torch.no_grad():
            J, s = policy_terms(problem, policy_class, theta)
            val = float(J + lam_t @ s)
        values.append(val)
        if best is None or val > best[0]:
            best = (val, theta.clone(), n, float(J), s.numpy().copy())
    assert best is not None
    val, theta, n, J, s = best
    return LagrangianMax(value=val, theta=theta, policy=policy_class.policy(theta), steps=n,
                         objective=J, slack=s, lam=lam_t.numpy().copy(), start_values=values,
                         total_steps=total)


# ------------------------------------------------------------------ the parametrized dual
@dataclass
class ParametrizedDual:
    """``D*_p = min_{lam >= 0} D_p(lam)`` by a level bundle method (see :func:`parametrized_dual`).

    Attributes:
        lam: ``lam*_p`` estimate (the evaluated multiplier with the smallest ``D_p`` estimate).
        value: point estimate of ``D*_p``: ``min_k max_j L(theta_j, lam_k)`` (the estimate of
            ``D_p(lam_k)`` is the best of all thetas found at ``lam_k``); errs low through the
            inner local search and high through the outer stopping tolerance.
        lower_bound: ``min_{lam in box} max_k [J(theta_k) + lam^T s_k]`` (from the LP's dual
            weights, see :func:`_model_min`), a *certified* lower bound on ``D*_p`` when
            ``box_certified`` (each cut comes from an actual theta).
        radius: the box ``||lam||_1 <= radius`` searched.
        box_certified: ``radius`` is proved to contain ``lam*_p`` (from a strictly feasible theta:
            ``radius = (D* - J(theta_s)) / min_i s_i(theta_s)`` with ``D* >= D*_p``).
        theta: the best theta found at ``lam``; ``policy`` its ``pi_theta``; ``slack`` its
            ``E_rho E_pi h`` (the multi-shot policy ``pi_p(lam*_p)`` of Theorem 3).
        iterations: bundle iterations; ``converged``: ``value - lower_bound <= tol (1 + |value|)``.
        cuts: every ``(lam_k, D_p estimate, J(theta_k), s_k)`` evaluated.
        thetas: the parameters of every cut (for primal recovery).
    """

    lam: np.ndarray
    value: float
    lower_bound: float
    radius: float
    box_certified: bool
    theta: torch.Tensor = field(repr=False)
    policy: np.ndarray = field(repr=False)
    slack: np.ndarray
    iterations: int
    converged: bool
    seconds: float
    cuts: list[tuple[np.ndarray, float, float, np.ndarray]] = field(default_factory=list,
                                                                     repr=False)
    thetas: list[torch.Tensor] = field(default_factory=list, repr=False)


def _cut(problem: AlignmentProblem, policy_class: PolicyClass,
         theta: torch.Tensor) -> tuple[float, np.ndarray]:
    """``(J(theta), s(theta))``: the cut ``lam -> J + lam^T s`` of a parameter."""
    with torch.no_grad():
        J, s = policy_terms(problem, policy_class, theta)
    return float(J), s.numpy().copy()


def _model_min(a: np.ndarray, S: np.ndarray, radius: float) -> tuple[float, np.ndarray]:
    """``min_{lam >= 0, sum lam <= radius} max_k a_k + S_k^T lam``: ``(lower bound, argmin)``.

    The LP (HiGHS) gives the minimizer; the returned value is recomputed from its dual weights
    ``w`` (projected onto the simplex) as ``w^T a + radius min(0, min_i (S^T w)_i)``, which is a
    lower bound on the model minimum for *any* ``w`` in the simplex (the model is at least the
    ``w``-mixture of its cuts), so it does not depend on the LP solver's tolerances.
    """
    from scipy.optimize import linprog

    K, m = S.shape
    cost = np.zeros(m + 1)
    cost[-1] = 1.0
    A = np.vstack([np.hstack([S, -np.ones((K, 1))]), np.append(np.ones(m), 0.0)[None]])
    shift = float(a.max())  # cut values near 0: better conditioned
    b = np.append(-(a - shift), radius)
    res = linprog(cost, A_ub=A, b_ub=b, bounds=[(0, None)] * m + [(None, None)],
                  method="highs", options={"primal_feasibility_tolerance": 1e-10,
                                           "dual_feasibility_tolerance": 1e-10})
    if res.status != 0:  # pragma: no cover - bounded and feasible by construction
        raise RuntimeError(f"cutting-plane LP failed: {res.message}")
    w = np.maximum(-np.asarray(res.ineqlin.marginals[:K], dtype=np.float64), 0.0)
    if w.sum() <= 0:  # pragma: no cover - the t-constraints carry the dual mass
        w = np.zeros(K)
        w[int(np.argmax(a))] = 1.0
    w /= w.sum()
    lower = float(w @ a) + radius * min(0.0, float((S.T @ w).min(initial=0.0)))
    return min(lower, float(res.x[-1]) + shift), np.maximum(res.x[:m], 0.0)


def _level_projection(a: np.ndarray, S: np.ndarray, radius: float, center: np.ndarray,
                      level: float, fallback: np.ndarray, slack: float) -> np.ndarray:
    """``argmin ||lam - center||^2`` over ``{lam >= 0, sum lam <= radius, model(lam) <= level}``
    by SLSQP; its answer is kept only if ``model <= level + slack`` there, else ``fallback``
    (the LP minimizer of the model, which always makes progress)."""
    from scipy.optimize import minimize

    cons = [{"type": "ineq", "fun": lambda z: level - (a + S @ z), "jac": lambda z: -S},
            {"type": "ineq", "fun": lambda z: np.array([radius - z.sum()]),
             "jac": lambda z: -np.ones((1, z.size))}]
    res = minimize(lambda z: float((z - center) @ (z - center)), fallback,
                   jac=lambda z: 2.0 * (z - center), bounds=[(0, None)] * center.size,
                   constraints=cons, method="SLSQP", options={"maxiter": 200, "ftol": 1e-14})
    z = np.maximum(res.x, 0.0)
    if not res.success or z.sum() > radius or (a + S @ z).max() > level + slack:
        return fallback
    return z


def _feasible_radius(problem: AlignmentProblem, d_star: float,
                     cands: list[tuple[float, np.ndarray]]) -> float:
    """Smallest ``(D* - J(theta) + r) / min_i s_i(theta)`` over candidates with
    ``min s >= 1e-6 max(1, M)`` (smaller margins make the quotient pure rounding noise);
    ``r = 1e-12 (1 + |D*| + |J|)`` covers the rounding of ``D* - J``."""
    best = math.inf
    floor = 1e-6 * max(1.0, problem.score_bound)
    for J, s in cands:
        smin = float(s.min()) if s.size else math.inf
        if smin >= floor:
            r = 1e-12 * (1.0 + abs(d_star) + abs(J))
            best = min(best, (max(d_star - J, 0.0) + r) / smin)
    return best


@_small_threads
def parametrized_dual(problem: AlignmentProblem, policy_class: PolicyClass, *,
                      tol: float = 1e-9, max_iter: int = 80, starts: int | None = None,
                      seed: int = 0,
                      method: str = "auto", level: float = 0.3,
                      lam0: object = None, polish_steps: int = 6) -> ParametrizedDual:
    """Minimize ``D_p(lam) = max_theta L(pi_theta, lam)`` over ``lam >= 0``.

    A level bundle method (Lemarechal, Nemirovskii and Nesterov 1995) on the cuts
    ``lam -> J(theta_k) + lam^T s_k`` (``s_k = E_rho E_{pi_theta_k} h``), each a lower bound on
    ``D_p`` for *every* ``lam`` because ``theta_k`` is an actual parameter:

    * ``lower_k = min_{lam in box} max_j cut_j(lam)`` (an LP), ``upper_k = min_j D_p-estimate``;
    * next ``lam`` = the projection of the best ``lam`` so far onto
      ``{lam in box: max_j cut_j(lam) <= lower_k + level (upper_k - lower_k)}``;
    * ``D_p`` at the new ``lam`` by :func:`lagrangian_max`, warm-started at the ``theta`` of the
      highest cut there (so the estimate is never below the model) plus ``starts - 1`` fresh ones.

    The box ``||lam||_1 <= radius`` is certified to contain ``lam*_p`` when a strictly feasible
    theta was found (``D*_p <= D*``: any ``lam`` with ``||lam||_1 > (D* - J(theta_s)) / min s``
    has ``D_p(lam) > D*``); otherwise the radius is ``4 (||lam*||_1 + 1)``, uncertified.
    Starts from ``lam = 0``, ``lam0`` (default: the exact ``lam*``) and a few multiples of it.
    When the bundle gap closes, the candidate is re-evaluated with ``2 starts + 1`` starts; a
    better theta there becomes a cut and the method goes on (at most 3 times).  ``starts``
    defaults to 1 for classes with natural steps and 2 otherwise (MLPs have local maxima).
    Finally ``lam`` is sharpened by Newton steps on the active set (``polish_steps``,
    :func:`_newton_polish`: ``s_A(theta(lam)) = 0``); the new thetas become cuts and the
    estimate ``min_k max_j cut_j(lam_k)`` decides which ``lam`` is reported.
    """
    from .solver import solve

    _check_compatible(problem, policy_class)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: must be in (0, 1), got {level!r}")
    if not tol > 0:
        raise ValueError(f"tol: must be > 0, got {tol!r}")
    t0 = time.perf_counter()
    n_starts = (1 if policy_class.prefers_natural else 2) if starts is None else int(starts)
    if n_starts < 1:
        raise ValueError(f"starts: must be >= 1, got {starts!r}")
    m = problem.num_constraints
    exact = solve(problem)
    start = exact.lam if lam0 is None else _lam_tensor(problem, lam0).numpy()
    cuts: list[tuple[np.ndarray, float, float, np.ndarray]] = []
    thetas: list[torch.Tensor] = []

    def evaluate(lam: np.ndarray, warm: torch.Tensor | None) -> LagrangianMax:
        res = lagrangian_max(problem, policy_class, lam, theta0=warm, starts=n_starts,
                             seed=seed + len(cuts) * 101, method=method)
        cuts.append((lam.copy(), res.value, res.objective, res.slack.copy()))
        thetas.append(res.theta)
        return res

    def best_warm(lam: np.ndarray) -> torch.Tensor | None:
        if not cuts:
            return None
        vals = [J + lam @ s for _, _, J, s in cuts]
        return thetas[int(np.argmax(vals))]

    if m == 0:
        res = evaluate(np.zeros(0), None)
        return ParametrizedDual(np.zeros(0), res.value, res.value, 0.0, True, res.theta,
                                res.policy, res.slack, 0, True, time.perf_counter() - t0, cuts,
                                thetas)
    init = [np.zeros(m), start]
    for lam in init:
        evaluate(lam, best_warm(lam))
    # a strictly feasible theta for the certified box: push lam up until min slack > 0
    radius = _feasible_radius(problem, exact.dual_value, [(J, s) for _, _, J, s in cuts])
    k = 0
    while not math.isfinite(radius) and k < 6:
        lam = start + (2.0 ** k) * (1.0 + start.sum()) * np.ones(m)
        evaluate(lam, best_warm(lam))
        radius = _feasible_radius(problem, exact.dual_value, [(J, s) for _, _, J, s in cuts])
        k += 1
    certified = math.isfinite(radius)
    if not certified:
        radius = 4.0 * (float(start.sum()) + 1.0)
    radius = max(radius, 1e-12)

    def arrays() -> tuple[np.ndarray, np.ndarray]:
        return (np.array([J for _, _, J, _ in cuts]), np.array([s for _, _, _, s in cuts]))

    def estimates(a: np.ndarray, S: np.ndarray) -> np.ndarray:
        # D_p(lam_k) >= max_j cut_j(lam_k): the best lower estimate at each evaluated lam
        lams = np.array([lam for lam, _, _, _ in cuts])  # size = (K, m)
        est = (a[None, :] + lams @ S.T).max(axis=1)
        return np.where(lams.sum(axis=1) <= radius * (1 + 1e-12), est, np.inf)

    it, converged, lower, verifications = 0, False, -math.inf, 0
    while it < max_iter:
        a, S = arrays()
        lower, lam_lp = _model_min(a, S, radius)
        vals = estimates(a, S)
        kbest = int(np.argmin(vals))
        upper = float(vals[kbest])
        if upper - lower <= tol * (1.0 + abs(upper)):
            # verify the candidate with more starts; a better theta there adds a cut
            lam_b = cuts[kbest][0]
            before = upper
            verified = lagrangian_max(problem, policy_class, lam_b, theta0=best_warm(lam_b),
                                      starts=2 * n_starts + 1, seed=seed + 7919 * (it + 1),
                                      method=method)
            cuts.append((lam_b.copy(), verified.value, verified.objective, verified.slack.copy()))
            thetas.append(verified.theta)
            if verified.value <= before + tol * (1.0 + abs(before)) or verifications >= 3:
                converged = True
                break
            verifications += 1
            continue
        it += 1
        target = lower + level * (upper - lower)
        lam_next = _level_projection(a, S, radius, cuts[kbest][0], target, lam_lp,
                                     0.5 * (upper - target))
        if any(np.array_equal(lam_next, lam) for lam, _, _, _ in cuts):
            break  # the LP cannot locate its minimizer more finely: no progress possible
        evaluate(lam_next, best_warm(lam_next))
    a, S = arrays()
    vals = estimates(a, S)
    kbest = int(np.argmin(vals))
    if polish_steps > 0:
        # Newton polish of lam on the active set (sharpens lam*_p where D_p is smooth);
        # every theta it visits is a valid cut, kept
        lam_b = cuts[kbest][0]
        k_th = int(np.argmax(a + S @ lam_b))
        lam_n, th_n, s_n, _, _, visited = _newton_polish(
            problem, policy_class, lam_b, thetas[k_th], S[k_th], polish_steps, method)
        if visited:
            # cuts of the visited thetas, recorded at points already searched (lam_b), and
            # the polished point itself (searched from the current theta)
            for th_v in visited:
                J_v, s_v = _cut(problem, policy_class, th_v)
                lam_c = lam_n if th_v is th_n else lam_b
                cuts.append((lam_c.copy(), J_v + float(lam_c @ s_v), J_v, s_v))
                thetas.append(th_v)
            a, S = arrays()
            lower = max(lower, _model_min(a, S, radius)[0])
            vals = estimates(a, S)
            kbest = int(np.argmin(vals))
    lam_best = cuts[kbest][0]
    # the theta of the highest cut at lam_best (the best certificate of D_p(lam_best))
    theta = thetas[int(np.argmax(a + S @ lam_best))]
    return ParametrizedDual(
        lam=lam_best.copy(), value=float(vals[kbest]), lower_bound=float(lower),
        radius=float(radius), box_certified=certified, theta=theta,
        policy=policy_class.policy(theta), slack=S[int(np.argmax(a + S @ lam_best))].copy(),
        iterations=it,
        converged=converged, seconds=time.perf_counter() - t0, cuts=cuts, thetas=thetas)


def _active(lam: np.ndarray, slack: np.ndarray) -> np.ndarray:
    """Active set: ``lam_i > 1e-12 (1 + max lam)`` or ``s_i < 0``."""
    return (lam > 1e-12 * (1.0 + float(lam.max(initial=0.0)))) | (slack < 0)


def _newton_polish(problem: AlignmentProblem, policy_class: PolicyClass, lam: np.ndarray,
                   theta: torch.Tensor, slack: np.ndarray, steps: int, method: str):
    """Newton on ``s_A(theta(lam)) = 0`` over the active set ``A`` (:func:`_active`).

    ``lam_A <- [lam_A - J^{-1} s_A]_+`` with ``J = d s_A / d lam_A`` by forward differences
    (step ``1e-6 (1 + lam_i)``), each ``theta(lam)`` a :func:`lagrangian_max` warm-started at
    the current theta; a step is kept only if it shrinks ``max |s_A|``.  Returns
    ``(lam, theta, slack, last Jacobian or None, evaluations, thetas visited)``.
    """
    evals, visited, jac_last = 0, [], None
    lam, slack = lam.copy(), slack.copy()
    act = _active(lam, slack)
    for _ in range(steps if act.any() else 0):
        if float(np.abs(slack[act]).max()) <= 1e-13 * max(1.0, problem.score_bound):
            break
        idx = np.nonzero(act)[0]
        jac = np.zeros((idx.size, idx.size))
        for j, i in enumerate(idx):
            step = 1e-6 * (1.0 + lam[i])
            lam_h = lam.copy()
            lam_h[i] += step
            res_h = lagrangian_max(problem, policy_class, lam_h, theta0=theta, starts=1,
                                   method=method)
            evals += 1
            visited.append(res_h.theta)
            jac[:, j] = (res_h.slack[idx] - slack[idx]) / step
        try:
            delta = np.linalg.solve(jac, -slack[idx])
        except np.linalg.LinAlgError:
            break
        if not np.isfinite(delta).all():
            break
        jac_last = jac
        lam_try = lam.copy()
        lam_try[idx] = np.maximum(lam[idx] + delta, 0.0)
        res_t = lagrangian_max(problem, policy_class, lam_try, theta0=theta, starts=1,
                               method=method)
        evals += 1
        visited.append(res_t.theta)
        if np.abs(res_t.slack[idx]).max() >= np.abs(slack[idx]).max():
            break
        lam, slack, theta = lam_try, res_t.slack.copy(), res_t.theta
    return lam, theta, slack, jac_last, evals, visited


def refine_dual(problem: AlignmentProblem, policy_class: PolicyClass, dual: ParametrizedDual,
                thetas: list[torch.Tensor]) -> ParametrizedDual:
    """``dual`` with more cuts: every theta in ``thetas`` (e.g. fit witnesses) is an actual
    parameter, so ``lam -> J(theta) + lam^T s(theta)`` is another valid lower bound on ``D_p``.

    The estimates at the evaluated multipliers (``max_j cut_j(lam_k)``), the point estimate,
    ``lam*_p`` and the certified lower bound are recomputed (each can only improve: estimates
    rise, the lower bound rises).  No new search is run.
    """
    if not thetas:
        return dual
    cuts = list(dual.cuts)
    all_thetas = list(dual.thetas)
    lam0 = dual.lam
    for th in thetas:
        J, s = _cut(problem, policy_class, policy_class.check_params(th).detach())
        cuts.append((lam0.copy(), J + float(lam0 @ s), J, s))
        all_thetas.append(policy_class.check_params(th).detach().clone())
    a = np.array([J for _, _, J, _ in cuts])
    S = np.array([s for _, _, _, s in cuts]).reshape(len(cuts), -1)
    lams = np.array([lam for lam, _, _, _ in cuts]).reshape(len(cuts), -1)
    est = (a[None, :] + lams @ S.T).max(axis=1)
    est = np.where(lams.sum(axis=1) <= dual.radius * (1 + 1e-12), est, np.inf)
    k = int(np.argmin(est))
    lower = max(dual.lower_bound, _model_min(a, S, dual.radius)[0]) if S.shape[1] else \
        dual.lower_bound
    k_th = int(np.argmax(a + S @ lams[k]))
    return ParametrizedDual(
        lam=lams[k].copy(), value=float(est[k]), lower_bound=float(lower), radius=dual.radius,
        box_certified=dual.box_certified, theta=all_thetas[k_th],
        policy=policy_class.policy(all_thetas[k_th]), slack=S[k_th].copy(),
        iterations=dual.iterations, converged=dual.converged, seconds=dual.seconds, cuts=cuts,
        thetas=all_thetas)


# ---------------------------------------------------------------- the parametrized primal
@dataclass
class ParametrizedPrimal:
    """A feasible ``theta`` for ``max_theta J(pi_theta) s.t. E_rho E_{pi_theta} h >= 0``.

    Attributes:
        value: ``J(pi_theta)``, a *lower estimate* of ``P*_p`` (``-inf`` if none was found).
        theta, policy, slack: the feasible point (``slack >= 0`` exactly, as computed).
        found: whether any feasible theta was found.
        margin: the largest ``min_i s_i(theta)`` among the thetas seen (the Slater margin found,
            for the feasibility assumption of Theorem 1).
        evaluations: Lagrangian maximizations and penalty runs spent.
    """

    value: float
    theta: torch.Tensor | None = field(repr=False)
    policy: np.ndarray | None = field(repr=False)
    slack: np.ndarray | None
    found: bool
    margin: float
    evaluations: int
    seconds: float


@_small_threads
def parametrized_primal(problem: AlignmentProblem, policy_class: PolicyClass,
                        dual: ParametrizedDual | None = None, *, bisections: int = 20,
                        newton_steps: int = 6, penalty_rounds: int = 5, starts: int = 1,
                        seed: int = 0, method: str = "auto") -> ParametrizedPrimal:
    """``P*_p`` from below: the best feasible theta found.

    Candidates, each kept only if ``min_i E_rho E_{pi_theta} h_i >= 0`` as computed:

    1. every theta of the parametrized dual's cuts (``dual``, computed if not given);
    2. a Newton polish of ``lam*_p`` on the active set ``A`` (``lam_i > 0`` or ``s_i < 0``):
       ``lam_A <- [lam_A - J^{-1} s_A]_+`` with ``J = d s_A(theta(lam)) / d lam_A`` by forward
       differences (``newton_steps`` at most, kept while ``max |s_A|`` shrinks);
    3. Lagrangian maximizers along ``lam(t) = [lam*_p + t w]_+`` with ``w = J^{-1} 1`` on the
       active set (the direction that raises every active slack at unit rate; ``w`` = 1 on it
       when no Jacobian is available): ``t`` grown 4x until feasible, then bisected towards
       the smallest feasible ``t`` (``bisections`` steps);
    4. an augmented-Lagrangian polish from the best candidate (Powell-Hestenes-Rockafellar:
       ``max_theta J + sum_i -(1/(2c)) ([mu_i - c s_i]_+^2 - mu_i^2)``,
       ``mu <- [mu - c s]_+``, ``c <- 4c``; ``penalty_rounds`` rounds of L-BFGS).
    """
    _check_compatible(problem, policy_class)
    t0 = time.perf_counter()
    if dual is None:
        dual = parametrized_dual(problem, policy_class, starts=starts, seed=seed, method=method)
    m = problem.num_constraints
    best: list = [-math.inf, None, None]
    margin = -math.inf
    evals = 0

    def consider(theta: torch.Tensor) -> np.ndarray:
        nonlocal margin
        with torch.no_grad():
            J, s = policy_terms(problem, policy_class, theta)
        s_np = s.numpy().copy()
        smin = float(s_np.min()) if m else math.inf
        margin = max(margin, smin)
        if smin >= 0.0 and float(J) > best[0]:
            best[:] = [float(J), theta.detach().clone(), s_np]
        return s_np

    for th in dual.thetas:
        consider(th)
    if m:
        lam_p = dual.lam.copy()
        s_p = consider(dual.theta)
        warm = dual.theta
        lam_p, warm, s_p, jac_last, n_ev, visited = _newton_polish(
            problem, policy_class, lam_p, warm, s_p, int(newton_steps), method)
        evals += n_ev
        for th in visited:
            consider(th)
        act = _active(lam_p, s_p)
        w = act.astype(float)
        if jac_last is not None and jac_last.shape[0] == int(act.sum()):
            # the direction that raises every active slack at unit rate (to first order)
            try:
                u = np.linalg.solve(jac_last, np.ones(int(act.sum())))
                if np.isfinite(u).all() and u.max() > 0:
                    w = np.zeros(m)
                    w[act] = u / np.abs(u).max()
            except np.linalg.LinAlgError:
                pass
        if not w.any():
            w[:] = 1.0
        scale = 1.0 + float(lam_p.sum())

        warm_p = warm

        def at(t: float) -> tuple[np.ndarray, torch.Tensor]:
            nonlocal evals
            evals += 1
            res = lagrangian_max(problem, policy_class, np.maximum(lam_p + t * w, 0.0),
                                 theta0=warm_p,
                                 starts=starts, seed=seed, method=method)
            return consider(res.theta), res.theta

        if s_p.min() < 0:
            lo, hi, t = 0.0, None, 1e-6 * scale
            while t < 1e3 * scale:
                s, th = at(t)
                if s.min() >= 0:
                    hi = t
                    break
                lo, t = t, 4.0 * t
            if hi is not None:
                for _ in range(bisections):
                    mid = 0.5 * (lo + hi)
                    s, th = at(mid)
                    if s.min() >= 0:
                        hi = mid
                    else:
                        lo = mid
        # augmented-Lagrangian polish from the best point so far (or the dual's theta)
        theta = (best[1] if best[1] is not None else dual.theta).clone().requires_grad_(True)
        mu = torch.as_tensor(np.maximum(lam_p, 0.0), dtype=DTYPE)
        c = 10.0 / max(problem.score_bound, 1e-12)
        for _ in range(int(penalty_rounds)):
            mu_now = mu.clone()

            def neg_alm(th: torch.Tensor, mu_k: torch.Tensor = mu_now,
                        c_k: float = c) -> torch.Tensor:
                J, s = policy_terms(problem, policy_class, th)
                pen = (torch.clamp(mu_k - c_k * s, min=0.0) ** 2 - mu_k ** 2).sum() / (2 * c_k)
                return -(J - pen)

            _lbfgs(theta, neg_alm, 150)
            evals += 1
            s = torch.as_tensor(consider(theta.detach()), dtype=DTYPE)
            mu = torch.clamp(mu - c * s, min=0.0)
            c *= 4.0
    else:
        consider(dual.theta)
    found = best[1] is not None
    return ParametrizedPrimal(
        value=best[0], theta=best[1], policy=policy_class.policy(best[1]) if found else None,
        slack=best[2], found=found, margin=margin, evaluations=evals,
        seconds=time.perf_counter() - t0)


# ------------------------------------------------------------------ parametrization gap
@dataclass
class ParametrizationGap:
    """``nu`` of docs/theory.md over a finite set of targets (:func:`parametrization_gap`).

    Attributes:
        nu_1: ``max_targets max_x ||pi_theta - pi||_1``.
        nu_kl: ``max_targets max_x |KL(pi_theta || pi_ref) - KL(pi || pi_ref)|``.
        nu: ``max(nu_1, nu_kl)``.
        fits: one :class:`~dualgap.policies.FitResult` per target (its theta certifies it).
        labels: the targets' names; ``worst``: the label attaining ``nu``.
        per_target: ``nu`` of each target.

    Sides: each target's ``nu`` is an *upper* estimate of ``min_theta`` (any theta is a valid
    witness); the maximum over a finite set of targets is a *lower* estimate of the ``nu`` of
    all targets the theory quantifies over.
    """

    nu_1: float
    nu_kl: float
    nu: float
    fits: list[FitResult] = field(repr=False)
    labels: list[str]
    worst: str
    per_target: np.ndarray


@_small_threads
def parametrization_gap(problem: AlignmentProblem, policy_class: PolicyClass,
                        targets: object, *, objective: str = "nu", steps: int = 300,
                        starts: int = 1, seed: int = 0) -> ParametrizationGap:
    """``nu_1``, ``nu_KL`` and ``nu`` of the class for ``targets``.

    ``targets``: a mapping ``label -> (X, Y) policy``, a sequence of policies, or a sequence
    of multipliers ``(m,)`` (then each target is ``pi_lam``, labelled by ``lam``).  Each target
    is fitted with :meth:`PolicyClass.fit` (arguments passed through).
    """
    _check_compatible(problem, policy_class)
    X, Y = problem.reward.shape
    m = problem.num_constraints
    if isinstance(targets, dict):
        labels, pols = [str(k) for k in targets], [np.asarray(v, float) for v in targets.values()]
    else:
        items = list(targets)  # type: ignore[call-overload]
        if not items:
            raise ValueError("targets: need at least one target")
        labels, pols = [], []
        for k, v in enumerate(items):
            arr = np.asarray(v, dtype=np.float64)
            if arr.shape == (X, Y):
                labels.append(f"target {k}")
                pols.append(arr)
            elif arr.shape == (m,) or (m == 0 and arr.size == 0):
                labels.append("pi_lam, lam = " + np.array2string(arr, precision=4))
                pols.append(lagrangian_policy(problem, arr))
            else:
                raise ValueError(f"targets: item {k} has shape {arr.shape}; expected a policy "
                                 f"{(X, Y)} or a multiplier ({m},)")
    if not pols:
        raise ValueError("targets: need at least one target")
    fits = [policy_class.fit(pi, objective=objective, steps=steps, starts=starts, seed=seed)
            for pi in pols]
    per = np.array([f.nu for f in fits])
    k = int(np.argmax(per))
    return ParametrizationGap(
        nu_1=max(f.nu_1 for f in fits), nu_kl=max(f.nu_kl for f in fits), nu=float(per[k]),
        fits=fits, labels=labels, worst=labels[k], per_target=per)

"""The parametrized dual ``D*_p = min_{lam >= 0} D_p(lam)`` by a level bundle method.

The cuts ``lam -> J(theta_k) + lam^T s_k`` (``s_k = E_rho E_{pi_theta_k} h``) of the thetas
found are exact lower bounds on ``D_p`` everywhere, so the minimum of the model over a box that
contains ``lam*_p`` (certified from a strictly feasible theta) is a *certified lower bound* on
``D*_p``; the best value found, ``min_k max_j cut_j(lam_k)``, is the point estimate (it errs low
through the inner search and high through the outer one).  :func:`refine_dual` adds the cuts of
more thetas (e.g. fit witnesses).  Imports torch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..policies import PolicyClass
from ..problem import AlignmentProblem
from .lagrangian import (
    LagrangianMax,
    check_compatible,
    check_lam,
    cut,
    lagrangian_max,
    lagrangian_max_batch,
    with_small_threads,
)

__all__ = ["ParametrizedDual", "parametrized_dual", "refine_dual", "model_min",
           "feasible_radius", "newton_polish", "active_set"]


@dataclass
class ParametrizedDual:
    """``D*_p = min_{lam >= 0} D_p(lam)`` by a level bundle method (see :func:`parametrized_dual`).

    Attributes:
        lam: ``lam*_p`` estimate (the evaluated multiplier with the smallest ``D_p`` estimate).
        value: point estimate of ``D*_p``: ``min_k max_j L(theta_j, lam_k)`` (the estimate of
            ``D_p(lam_k)`` is the best of all thetas found at ``lam_k``); errs low through the
            inner local search and high through the outer stopping tolerance.
        lower_bound: ``min_{lam in box} max_k [J(theta_k) + lam^T s_k]`` (from the LP's dual
            weights, see :func:`model_min`), a *certified* lower bound on ``D*_p`` when
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


def model_min(a: np.ndarray, S: np.ndarray, radius: float) -> tuple[float, np.ndarray]:
    """``min_{lam >= 0, sum lam <= radius} max_k a_k + S_k^T lam``: ``(lower bound, argmin)``.

    The LP (HiGHS) gives the minimizer; the returned value is recomputed from its dual weights
    ``w`` (projected onto the simplex) as ``w^T a + radius min(0, min_i (S^T w)_i)``, which is a
    lower bound on the model minimum for *any* ``w`` in the simplex (the model is at least the
    ``w``-mixture of its cuts), so it does not depend on the LP solver's tolerances; where the
    LP's weights lose by a slightly negative slope, a mixture with one more cut
    (:func:`_mixed_weights`) tightens it.
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
    lam = np.maximum(res.x[:m], 0.0)
    lower = _weights_bound(_mixed_weights(w, a, S, radius), a, S, radius)
    return min(lower, float(res.x[-1]) + shift), lam


def _weights_bound(w: np.ndarray, a: np.ndarray, S: np.ndarray, radius: float) -> float:
    """``min_{lam >= 0, sum lam <= radius} sum_k w_k (a_k + S_k^T lam)`` for ``w`` in the
    simplex: a lower bound on the model minimum."""
    return float(w @ a) + radius * min(0.0, float((S.T @ w).min(initial=0.0)))


def _mixed_weights(w: np.ndarray, a: np.ndarray, S: np.ndarray, radius: float) -> np.ndarray:
    """The best of ``w`` and its mixtures ``(1 - e) w + e e_j`` with one other cut ``j``, ``e``
    the smallest share that lifts every negative ``(S^T w)_i`` that cut ``j`` can lift to 0.

    The LP's weights can sit on a nearly flat cut with a slightly negative slope, whose bound
    loses ``radius`` times that slope; a tiny share of a cut sloping the other way recovers it.
    Every candidate is in the simplex, so each gives a valid bound and the best one is kept.
    """
    g = S.T @ w  # size = (m,)
    neg = g < 0.0
    if not neg.any():
        return w
    lift = S[:, neg] - g[neg]  # size = (K, n_neg): > 0 where cut k lifts coordinate i
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(S[:, neg] > 0.0, -g[neg] / lift, np.inf)
    e = np.minimum(share.max(axis=1), 1.0)  # size = (K,)
    cand = (1.0 - e)[:, None] * w[None] + e[:, None] * np.eye(a.size)  # size = (K, K)
    bounds = cand @ a + radius * np.minimum(0.0, (cand @ S).min(axis=1))
    k = int(np.argmax(bounds))
    return cand[k] if bounds[k] > _weights_bound(w, a, S, radius) else w


def level_projection(a: np.ndarray, S: np.ndarray, radius: float, center: np.ndarray,
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


def feasible_radius(problem: AlignmentProblem, d_star: float,
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


@with_small_threads
def parametrized_dual(problem: AlignmentProblem, policy_class: PolicyClass, *,
                      tol: float = 1e-9, max_iter: int = 80, starts: int | None = None,
                      seed: int = 0,
                      method: str = "auto", level: float = 0.3,
                      lam0: object = None, polish_steps: int = 6,
                      init_scales: tuple[float, ...] = (0.0, 1.0),
                      verify: int = 3) -> ParametrizedDual:
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
    Starts from ``s lam0`` for ``s`` in ``init_scales`` (default ``0`` and ``lam0``; ``lam0``
    defaults to the exact ``lam*``), then, while no strictly feasible theta is known, a few
    points above ``lam0``.  When the bundle gap closes, the candidate is re-evaluated with
    ``2 starts + 1`` starts; a better theta there becomes a cut and the method goes on (at most
    ``verify`` times; ``verify = 0`` accepts the closed gap without re-evaluating).  ``starts``
    defaults to 1 for classes with natural steps and 2 otherwise (MLPs have local maxima).
    Finally ``lam`` is sharpened by Newton steps on the active set (``polish_steps``,
    :func:`newton_polish`: ``s_A(theta(lam)) = 0``); the new thetas become cuts and the
    estimate ``min_k max_j cut_j(lam_k)`` decides which ``lam`` is reported.
    """
    from ..solver import solve

    check_compatible(problem, policy_class)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: must be in (0, 1), got {level!r}")
    if not tol > 0:
        raise ValueError(f"tol: must be > 0, got {tol!r}")
    if not init_scales or any(not (math.isfinite(v) and v >= 0) for v in init_scales):
        raise ValueError(f"init_scales: need finite scales >= 0, got {init_scales!r}")
    if int(verify) != verify or verify < 0:
        raise ValueError(f"verify: must be an integer >= 0, got {verify!r}")
    if int(max_iter) != max_iter or max_iter < 0:
        raise ValueError(f"max_iter: must be an integer >= 0, got {max_iter!r}")
    t0 = time.perf_counter()
    n_starts = (1 if policy_class.prefers_natural else 2) if starts is None else int(starts)
    if n_starts < 1:
        raise ValueError(f"starts: must be >= 1, got {starts!r}")
    m = problem.num_constraints
    exact = solve(problem)
    start = exact.lam if lam0 is None else check_lam(problem, lam0).numpy()
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
    init = [float(v) * start for v in init_scales]
    for lam in init:
        evaluate(lam, best_warm(lam))
    # a strictly feasible theta for the certified box: push lam up until min slack > 0
    radius = feasible_radius(problem, exact.dual_value, [(J, s) for _, _, J, s in cuts])
    k = 0
    while not math.isfinite(radius) and k < 6:
        lam = start + (2.0 ** k) * (1.0 + start.sum()) * np.ones(m)
        evaluate(lam, best_warm(lam))
        radius = feasible_radius(problem, exact.dual_value, [(J, s) for _, _, J, s in cuts])
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
        lower, lam_lp = model_min(a, S, radius)
        vals = estimates(a, S)
        kbest = int(np.argmin(vals))
        upper = float(vals[kbest])
        if upper - lower <= tol * (1.0 + abs(upper)) and not verify:
            converged = True
            break
        if upper - lower <= tol * (1.0 + abs(upper)):
            # verify the candidate with more starts; a better theta there adds a cut
            lam_b = cuts[kbest][0]
            before = upper
            verified = lagrangian_max(problem, policy_class, lam_b, theta0=best_warm(lam_b),
                                      starts=2 * n_starts + 1, seed=seed + 7919 * (it + 1),
                                      method=method)
            cuts.append((lam_b.copy(), verified.value, verified.objective, verified.slack.copy()))
            thetas.append(verified.theta)
            if verified.value <= before + tol * (1.0 + abs(before)) or verifications >= verify:
                converged = True
                break
            verifications += 1
            continue
        it += 1
        target = lower + level * (upper - lower)
        lam_next = level_projection(a, S, radius, cuts[kbest][0], target, lam_lp,
                                     0.5 * (upper - target))
        if any(np.array_equal(lam_next, lam) for lam, _, _, _ in cuts):
            break  # the LP cannot locate its minimizer more finely: no progress possible
        evaluate(lam_next, best_warm(lam_next))
    a, S = arrays()
    if converged:  # the verification's cut is in the model too (a higher, still valid bound)
        lower = max(lower, model_min(a, S, radius)[0])
    vals = estimates(a, S)
    kbest = int(np.argmin(vals))
    if polish_steps > 0:
        # Newton polish of lam on the active set (sharpens lam*_p where D_p is smooth);
        # every theta it visits is a valid cut, kept
        lam_b = cuts[kbest][0]
        k_th = int(np.argmax(a + S @ lam_b))
        lam_n, th_n, s_n, _, _, visited = newton_polish(
            problem, policy_class, lam_b, thetas[k_th], S[k_th], polish_steps, method)
        if visited:
            # cuts of the visited thetas, recorded at points already searched (lam_b), and
            # the polished point itself (searched from the current theta)
            for th_v in visited:
                J_v, s_v = cut(problem, policy_class, th_v)
                lam_c = lam_n if th_v is th_n else lam_b
                cuts.append((lam_c.copy(), J_v + float(lam_c @ s_v), J_v, s_v))
                thetas.append(th_v)
            a, S = arrays()
            lower = max(lower, model_min(a, S, radius)[0])
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


def active_set(lam: np.ndarray, slack: np.ndarray) -> np.ndarray:
    """Active set: ``lam_i > 1e-12 (1 + max lam)`` or ``s_i < 0``."""
    return (lam > 1e-12 * (1.0 + float(lam.max(initial=0.0)))) | (slack < 0)


def slack_jacobian(problem: AlignmentProblem, policy_class: PolicyClass, lam: np.ndarray,
                   theta: torch.Tensor, slack: np.ndarray, idx: np.ndarray, method: str
                   ) -> tuple[np.ndarray, list[torch.Tensor]]:
    """``J = d s_idx(theta(lam)) / d lam_idx`` by forward differences (step ``1e-6 (1 +
    lam_i)``; ``slack`` = ``s(theta(lam))``), the ``idx.size`` searches warm-started at
    ``theta`` as one :func:`lagrangian_max_batch`; returns ``(J, the thetas found)``."""
    jac = np.zeros((idx.size, idx.size))
    steps = 1e-6 * (1.0 + lam[idx])
    lams_h = [lam + step * np.eye(lam.size)[i] for i, step in zip(idx, steps, strict=True)]
    thetas = []
    for j, res_h in enumerate(lagrangian_max_batch(problem, policy_class, lams_h,
                                                   [theta] * idx.size, method=method)):
        thetas.append(res_h.theta)
        jac[:, j] = (res_h.slack[idx] - slack[idx]) / steps[j]
    return jac, thetas


def newton_polish(problem: AlignmentProblem, policy_class: PolicyClass, lam: np.ndarray,
                   theta: torch.Tensor, slack: np.ndarray, steps: int, method: str):
    """Newton on ``s_A(theta(lam)) = 0`` over the active set ``A`` (:func:`active_set`).

    ``lam_A <- [lam_A - J^{-1} s_A]_+`` with ``J`` of :func:`slack_jacobian`, each
    ``theta(lam)`` a :func:`lagrangian_max` warm-started at the current theta; a step is
    kept only if it shrinks ``max |s_A|``.  Returns ``(lam, theta, slack, last Jacobian or
    None, evaluations, thetas visited)``.
    """
    evals, visited, jac_last = 0, [], None
    lam, slack = lam.copy(), slack.copy()
    act = active_set(lam, slack)
    for _ in range(steps if act.any() else 0):
        if float(np.abs(slack[act]).max()) <= 1e-13 * max(1.0, problem.score_bound):
            break
        idx = np.nonzero(act)[0]
        jac, thetas = slack_jacobian(problem, policy_class, lam, theta, slack, idx, method)
        evals += len(thetas)
        visited += thetas
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
        J, s = cut(problem, policy_class, policy_class.check_params(th).detach())
        cuts.append((lam0.copy(), J + float(lam0 @ s), J, s))
        all_thetas.append(policy_class.check_params(th).detach().clone())
    a = np.array([J for _, _, J, _ in cuts])
    S = np.array([s for _, _, _, s in cuts]).reshape(len(cuts), -1)
    lams = np.array([lam for lam, _, _, _ in cuts]).reshape(len(cuts), -1)
    est = (a[None, :] + lams @ S.T).max(axis=1)
    est = np.where(lams.sum(axis=1) <= dual.radius * (1 + 1e-12), est, np.inf)
    k = int(np.argmin(est))
    lower = max(dual.lower_bound, model_min(a, S, dual.radius)[0]) if S.shape[1] else \
        dual.lower_bound
    k_th = int(np.argmax(a + S @ lams[k]))
    return ParametrizedDual(
        lam=lams[k].copy(), value=float(est[k]), lower_bound=float(lower), radius=dual.radius,
        box_certified=dual.box_certified, theta=all_thetas[k_th],
        policy=policy_class.policy(all_thetas[k_th]), slack=S[k_th].copy(),
        iterations=dual.iterations, converged=dual.converged, seconds=dual.seconds, cuts=cuts,
        thetas=all_thetas)

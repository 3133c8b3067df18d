"""The optimizers of the policy classes' default hooks (torch, float64).

* :func:`lbfgs`: L-BFGS in place on a flat parameter vector (the optimizer step of
  :meth:`~.base.PolicyClass.minimize`, hence of every default ``fit`` stage);
* :func:`natural_ascent`: damped natural-gradient (Fisher scoring) ascent on
  ``L(pi_theta, lam) = D(lam) - beta E_rho KL(pi_theta || pi_lam)`` (the first half of the
  default :meth:`~.base.PolicyClass.maximize_lagrangian`);
* :func:`lbfgs_batch`: :func:`lbfgs` on many problems at once, evaluations batched (the
  L-BFGS of every default Lagrangian search, :mod:`.batch`).

Public API of the package (used by :mod:`.base` and :mod:`dualgap.gaps`).  Imports torch.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..problem import AlignmentProblem
from .terms import lagrangian_terms, problem_tensors

__all__ = ["ascent_loop", "lbfgs", "lbfgs_batch", "lbfgs_numpy", "natural_ascent"]


def _direction(S: list, Yh: list, g: np.ndarray) -> tuple[np.ndarray, float]:
    """The L-BFGS direction ``d = -H g`` by the two-loop recursion over the pairs ``(S, Yh)``
    (oldest first) and its slope ``g^T d``; when ``d`` is not a descent direction the pairs
    are cleared (in place) and ``d`` is the scaled steepest descent."""
    q = g.copy()
    alphas = []
    for s_k, y_k in zip(reversed(S), reversed(Yh), strict=True):
        a = float(s_k @ q) / float(s_k @ y_k)
        alphas.append(a)
        q -= a * y_k
    if S:
        q *= float(S[-1] @ Yh[-1]) / float(Yh[-1] @ Yh[-1])
    else:
        q *= min(1.0, 1.0 / max(float(np.abs(g).sum()), 1e-300))
    for (s_k, y_k), a in zip(zip(S, Yh, strict=True), reversed(alphas), strict=True):
        b = float(y_k @ q) / float(s_k @ y_k)
        q += (a - b) * s_k
    d = -q
    slope = float(g @ d)
    if slope >= 0:  # not a descent direction: restart from the gradient
        S.clear()
        Yh.clear()
        d = -g * min(1.0, 1.0 / max(float(np.abs(g).sum()), 1e-300))
        slope = float(g @ d)
    return d, slope


def lbfgs(params: torch.Tensor, loss_fn, max_iter: int, gtol: float = 1e-10,
           ftol: float = 1e-15, history_size: int = 20, stall_window: int = 20,
           stall_tol: float = 1e-12) -> int:
    """Minimize ``loss_fn(params)`` by L-BFGS, in place; returns the iterations taken.

    The two-loop recursion (Nocedal and Wright, Alg. 7.4; ``H_0 = s^T y / y^T y``) with a
    backtracking line search that accepts the first step meeting Armijo
    (``f(x + t d) <= f(x) + 1e-4 t g^T d``); a pair is stored only when ``s^T y > 0``.
    Non-finite losses count as a failed trial step.  Stops when ``||g||_inf <= gtol``, when
    ``f_k - f_{k+1} <= ftol max(1, |f|)``, when ``f`` fell by at most ``stall_tol max(1, |f|)``
    over the last ``stall_window`` iterations, when no step decreases ``f``, or at ``max_iter``.
    Gradients come from torch autograd; the bookkeeping is numpy (far less per-iteration
    overhead than ``torch.optim.LBFGS`` on these small problems, and no BLAS threading).
    The algorithm itself is :func:`lbfgs_numpy` (which takes a numpy ``(f, g)`` function).
    """

    def fun(z: np.ndarray) -> tuple[float, np.ndarray | None]:
        th = torch.from_numpy(z).requires_grad_(True)
        loss = loss_fn(th)
        if not torch.isfinite(loss):
            return math.inf, None
        (grad,) = torch.autograd.grad(loss, th)
        return float(loss.detach()), grad.numpy().astype(np.float64, copy=True)

    x0 = params.detach().numpy().astype(np.float64, copy=True)
    x, it = lbfgs_numpy(x0, fun, max_iter, gtol, ftol, history_size, stall_window, stall_tol)
    with torch.no_grad():
        params.copy_(torch.from_numpy(x))
    return it


def lbfgs_numpy(x0: np.ndarray, fun, max_iter: int, gtol: float = 1e-10, ftol: float = 1e-15,
                history_size: int = 20, stall_window: int = 20,
                stall_tol: float = 1e-12) -> tuple[np.ndarray, int]:
    """:func:`lbfgs` on a numpy objective: ``fun(x) -> (f, g)`` (``(inf, None)`` where not
    finite), from ``x0`` (not modified); returns ``(x, iterations)``.  The same algorithm and
    stopping rules (:func:`lbfgs` is this with autograd gradients)."""
    x = np.array(x0, dtype=np.float64, copy=True)
    f, g = fun(x)
    if g is None:
        raise ValueError("theta: the objective is not finite at the starting point")
    S: list[np.ndarray] = []
    Yh: list[np.ndarray] = []
    trail: list[float] = [f]
    it = 0
    while it < max_iter and float(np.abs(g).max(initial=0.0)) > gtol:
        d, slope = _direction(S, Yh, g)
        t, accepted = 1.0, False
        for _ in range(50):
            x_new = x + t * d
            f_new, g_new = fun(x_new)
            if g_new is not None and f_new <= f + 1e-4 * t * slope:
                accepted = True
                break
            t *= 0.5 if g_new is None else min(0.5, max(0.1, -0.5 * slope * t / max(
                f_new - f - slope * t, 1e-300)))
        if not accepted:
            break
        it += 1
        s_k, y_k = x_new - x, g_new - g
        if float(s_k @ y_k) > 1e-12 * float(np.sqrt((s_k @ s_k) * (y_k @ y_k))):
            S.append(s_k)
            Yh.append(y_k)
            if len(S) > history_size:
                S.pop(0)
                Yh.pop(0)
        decrease = f - f_new
        x, f, g = x_new, f_new, g_new
        trail.append(f)
        if decrease <= ftol * max(1.0, abs(f)):
            break
        if (len(trail) > stall_window
                and trail[-stall_window - 1] - f <= stall_tol * max(1.0, abs(f))):
            break  # stalled: less than stall_tol gained over the last stall_window iterations
    return x, it


def natural_ascent(problem: AlignmentProblem, policy_class: object, lam_t: torch.Tensor,
                   theta: torch.Tensor, max_iter: int,
                   newton: bool = False) -> tuple[torch.Tensor, int, bool]:
    """Damped natural-gradient (Fisher scoring) ascent on ``L(pi_theta, lam)``.

    ``L(pi_theta, lam) = D(lam) - beta E_rho KL(pi_theta || pi_lam)``, so each step fits the
    score change to ``delta = (r + lam^T h) / beta - f_theta`` in the ``rho pi_theta``-weighted,
    per-prompt-centered least-squares sense (:meth:`~.base.PolicyClass.score_step`; for the
    tabular class the step is exact; with ``newton``, :meth:`~.base.PolicyClass.ascent_step`,
    which is the Newton step for the log-linear class: the same maximizer in fewer steps, so
    only searches run to convergence take it, never an algorithm's finite policy step),
    followed by a backtracking line search on ``L`` (a full
    step is also accepted when it loses no more than float rounding, ``1e-15 |L|``: near the optimum
    the gain is quadratic in the step and below rounding while the policy still moves).  The
    Levenberg-Marquardt damping grows when a step is rejected and shrinks after a full step.
    With ``newton`` a class with a ``newton_ascent(problem, lam, theta, max_iter)`` method (the
    log-linear class: the same iteration in numpy) runs that instead.
    Stops (``converged``) when ``||d||_inf <= 1e-12 (1 + ||theta||_inf)``, the direction
    vanishing at a stationary point; unconverged when no step is accepted even with heavy
    damping, or after ``max_iter`` steps.
    """
    fast = getattr(policy_class, "newton_ascent", None) if newton else None
    if fast is not None:  # the class's own numpy Newton iteration (log-linear)
        th, it, ok = fast(problem, lam_t.detach().numpy(), theta.detach().numpy(), max_iter)
        return torch.from_numpy(th), it, ok
    t = problem_tensors(problem)
    sup = t["support"]
    s_over_beta = (t["r"] + torch.einsum("i,ixy->xy", lam_t, t["h"])) / problem.beta

    step_fn = policy_class.ascent_step if newton else policy_class.score_step

    def evaluate(th: torch.Tensor):
        J, sl = lagrangian_terms(problem, policy_class, th)
        return float(J + lam_t @ sl), None

    def direction(th: torch.Tensor, _state, damping: float) -> torch.Tensor:
        f = policy_class.scores(th)
        p = torch.where(sup, torch.exp(policy_class.log_policy(th)), 0.0)
        delta = torch.where(sup, s_over_beta - f, 0.0)
        return step_fn(th, delta, t["rho"][:, None] * p, damping)

    with torch.no_grad():
        theta, it, converged, _, _ = ascent_loop(evaluate, direction, theta.detach().clone(),
                                                 max_iter)
    return theta, it, converged


def _absmax(x) -> float:
    return float(abs(x).max()) if len(x) else 0.0


def ascent_loop(evaluate, direction, theta, max_iter: int):
    """The iteration of :func:`natural_ascent`, for any array type (torch or numpy):
    ``(theta, steps, converged, L, state)``.

    ``evaluate(theta) -> (L, state)`` (``state``: what ``direction`` reuses of that evaluation,
    e.g. the policy); ``direction(theta, state, damping) -> d``.  Each step: stop (converged)
    when ``||d||_inf <= 1e-12 (1 + ||theta||_inf)``; backtrack from the full step (at most 40
    halvings) until ``L`` rises, or a full step loses no more than ``1e-15 |L|``; on no accepted
    step grow the damping 100x (give up past 1e6), after a full step shrink it 10x, after a
    shortened one grow it 10x.  The one loop of every natural / Newton search (the torch path
    and the log-linear class's numpy paths), so they take the same decisions.
    """
    damping = 1e-8
    converged = False
    cur, state = evaluate(theta)
    it = 0
    while it < max_iter:
        d = direction(theta, state, damping)
        if _absmax(d) <= 1e-12 * (1.0 + _absmax(theta)):
            converged = True
            break
        it += 1
        rounding = 1e-15 * max(1.0, abs(cur))
        step, accepted = 1.0, False
        for _ in range(40):
            trial = theta + step * d
            v, st = evaluate(trial)
            if math.isfinite(v) and (v > cur or (step == 1.0 and v >= cur - rounding)):
                accepted = True
                break
            step *= 0.5
        if not accepted:
            if damping > 1e6:
                break  # no ascent along natural directions: let L-BFGS try
            damping *= 100.0
            continue
        theta, cur, state = trial, max(v, cur), st
        damping = max(damping / 10.0, 1e-12) if step == 1.0 else damping * 10.0
    return theta, it, converged, cur, state


def lbfgs_batch(x0: np.ndarray, fun, max_iter: int | np.ndarray, gtol: float = 1e-10,
                ftol: float = 1e-15, history_size: int = 20, stall_window: int = 20,
                stall_tol: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """:func:`lbfgs` on ``K`` independent problems at once: ``(x, iterations)``, ``(K, P)`` and
    ``(K,)``.

    ``x0``: the starts, ``(K, P)``; ``fun(z, idx) -> (f, g)`` evaluates the problems ``idx``
    (``(n,)`` indices into the batch) at ``z`` ``(n, P)`` in one call, returning ``f`` ``(n,)``
    (``inf`` where not finite) and ``g`` ``(n, P)``.  Each problem runs exactly the algorithm of
    :func:`lbfgs` (its own history, direction, Armijo backtracking and stopping rules); only
    the evaluations are shared: every trial step of every problem still searching is one batched
    call.  The direction is :func:`lbfgs`'s two-loop recursion per problem (the same arithmetic;
    a version vectorized over the batch was measured slower at the batch sizes used here); the
    line search and the stopping rules are vectorized.  ``max_iter``: one cap, or one per
    problem ``(K,)``.
    """
    x = np.array(x0, dtype=np.float64, copy=True)
    K, P = x.shape
    max_iter = np.broadcast_to(np.asarray(max_iter, dtype=np.int64), (K,))
    all_idx = np.arange(K)
    f, g = fun(x, all_idx)
    f, g = np.asarray(f, dtype=np.float64).copy(), np.asarray(g, dtype=np.float64).copy()
    if not np.isfinite(f).all():
        raise ValueError("theta: the objective is not finite at the starting point")
    H = int(history_size)
    S: list[list[np.ndarray]] = [[] for _ in range(K)]  # per problem, oldest pair first
    Yh: list[list[np.ndarray]] = [[] for _ in range(K)]
    trail = np.full((K, stall_window + 1), np.nan)  # the last stall_window + 1 values
    trail[:, -1] = f
    n_trail = np.ones(K, dtype=int)
    its = np.zeros(K, dtype=int)
    active = (its < max_iter) & (np.abs(g).max(axis=1, initial=0.0) > gtol)
    while active.any():
        ids = np.nonzero(active)[0]
        gk = g[ids]
        d = np.empty_like(gk)
        slope = np.empty(ids.size)
        for j, k in enumerate(ids):  # each problem's own two-loop recursion (as lbfgs)
            d[j], slope[j] = _direction(S[k], Yh[k], gk[j])
        # Armijo backtracking per problem, trial steps batched
        t = np.ones(ids.size)
        pending = np.ones(ids.size, dtype=bool)
        x_new, f_new, g_new = np.empty_like(gk), np.full(ids.size, np.inf), np.empty_like(gk)
        for _ in range(50):
            sel = np.nonzero(pending)[0]
            z = x[ids[sel]] + t[sel, None] * d[sel]
            fz, gz = fun(z, ids[sel])
            fz = np.asarray(fz, dtype=np.float64)
            fin = np.isfinite(fz)
            ok = fin & (fz <= f[ids[sel]] + 1e-4 * t[sel] * slope[sel])
            acc = sel[ok]
            x_new[acc], f_new[acc], g_new[acc] = z[ok], fz[ok], np.asarray(gz)[ok]
            pending[acc] = False
            rej = sel[~ok]
            if rej.size == 0:
                break
            fr = np.where(fin[~ok], fz[~ok], 0.0)
            shrink = np.minimum(0.5, np.maximum(0.1, -0.5 * slope[rej] * t[rej] / np.maximum(
                fr - f[ids[rej]] - slope[rej] * t[rej], 1e-300)))
            t[rej] *= np.where(fin[~ok], shrink, 0.5)
        # no step decreased f: that problem stops where it is
        active[ids[pending]] = False
        acc = np.nonzero(~pending)[0]
        if acc.size == 0:
            continue
        ka = ids[acc]
        its[ka] += 1
        s_k, y_k = x_new[acc] - x[ka], g_new[acc] - g[ka]
        sy_new = np.einsum("kp,kp->k", s_k, y_k)
        keep = sy_new > 1e-12 * np.sqrt(np.einsum("kp,kp->k", s_k, s_k)
                                        * np.einsum("kp,kp->k", y_k, y_k))
        for i in np.nonzero(keep)[0]:
            k = ka[i]
            S[k].append(s_k[i])
            Yh[k].append(y_k[i])
            if len(S[k]) > H:  # drop the oldest pair
                S[k].pop(0)
                Yh[k].pop(0)
        decrease = f[ka] - f_new[acc]
        x[ka], f[ka], g[ka] = x_new[acc], f_new[acc], g_new[acc]
        trail[ka, :-1] = trail[ka, 1:]
        trail[ka, -1] = f[ka]
        n_trail[ka] += 1
        scale = np.maximum(1.0, np.abs(f[ka]))
        stop = decrease <= ftol * scale
        stop |= (n_trail[ka] > stall_window) & (trail[ka, 0] - f[ka] <= stall_tol * scale)
        stop |= its[ka] >= max_iter[ka]
        stop |= np.abs(g[ka]).max(axis=1, initial=0.0) <= gtol
        active[ka[stop]] = False
    return x, its

"""Closed-form numpy evaluations for :class:`~.classes.LogLinearPolicy` (issue 15).

The log-linear scores are linear, ``f_theta = theta^T phi``, so the fit losses of
:meth:`~.base.PolicyClass.fit_loss` have hand-written gradients: with ``pi = pi_theta``,
``m(x) = E_{pi(.|x)} phi`` and ``d pi(y|x) / d theta = pi(y|x) (phi(x, y) - m(x))``, a loss
``sum_{x,y} F(pi)`` has gradient ``sum_{x,y} phi w - sum_x m(x) sum_y w`` for the weights
``w = pi dF/dpi`` of each stage (:class:`LogLinearFitLoss`).  One evaluation is a handful of
numpy passes over ``(X, Y)`` instead of a torch graph and its backward pass (the
per-operation overhead dominates at these sizes); the values are the torch losses' to
rounding (tests/policies/test_loglinear_np.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .optim import ascent_loop

__all__ = ["LogLinearFitLoss", "newton_ascent"]


class LogLinearFitLoss:
    """One :meth:`~.base.PolicyClass.fit_loss` of a log-linear class: callable on a torch
    ``theta`` (the torch loss itself, ``torch_loss``), plus :meth:`value_grad`, the same loss
    and its gradient in closed form on a numpy ``theta`` (what
    :meth:`~.classes.LogLinearPolicy.minimize` runs L-BFGS on)."""

    def __init__(self, policy_class: object, target: np.ndarray, objective: str,
                 kl_target: np.ndarray, torch_loss) -> None:
        pb = policy_class.problem
        self.torch_loss, self.objective = torch_loss, objective
        self.sup = pb.support
        phi = policy_class.features  # (d, X, Y), 0 outside the support
        self.d = phi.shape[0]
        self.phi2 = np.ascontiguousarray(phi.reshape(self.d, -1))  # size = (d, X*Y)
        self.lr0 = np.where(self.sup, pb.log_reference, 0.0)  # size = (X, Y)
        self.rho = np.asarray(pb.prompt_weights, dtype=np.float64)
        self.t = np.asarray(target, dtype=np.float64)
        self.pos = self.t > 0
        with np.errstate(divide="ignore"):
            self.log_t = np.where(self.pos, np.log(np.where(self.pos, self.t, 1.0)), 0.0)
        self.lt_s = np.where(self.sup, self.log_t, 0.0)
        self.kl_t = np.asarray(kl_target, dtype=np.float64)  # size = (X,)
        self.t_mass = np.where(self.pos, self.t, 0.0).sum(1)  # size = (X,)

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        return self.torch_loss(theta)

    def _policy(self, x: np.ndarray):
        X, Y = self.sup.shape
        f = (x @ self.phi2).reshape(X, Y)
        z = np.where(self.sup, self.lr0 + f, -np.inf)
        zmax = z.max(axis=1, keepdims=True)
        e = np.exp(z - zmax)
        tot = e.sum(axis=1, keepdims=True)
        logp_s = np.where(self.sup, z - zmax - np.log(tot), 0.0)
        p = e / tot  # exactly 0 outside the support
        return p, logp_s

    def _grad(self, p: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``sum_{x,y} phi w - sum_x m(x) sum_y w`` with ``m(x) = E_{pi(.|x)} phi``."""
        X, Y = p.shape
        m = (self.phi2 * p.reshape(1, -1)).reshape(self.d, X, Y).sum(axis=2)  # size = (d, X)
        return self.phi2 @ w.reshape(-1) - m @ w.sum(axis=1)

    def value_grad(self, x: np.ndarray) -> tuple[float, np.ndarray | None]:
        """``(loss, gradient)`` at ``x`` ``(d,)``; ``(inf, None)`` where the loss is not
        finite (:func:`~.optim.lbfgs_numpy`'s convention)."""
        p, logp_s = self._policy(np.asarray(x, dtype=np.float64))
        rho = self.rho[:, None]
        if self.objective == "kl":  # E_rho KL(target || pi): w = -rho t, sum_y w = -rho T
            val = float(self.rho @ np.where(self.pos, self.t * (self.log_t - logp_s), 0.0)
                        .sum(1))
            w = -rho * np.where(self.pos, self.t, 0.0)
        elif self.objective == "reverse_kl":  # E_rho KL(pi || target): w = rho pi u
            u = logp_s - self.lt_s
            val = float(self.rho @ (p * u).sum(1))
            w = rho * p * u
        else:  # "nu": the log-sum-exp surrogate of fit_loss
            diff = p - self.t
            root = np.sqrt(diff ** 2 + 1e-16)
            kl_p = (p * (logp_s - self.lr0)).sum(1)  # size = (X,)
            gap = kl_p - self.kl_t
            klg = np.sqrt(gap ** 2 + 1e-16)
            both = 200.0 * np.concatenate([root.sum(1), klg])
            top = both.max()
            ex = np.exp(both - top)
            val = float((math.log(ex.sum()) + top) / 200.0)
            soft = ex / ex.sum()
            X = p.shape[0]
            s1, s2 = soft[:X, None], (soft[X:] * gap / klg)[:, None]
            w = p * (s1 * (diff / root) + s2 * (logp_s - self.lr0))
        if not math.isfinite(val):
            return math.inf, None
        return val, self._grad(p, w)


def _damped_solve(A: np.ndarray, b: np.ndarray, damping: float) -> np.ndarray:
    """:func:`~.base.damped_solve` in numpy: ``(A + tau I)^{-1} b``, ``tau = max(damping,
    1e-12) mean(diag A)``, grown 100x while the Cholesky factorization fails."""
    scale = float(np.diagonal(A).mean()) if A.size else 1.0
    eye = np.eye(A.shape[0])
    tau = max(float(damping), 1e-12) * max(scale, 1e-300)
    for _ in range(20):
        try:
            L = np.linalg.cholesky(A + tau * eye)
        except np.linalg.LinAlgError:  # pragma: no cover - A is PSD; only numerically singular
            tau *= 100.0
            continue
        return np.linalg.solve(L.T, np.linalg.solve(L, b))
    return np.linalg.lstsq(A + tau * eye, b, rcond=None)[0]  # pragma: no cover


def newton_ascent(problem, policy_class: object, lam: np.ndarray, theta: np.ndarray,
                  max_iter: int) -> tuple[np.ndarray, int, bool]:
    """:func:`~.optim.natural_ascent` with ``newton=True`` for a log-linear class, in numpy:
    the same iteration (the Newton step of :meth:`~.classes.LogLinearPolicy.ascent_step`, the
    natural step where ``-hess L`` is not positive definite, the same line search, damping
    schedule and stopping rule), each step a few passes over ``(d, X, Y)`` instead of torch
    small operations.  ``lam`` ``(m,)`` and ``theta`` ``(d,)``: numpy float64; returns
    ``(theta, iterations, converged)``."""
    sup = problem.support
    beta = problem.beta
    rho = np.asarray(problem.prompt_weights, dtype=np.float64)
    v0 = np.where(sup, problem.reward + np.einsum("i,ixy->xy", lam,
                                                  np.where(sup[None], problem.h, 0.0)), 0.0)
    s_over_beta = v0 / beta  # (r + lam^T h) / beta on the support
    lr0 = np.where(sup, problem.log_reference, 0.0)
    phi = policy_class.features  # size = (d, X, Y), 0 outside the support
    d_, X, Y = phi.shape
    phi2 = phi.reshape(d_, X * Y)

    def evaluate(th: np.ndarray):
        """``(L(pi_theta, lam), (pi_theta, f_theta))``."""
        f = (th @ phi2).reshape(X, Y)
        z = np.where(sup, lr0 + f, -np.inf)
        zmax = z.max(axis=1, keepdims=True)
        e = np.exp(z - zmax)
        tot = e.sum(axis=1, keepdims=True)
        logp_s = np.where(sup, z - zmax - np.log(tot), 0.0)
        p = e / tot
        val = float(rho @ (p * (v0 - beta * (logp_s - lr0))).sum(1))
        return val, (p, f)

    def step_direction(_theta: np.ndarray, state, damping: float) -> np.ndarray:
        p, f = state
        w = rho[:, None] * p  # size = (X, Y), 0 outside the support
        delta = np.where(sup, s_over_beta - f, 0.0)
        wsum = np.maximum(w.sum(1), 1e-300)  # size = (X,)
        phi_m = (phi2.reshape(d_, X, Y) * w).sum(2) / wsum  # size = (d, X)
        phi_c = (phi - phi_m[:, :, None]).reshape(d_, X * Y)
        dc = (delta - ((w * delta).sum(1) / wsum)[:, None]).reshape(-1)
        wphi = phi_c * w.reshape(1, -1)
        A = wphi @ phi_c.T  # size = (d, d)
        b = wphi @ dc
        H = A - (wphi * dc) @ phi_c.T  # -hess L / beta
        if np.isfinite(H).all():
            try:
                np.linalg.cholesky(H)
                return _damped_solve(H, b, damping)
            except np.linalg.LinAlgError:
                pass
        return _damped_solve(A, b, damping)  # not concave here: the natural step

    theta = np.array(theta, dtype=np.float64, copy=True)
    theta, it, converged, _, _ = ascent_loop(evaluate, step_direction, theta, max_iter)
    return theta, it, converged

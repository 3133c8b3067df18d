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
from scipy.linalg.lapack import dpotrf as _potrf
from scipy.linalg.lapack import dpotrs as _potrs

from .optim import ascent_loop

__all__ = ["LogLinearFitLoss", "LogLinearLagrangian", "newton_ascent"]


def log_policy(phi_flat: np.ndarray, ref_masked: np.ndarray, theta: np.ndarray):
    """``(f_theta, log pi_theta, pi_theta)``, each ``(X, Y)``, for features ``phi_flat`` ``(d,
    X*Y)`` and ``log pi_ref`` with ``-inf`` off the support (``ref_masked``): ``log pi_theta``
    is ``-inf`` and ``pi_theta`` exactly 0 off the support."""
    f = (theta @ phi_flat).reshape(ref_masked.shape)
    z = ref_masked + f  # -inf off the support
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return f, logp, np.exp(logp)


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
        self.ref_masked = np.where(self.sup, pb.log_reference, -np.inf)  # size = (X, Y)
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
        """``(pi_theta, log pi_theta with 0 off the support)``."""
        _, logp, p = log_policy(self.phi2, self.ref_masked, x)
        return p, np.where(self.sup, logp, 0.0)

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


class LogLinearLagrangian:
    """``L(pi_theta, lam)`` of a log-linear class on ``problem`` and its ascent directions, in
    numpy: the one evaluation and the one linear system behind the theory's Newton searches
    (:func:`newton_ascent`) and the algorithms' budgeted natural steps
    (:mod:`dualgap.algorithms.loglinear_numpy`).  ``pi_theta`` uses the class's own ``log
    pi_ref`` and ``L`` reads ``problem``'s tables (``problem`` may be a copy of the class's with
    other scores, on the same support), as :func:`~.terms.lagrangian_terms` does."""

    def __init__(self, problem, policy_class: object) -> None:
        sup = problem.support
        self.sup, self.beta = sup, float(problem.beta)
        self.rho = np.asarray(problem.prompt_weights, dtype=np.float64)  # size = (X,)
        self.r = np.where(sup, problem.reward, 0.0)  # size = (X, Y)
        self.h = np.where(sup[None], problem.h, 0.0)  # size = (m, X, Y)
        self.log_ref = np.where(sup, problem.log_reference, 0.0)  # size = (X, Y)
        self.ref_masked = np.where(sup, policy_class.log_ref.numpy(), -np.inf)  # size = (X, Y)
        self.phi = policy_class.features  # size = (d, X, Y), 0 off the support
        d, X, Y = self.phi.shape
        self.phi_flat = self.phi.reshape(d, X * Y)
        self.eye = np.eye(d)

    def terms(self, theta: np.ndarray):
        """``(J, slack, f_theta, log pi_theta (-inf off the support), pi_theta)``."""
        f, logp, p = log_policy(self.phi_flat, self.ref_masked, theta)
        logp0 = np.where(self.sup, logp, 0.0)
        J = float(self.rho @ (p * (self.r - self.beta * (logp0 - self.log_ref))).sum(1))
        slack = np.einsum("x,xy,ixy->i", self.rho, p, self.h)
        return J, slack, f, logp, p

    def evaluate(self, theta: np.ndarray, lam: np.ndarray
                 ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """``(L(pi_theta, lam), f_theta, log pi_theta, pi_theta)``, ``L = J + lam^T slack``."""
        J, slack, f, logp, p = self.terms(theta)
        return float(J + lam @ slack), f, logp, p

    def ascent(self, lam: np.ndarray, theta: np.ndarray, max_iter: int, newton: bool
               ) -> tuple[np.ndarray, int, bool]:
        """:func:`~.optim.natural_ascent` in numpy, through :func:`~.optim.ascent_loop`:
        ``(theta, iterations, converged)``; ``newton``: the Newton step of
        :meth:`~.classes.LogLinearPolicy.ascent_step` (the natural step where ``-hess L`` is not
        positive definite), else the natural step of ``score_step``."""
        sup = self.sup
        s_over_beta = (self.r + np.einsum("i,ixy->xy", lam, self.h)) / self.beta
        rho_col = self.rho[:, None]

        def evaluate(th: np.ndarray):
            v, f, _, p = self.evaluate(th, lam)
            return v, (f, p)

        def direction(_th: np.ndarray, state, damping: float) -> np.ndarray:
            f, p = state
            return self.direction(np.where(sup, s_over_beta - f, 0.0), rho_col * p, damping,
                                  newton)

        theta = np.array(theta, dtype=np.float64, copy=True)
        theta, it, converged, _, _ = ascent_loop(evaluate, direction, theta, max_iter)
        return theta, it, converged

    def direction(self, delta: np.ndarray, w: np.ndarray, damping: float,
                  newton: bool = False) -> np.ndarray:
        """The damped step ``(S + tau I)^{-1} b`` of :meth:`~.classes.LogLinearPolicy.score_step`
        (``S = A``, the natural step) or of its ``ascent_step`` (``S = A - M``, ``-hess L /
        beta``, where that is positive definite and finite; else ``A``), ``delta = (r + lam^T h)
        / beta - f_theta`` and ``w = rho pi_theta`` (0 off the support)."""
        phi = self.phi
        d = phi.shape[0]
        wsum = np.maximum(w.sum(1), 1e-300)  # size = (X,)
        phi_m = np.einsum("xy,dxy->dx", w, phi) / wsum  # size = (d, X)
        phi_c = (phi - phi_m[:, :, None]).reshape(d, -1)  # size = (d, X*Y)
        dc = (delta - ((w * delta).sum(1) / wsum)[:, None]).reshape(-1)  # size = (X*Y,)
        wphi = phi_c * w.reshape(1, -1)
        A = wphi @ phi_c.T  # size = (d, d)
        b = wphi @ dc  # size = (d,)
        if newton:
            H = A - (wphi * dc) @ phi_c.T  # -hess L / beta
            if np.isfinite(H).all() and _potrf(H, lower=1)[1] == 0:
                A = H
        return self._damped_solve(A, b, damping)

    def _damped_solve(self, A: np.ndarray, b: np.ndarray, damping: float) -> np.ndarray:
        """:func:`~.base.damped_solve` in numpy: ``(A + tau I)^{-1} b``, ``tau = max(damping,
        1e-12) mean(diag A)``, grown 100x while the Cholesky factorization fails (LAPACK's
        factor and solve, as torch's ``cholesky_solve``)."""
        scale = float(np.trace(A)) / A.shape[0]  # mean(diag A); d >= 1
        tau = max(float(damping), 1e-12) * max(scale, 1e-300)
        for _ in range(20):
            c, info = _potrf(A + tau * self.eye, lower=1)
            if info == 0:
                return _potrs(c, b, lower=1)[0]
            tau *= 100.0  # pragma: no cover - A is PSD; only numerically singular
        return np.linalg.lstsq(A + tau * self.eye, b, rcond=None)[0]  # pragma: no cover


def newton_ascent(problem, policy_class: object, lam: np.ndarray, theta: np.ndarray,
                  max_iter: int) -> tuple[np.ndarray, int, bool]:
    """:func:`~.optim.natural_ascent` with ``newton=True`` for a log-linear class, in numpy
    (:meth:`LogLinearLagrangian.ascent`): the same iteration as the torch one (the Newton step
    of :meth:`~.classes.LogLinearPolicy.ascent_step`, the natural step where ``-hess L`` is not
    positive definite, the same line search, damping schedule and stopping rule).  ``lam``
    ``(m,)`` and ``theta`` ``(d,)``: numpy float64; returns ``(theta, iterations,
    converged)``."""
    lam = np.asarray(lam, dtype=np.float64).reshape(-1)
    return LogLinearLagrangian(problem, policy_class).ascent(lam, theta, max_iter, newton=True)

"""CAID's and one-shot's finite policy step on the log-linear class, in numpy.

A policy step with a finite budget (``inner_steps``) on a
:class:`~dualgap.policies.LogLinearPolicy` is
:func:`dualgap.gaps.lagrangian_max` with ``steps=inner_steps``: damped natural-gradient steps
(:func:`dualgap.policies.optim.natural_ascent` with ``newton=False``) whose direction is the
class's closed-form :meth:`~dualgap.policies.LogLinearPolicy.score_step`::

    delta = (r + lam^T h) / beta - theta^T phi,   w = rho pi_theta        (0 off the support)
    phi_c = phi - E_w[phi | x],  delta_c = delta - E_w[delta | x]
    (A + tau I) d = b,   A = sum w phi_c phi_c^T,  b = sum w phi_c delta_c,
    tau = max(damping, 1e-12) mean(diag A)

then the same backtracking line search on ``L`` and the same damping schedule.  On the small
tables of the claims ledger and the notebooks a step is ~15 torch calls of a few microseconds
of work each; here they are numpy calls on the same float64 arrays (the same iterates up to
rounding: tested against the torch path to 1e-10).  When the torch search would go on to its
L-BFGS polish (``method="auto"``, the natural steps stopped early without converging) the step
is handed to :func:`dualgap.gaps.lagrangian_max` from the same start, so the result is always
that search's.
"""

from __future__ import annotations

import math

import numpy as np

from ..problem import AlignmentProblem

__all__ = ["LogLinearSteps", "loglinear_steps"]

#: natural steps of :func:`~dualgap.policies.batch.search_batch` before its L-BFGS polish
_NATURAL = {"auto": 30, "natural": 200}


def loglinear_steps(problem: AlignmentProblem, policy_class, inner_steps: int | None,
                    inner_method: str) -> LogLinearSteps | None:
    """The numpy policy step when it computes what ``lagrangian_max(problem, policy_class,
    lam, theta, steps=inner_steps, method=inner_method)`` does: ``policy_class`` exactly a
    ``LogLinearPolicy`` on ``problem``'s table, a finite budget (no Newton steps) and natural
    steps (``"auto"`` or ``"natural"``); None otherwise (the torch path)."""
    from ..policies import LogLinearPolicy

    if (type(policy_class) is not LogLinearPolicy or inner_steps is None
            or inner_method not in _NATURAL):
        return None
    own = policy_class.problem
    if own is not problem and (own.reward.shape != problem.reward.shape
                               or not np.array_equal(own.support, problem.support)):
        return None  # lagrangian_max raises the incompatibility
    return LogLinearSteps(problem, policy_class, int(inner_steps), inner_method)


class LogLinearSteps:
    """``step(lam, theta) -> (policy, theta, L(pi_theta, lam))`` (see the module docstring)."""

    def __init__(self, problem: AlignmentProblem, policy_class, inner_steps: int,
                 inner_method: str) -> None:
        sup = problem.support
        self.problem, self.policy_class = problem, policy_class
        self.sup, self.beta = sup, float(problem.beta)
        self.rho = np.asarray(problem.prompt_weights, dtype=np.float64)  # size = (X,)
        self.r = np.where(sup, problem.reward, 0.0)  # size = (X, Y)
        self.h = np.where(sup[None], problem.h, 0.0)  # size = (m, X, Y)
        self.log_ref = np.where(sup, problem.log_reference, 0.0)  # size = (X, Y)
        # the class's own log pi_ref (its problem's; the same support)
        self.class_log_ref = policy_class.log_ref.numpy()  # size = (X, Y)
        self.phi = policy_class.features  # size = (d, X, Y), 0 off the support
        d, X, Y = self.phi.shape
        self.phi_flat = self.phi.reshape(d, X * Y)
        self.budget = inner_steps
        self.natural = min(inner_steps, _NATURAL[inner_method])
        self.polish = inner_method == "auto"
        self.inner_method = inner_method

    # ------------------------------------------------------------ pieces
    def log_policy(self, theta: np.ndarray) -> np.ndarray:
        """``log pi_theta``, ``-inf`` off the support."""
        X, Y = self.sup.shape
        z = np.where(self.sup, self.class_log_ref + (theta @ self.phi_flat).reshape(X, Y),
                     -np.inf)
        zmax = z.max(1, keepdims=True)
        zs = z - zmax
        return zs - np.log(np.exp(zs).sum(1, keepdims=True))

    def terms(self, logp_full: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """``(J, slack, pi)`` of :func:`dualgap.policies.terms.lagrangian_terms`."""
        logp = np.where(self.sup, logp_full, 0.0)
        p = np.where(self.sup, np.exp(logp), 0.0)
        J = float(self.rho @ (p * (self.r - self.beta * (logp - self.log_ref))).sum(1))
        slack = np.einsum("x,xy,ixy->i", self.rho, p, self.h)
        return J, slack, p

    def direction(self, theta: np.ndarray, delta: np.ndarray, w: np.ndarray,
                  damping: float) -> np.ndarray:
        """:meth:`~dualgap.policies.LogLinearPolicy.score_step` and its damped solve."""
        phi = self.phi
        wsum = np.maximum(w.sum(1), 1e-300)  # size = (X,)
        phi_m = np.einsum("xy,dxy->dx", w, phi) / wsum  # size = (d, X)
        phi_c = phi - phi_m[:, :, None]  # size = (d, X, Y)
        dc = delta - ((w * delta).sum(1) / wsum)[:, None]  # size = (X, Y)
        wphi = phi_c * w
        d = phi.shape[0]
        A = wphi.reshape(d, -1) @ phi_c.reshape(d, -1).T  # size = (d, d)
        b = wphi.reshape(d, -1) @ dc.reshape(-1)  # size = (d,)
        scale = float(np.diagonal(A).mean()) if A.size else 1.0
        tau = max(float(damping), 1e-12) * max(scale, 1e-300)
        eye = np.eye(d)
        for _ in range(20):
            try:
                L = np.linalg.cholesky(A + tau * eye)
            except np.linalg.LinAlgError:  # pragma: no cover - A is PSD
                tau *= 100.0
                continue
            y = np.linalg.solve(L, b)
            return np.linalg.solve(L.T, y)
        return np.linalg.lstsq(A + tau * eye, b, rcond=None)[0]  # pragma: no cover

    # -------------------------------------------------------------- step
    def ascent(self, lam: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, int, bool]:
        """:func:`~dualgap.policies.optim.natural_ascent` (``newton=False``) in numpy:
        ``(theta, steps, converged)``."""
        sup = self.sup
        s_over_beta = (self.r + np.einsum("i,ixy->xy", lam, self.h)) / self.beta
        rho_col = self.rho[:, None]

        def value(logp_full: np.ndarray) -> float:
            J, sl, _ = self.terms(logp_full)
            return float(J + lam @ sl)

        damping = 1e-8
        converged = False
        logp = self.log_policy(theta)
        cur = value(logp)
        X, Y = sup.shape
        it = 0
        while it < self.natural:
            f = (theta @ self.phi_flat).reshape(X, Y)
            p = np.where(sup, np.exp(logp), 0.0)
            delta = np.where(sup, s_over_beta - f, 0.0)
            d = self.direction(theta, delta, np.where(sup, rho_col * p, 0.0), damping)
            if (float(np.abs(d).max()) if d.size else 0.0) <= 1e-12 * (
                    1.0 + (float(np.abs(theta).max()) if theta.size else 0.0)):
                converged = True
                break
            it += 1
            rounding = 1e-15 * max(1.0, abs(cur))
            step, accepted = 1.0, False
            for _ in range(40):
                trial = theta + step * d
                logp_t = self.log_policy(trial)
                v = value(logp_t)
                if math.isfinite(v) and (v > cur or (step == 1.0 and v >= cur - rounding)):
                    accepted = True
                    break
                step *= 0.5
            if not accepted:
                if damping > 1e6:
                    break
                damping *= 100.0
                continue
            theta, cur, logp = trial, max(v, cur), logp_t
            damping = max(damping / 10.0, 1e-12) if step == 1.0 else damping * 10.0
        return theta, it, converged

    def step(self, lam: np.ndarray, theta0):
        """``(policy, theta, L(pi_theta, lam))`` as ``lagrangian_max(..., theta0=theta0,
        steps=inner_steps, method=inner_method)`` returns them (``theta`` a float64 tensor)."""
        import torch

        lam = np.asarray(lam, dtype=np.float64).reshape(-1)
        th0 = (self.policy_class.init_params() if theta0 is None
               else self.policy_class.check_params(theta0))
        if not (np.isfinite(lam).all() and (lam >= 0).all()):
            return self._torch(lam, theta0)  # lagrangian_max says what is wrong
        theta, n, done = self.ascent(lam, th0.detach().numpy().astype(np.float64, copy=True))
        if self.polish and n < self.budget and not done:
            return self._torch(lam, theta0)  # the search goes on with L-BFGS: its own path
        J, sl, p = self.terms(self.log_policy(theta))
        return p, torch.as_tensor(theta), float(J + lam @ sl)

    def _torch(self, lam: np.ndarray, theta0):
        from ..gaps import lagrangian_max

        res = lagrangian_max(self.problem, self.policy_class, lam, theta0=theta0,
                             steps=self.budget, method=self.inner_method)
        return res.policy, res.theta, res.value

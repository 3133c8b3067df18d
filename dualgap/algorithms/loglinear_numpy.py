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

import numpy as np
from scipy.linalg.lapack import dpotrf as _potrf
from scipy.linalg.lapack import dpotrs as _potrs

from ..policies.optim import ascent_loop
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
        self.ref_masked = np.where(sup, policy_class.log_ref.numpy(), -np.inf)  # (X, Y)
        self.phi = policy_class.features  # size = (d, X, Y), 0 off the support
        d, X, Y = self.phi.shape
        self.phi_flat = self.phi.reshape(d, X * Y)
        self.eye = np.eye(d)
        self.budget = inner_steps
        self.natural = min(inner_steps, _NATURAL[inner_method])
        self.polish = inner_method == "auto"
        self.inner_method = inner_method

    # ------------------------------------------------------------ pieces
    def evaluate(self, theta: np.ndarray, lam: np.ndarray
                 ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """``(L(pi_theta, lam), f_theta, log pi_theta (-inf off the support), pi_theta)``; ``L``
        as :func:`dualgap.policies.terms.lagrangian_terms` gives it, ``J + lam^T slack``."""
        J, slack, f, logp, p = self.terms(theta)
        return float(J + lam @ slack), f, logp, p

    def terms(self, theta: np.ndarray):
        """``(J, slack, f_theta, log pi_theta, pi_theta)``."""
        f = (theta @ self.phi_flat).reshape(self.sup.shape)  # size = (X, Y)
        z = self.ref_masked + f  # -inf off the support
        z = z - z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        p = np.exp(logp)  # exact zeros off the support
        logp0 = np.where(self.sup, logp, 0.0)
        J = float(self.rho @ (p * (self.r - self.beta * (logp0 - self.log_ref))).sum(1))
        slack = np.einsum("x,xy,ixy->i", self.rho, p, self.h)
        return J, slack, f, logp, p

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
        scale = float(np.trace(A)) / d  # mean(diag A); d >= 1
        tau = max(float(damping), 1e-12) * max(scale, 1e-300)
        eye = self.eye
        for _ in range(20):  # LAPACK's Cholesky factor and solve, as torch's cholesky_solve
            c, info = _potrf(A + tau * eye, lower=1)
            if info == 0:
                return _potrs(c, b, lower=1)[0]
            tau *= 100.0  # pragma: no cover - A is PSD; only numerically singular
        return np.linalg.lstsq(A + tau * eye, b, rcond=None)[0]  # pragma: no cover

    # -------------------------------------------------------------- step
    def ascent(self, lam: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, int, bool]:
        """:func:`~dualgap.policies.optim.natural_ascent` (``newton=False``) in numpy:
        ``(theta, steps, converged)``."""
        sup = self.sup
        s_over_beta = (self.r + np.einsum("i,ixy->xy", lam, self.h)) / self.beta
        rho_col = self.rho[:, None]

        def evaluate(th: np.ndarray):
            v, f, _, p = self.evaluate(th, lam)
            return v, (f, p)

        def direction(th: np.ndarray, state, damping: float) -> np.ndarray:
            f, p = state
            return self.direction(th, np.where(sup, s_over_beta - f, 0.0), rho_col * p, damping)

        theta, it, converged, _, _ = ascent_loop(evaluate, direction, theta, self.natural)
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
        val, _, _, p = self.evaluate(theta, lam)
        return p, torch.as_tensor(theta), val

    def _torch(self, lam: np.ndarray, theta0):
        from ..gaps import lagrangian_max

        res = lagrangian_max(self.problem, self.policy_class, lam, theta0=theta0,
                             steps=self.budget, method=self.inner_method)
        return res.policy, res.theta, res.value

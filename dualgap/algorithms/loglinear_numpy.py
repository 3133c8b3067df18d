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

from ..policies.loglinear_np import LogLinearLagrangian
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
    """``step(lam, theta) -> (policy, theta, L(pi_theta, lam))`` (see the module docstring);
    the evaluation and the directions are the theory's own
    (:class:`~dualgap.policies.loglinear_np.LogLinearLagrangian`)."""

    def __init__(self, problem: AlignmentProblem, policy_class, inner_steps: int,
                 inner_method: str) -> None:
        self.problem, self.policy_class = problem, policy_class
        self.lagrangian = LogLinearLagrangian(problem, policy_class)
        self.budget = inner_steps
        self.natural = min(inner_steps, _NATURAL[inner_method])
        self.polish = inner_method == "auto"
        self.inner_method = inner_method

    def ascent(self, lam: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, int, bool]:
        """:func:`~dualgap.policies.optim.natural_ascent` (``newton=False``, the step budget)
        in numpy: ``(theta, steps, converged)``."""
        return self.lagrangian.ascent(lam, theta, self.natural, newton=False)

    def step(self, lam: np.ndarray, theta0):
        """``(policy, theta, L(pi_theta, lam))`` as ``lagrangian_max(..., theta0=theta0,
        steps=inner_steps, method=inner_method)`` returns them (``theta`` a float64 tensor)."""
        import torch

        lam = np.asarray(lam, dtype=np.float64).reshape(-1)
        th0 = (self.policy_class.init_params() if theta0 is None
               else self.policy_class.check_params(theta0))
        if not (np.isfinite(lam).all() and (lam >= 0).all()):
            return self._torch(lam, theta0)  # lagrangian_max says what is wrong
        theta, n, done = self.ascent(lam, th0.detach().numpy())
        if self.polish and n < self.budget and not done:
            return self._torch(lam, theta0)  # the search goes on with L-BFGS: its own path
        val, _, _, p = self.lagrangian.evaluate(theta, lam)
        return p, torch.as_tensor(theta), val

    def _torch(self, lam: np.ndarray, theta0):
        from ..gaps import lagrangian_max

        res = lagrangian_max(self.problem, self.policy_class, lam, theta0=theta0,
                             steps=self.budget, method=self.inner_method)
        return res.policy, res.theta, res.value

"""The two terms of the Lagrangian of a parametrized policy, shared by the optimizers and the gaps.

For ``theta -> pi_theta`` on the reference support (docs/problem.md)::

    J(pi_theta)       = E_rho sum_{y in supp} pi_theta (r - beta (log pi_theta - log pi_ref))
    s(theta)          = E_rho E_{pi_theta} h                                   (m,)
    L(pi_theta, lam)  = J(pi_theta) + lam^T s(theta)

Public API of the package: :mod:`.optim` and :mod:`dualgap.gaps` use :func:`lagrangian_terms`
and :func:`problem_tensors`.  Imports torch.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import torch

from ..problem import AlignmentProblem

__all__ = ["DTYPE", "problem_tensors", "lagrangian_terms", "lagrangian_surrogate"]

#: the dtype of every parameter vector and every evaluation
DTYPE = torch.float64

# per-problem torch copies of (rho, r, h, log pi_ref on the support, support)
_TENSORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def problem_tensors(problem: AlignmentProblem) -> dict[str, torch.Tensor]:
    """``rho`` ``(X,)``, ``r`` ``(X, Y)``, ``h`` ``(m, X, Y)``, ``log_ref`` ``(X, Y)`` (each 0
    outside the support) and the boolean ``support`` ``(X, Y)``, as float64 tensors (cached per
    problem)."""
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


def lagrangian_terms(problem: AlignmentProblem, policy_class: object,
                     theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(J(pi_theta), s(theta))`` as torch (scalar, ``(m,)``), differentiable in ``theta``.

    ``policy_class`` is any object with ``log_policy(theta) -> (X, Y)`` on ``problem``'s
    support (no compatibility check here: :func:`dualgap.gaps.policy_terms` checks).  Entries
    outside the support contribute exactly 0 (no ``0 * -inf``).
    """
    t = problem_tensors(problem)
    sup = t["support"]
    logp = torch.where(sup, policy_class.log_policy(theta), 0.0)  # size = (X, Y)
    p = torch.where(sup, torch.exp(logp), 0.0)  # size = (X, Y)
    J = t["rho"] @ (p * (t["r"] - problem.beta * (logp - t["log_ref"]))).sum(1)
    slack = torch.einsum("x,xy,ixy->i", t["rho"], p, t["h"])  # size = (m,)
    return J, slack


def lagrangian_surrogate(problem: AlignmentProblem, policy_class: object, theta: torch.Tensor,
                         lam: torch.Tensor) -> torch.Tensor:
    """A scalar equal to ``L(pi_theta, lam)`` whose ``theta``-gradient is that of ``L``, with
    autograd only through the scores ``f_theta`` (the softmax part in closed form).

    With ``v = r + lam^T h - beta (log pi_theta - log pi_ref)`` on the support::

        dL / df_theta(x, y) = rho_x pi_theta(y|x) (v(x, y) - E_{pi_theta(.|x)} v)     (X, Y)

    so the result is ``L + sum_{x,y} g (f_theta - stop_grad(f_theta))`` with ``g`` that
    gradient (``L`` computed as :func:`lagrangian_terms` does).
    """
    t = problem_tensors(problem)
    sup = t["support"]
    f = policy_class.scores(theta)  # size = (X, Y)
    with torch.no_grad():
        z = torch.where(sup, t["log_ref"] + f, -math.inf)
        logp = torch.where(sup, torch.log_softmax(z, dim=1), 0.0)  # size = (X, Y)
        p = torch.where(sup, torch.exp(logp), 0.0)
        v = t["r"] + torch.einsum("i,ixy->xy", lam, t["h"]) - problem.beta * (logp - t["log_ref"])
        v = torch.where(sup, v, 0.0)
        value = t["rho"] @ (p * v).sum(1)
        g = t["rho"][:, None] * p * (v - (p * v).sum(1, keepdim=True))  # size = (X, Y)
    return value + (g * (f - f.detach())).sum()

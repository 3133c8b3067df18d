"""The two terms of the Lagrangian of a parametrized policy, shared by the optimizers and the gaps.

For ``theta -> pi_theta`` on the reference support (docs/problem.md)::

    J(pi_theta)       = E_rho sum_{y in supp} pi_theta (r - beta (log pi_theta - log pi_ref))
    s(theta)          = E_rho E_{pi_theta} h                                   (m,)
    L(pi_theta, lam)  = J(pi_theta) + lam^T s(theta)

Public API of the package: :mod:`.optim`, :mod:`.batch` and :mod:`dualgap.gaps` use
:func:`lagrangian_terms`, :func:`lagrangian_value_grad` and :func:`problem_tensors`.  Imports torch.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import torch

from ..problem import AlignmentProblem

__all__ = ["DTYPE", "problem_tensors", "lagrangian_terms", "lagrangian_value_grad"]

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


def lagrangian_value_grad(problem: AlignmentProblem, policy_class: object, thetas: torch.Tensor,
                          lams: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L(pi_theta_k, lam_k), grad_theta L(pi_theta_k, lam_k))`` for a batch, ``(K,)`` and
    ``(K, P)``: the softmax part of the gradient in closed form, pulled back through the
    scores by the class's ``scores_pullback`` (one batched forward pass; by hand for the
    classes here, autograd by default).

    ``thetas`` ``(K, P)``, ``lams`` ``(K, m)``.  With ``v = r + lam^T h - beta (log pi_theta -
    log pi_ref)`` on the support::

        dL / df_theta(x, y) = rho_x pi_theta(y|x) (v(x, y) - E_{pi_theta(.|x)} v)     (X, Y)

    and ``L = E_rho E_{pi_theta} v`` (the value :func:`lagrangian_terms` gives).
    """
    t = problem_tensors(problem)
    sup = t["support"]
    with torch.no_grad():
        f, pullback = policy_class.scores_pullback(thetas)  # size = (K, X, Y)
        z = torch.where(sup, t["log_ref"] + f, -math.inf)
        logp = torch.where(sup, torch.log_softmax(z, dim=2), 0.0)  # size = (K, X, Y)
        p = torch.where(sup, torch.exp(logp), 0.0)
        v = (t["r"] + torch.einsum("ki,ixy->kxy", lams, t["h"])
             - problem.beta * (logp - t["log_ref"]))
        v = torch.where(sup, v, 0.0)
        pv = (p * v).sum(2, keepdim=True)  # size = (K, X, 1)
        value = pv[:, :, 0] @ t["rho"]  # size = (K,)
        g = t["rho"][:, None] * p * (v - pv)  # size = (K, X, Y)
        return value, pullback(g)

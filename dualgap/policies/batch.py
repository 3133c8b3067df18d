"""Many Lagrangian maximizations as one tensor program: the default of
:meth:`~.base.PolicyClass.maximize_lagrangian_batch` (and of ``maximize_lagrangian``, its
one-search case).

``K`` searches ``max_theta L(pi_theta, lam_k)`` (each its own multiplier and start) share every
evaluation: the scores of all ``K`` parameters come from one call of the class's
:meth:`~.base.PolicyClass.scores_batch` (a batched forward pass, ``(K, X, Y)``), the value and
the softmax part of the gradient are closed-form tensor expressions over the batch
(:func:`~.terms.lagrangian_value_grad`), and the batched L-BFGS (:func:`~.optim.lbfgs_batch`) keeps
each search's own history, line search and stopping rules.  Natural-gradient steps (tabular,
log-linear: a least-squares solve per search) run per search first; the L-BFGS polish of those
that did not converge is batched.  Imports torch.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..problem import AlignmentProblem
from .optim import lbfgs_batch, natural_ascent
from .terms import DTYPE, lagrangian_value_grad

__all__ = ["search_batch"]


def search_batch(policy_class: object, problem: AlignmentProblem, lams: torch.Tensor,
                 theta0s: list, budget: int | None, method: str) -> list[tuple[torch.Tensor, int]]:
    """The default local searches of :meth:`~.base.PolicyClass.maximize_lagrangian`, ``K`` at
    once: ``[(theta_k, iterations_k)]``.

    Per search, as documented there: ``method="natural"`` natural steps (at most 200);
    ``"auto"`` on classes that prefer them 30 natural steps, then the L-BFGS polish unless
    they converged; ``"lbfgs"`` (and ``"auto"`` otherwise) L-BFGS alone (at most 500, or
    ``budget`` iterations in all).  ``theta0s[k]`` ``None`` is the class's default start.
    """
    natural = method == "natural" or (method == "auto" and policy_class.prefers_natural
                                      and policy_class.has_score_step)
    polish = method in ("lbfgs", "auto")
    cap = math.inf if budget is None else int(budget)
    thetas, iters, todo = [], [], []
    for k, th0 in enumerate(theta0s):
        theta = (policy_class.init_params() if th0 is None
                 else policy_class.check_params(th0)).detach().clone()
        n, done = 0, False
        if natural:
            nat = 200 if method == "natural" else 30
            # Newton steps (where the class has them) only in searches run to convergence:
            # a finite policy step of CAID or one-shot is the algorithm under test
            theta, n, done = natural_ascent(problem, policy_class, lams[k], theta,
                                            int(min(cap, nat)), newton=budget is None)
        thetas.append(theta)
        iters.append(n)
        if polish and n < cap and not done:
            todo.append(k)
    if todo:
        idx = np.array(todo)
        lam_b = lams[idx]
        max_iter = np.array([500 if budget is None else int(cap - iters[k]) for k in todo])

        def fun(z: np.ndarray, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            val, grad = lagrangian_value_grad(problem, policy_class,
                                              torch.from_numpy(z), lam_b[sel])
            f = -val.numpy()
            return np.where(np.isfinite(f), f, np.inf), -grad.numpy()

        x0 = torch.stack([thetas[k] for k in todo]).numpy()
        x, its = lbfgs_batch(x0, fun, max_iter)
        for j, k in enumerate(todo):
            thetas[k] = torch.as_tensor(x[j], dtype=DTYPE).clone()
            iters[k] += int(its[j])
    return list(zip(thetas, iters, strict=True))

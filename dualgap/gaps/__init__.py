"""Parameter-space duality: ``D_p``, ``D*_p``, ``P*_p`` and the parametrization gap ``nu``.

For a policy class ``theta -> pi_theta`` (:mod:`dualgap.policies`) and ``lam >= 0``
(docs/problem.md)::

    L(pi_theta, lam) = E_rho [ E_{pi_theta}(r + lam^T h) - beta KL(pi_theta(.|x) || pi_ref(.|x)) ]
                     = D(lam) - beta E_rho KL(pi_theta || pi_lam)          (exact identity)
    D_p(lam)  = max_theta L(pi_theta, lam)      <= D(lam)                 (convex, not smooth)
    D*_p      = min_{lam >= 0} D_p(lam),  lam*_p its minimizer
    P*_p      = max_theta J(pi_theta)  s.t.  E_rho E_{pi_theta} h >= 0   <= D*_p (weak duality)

Every number here is an estimate that errs on a known side (docs/theory.md, "Which side each
estimate errs on"):

* :func:`lagrangian_max` finds *a* theta by local search: its value ``L(pi_theta, lam)`` is a
  lower estimate of ``D_p(lam)`` and theta is the certificate; :func:`lagrangian_max_batch`
  runs many such searches as one batched tensor program.
* :func:`parametrized_dual` minimizes ``D_p`` by a level bundle method whose cuts are
  ``L(pi_theta_k, lam) = J(theta_k) + lam^T s_k`` for the thetas found: every cut is an exact
  lower bound on ``D_p`` everywhere, so the minimum of the model over a box that contains
  ``lam*_p`` (certified from a strictly feasible theta) is a *certified lower bound* on ``D*_p``;
  the best value found, ``min_k max_j cut_j(lam_k)``, is the point estimate (it errs low
  through the inner search and high through the outer one).  :func:`refine_dual` adds the cuts
  of more thetas (e.g. fit witnesses).
* :func:`parametrized_primal`: any feasible theta gives a *lower estimate* of ``P*_p``.
* :func:`parametrization_gap`: any theta gives a valid (upper) ``nu`` for its target.

Modules: :mod:`.lagrangian` (``L``, ``D_p`` from below, the checks shared by the package),
:mod:`.dual` (``D*_p``, ``lam*_p``), :mod:`.primal` (``P*_p``), :mod:`.nu` (``nu``).
Imports torch.
"""

from __future__ import annotations

from .dual import ParametrizedDual, parametrized_dual, refine_dual
from .lagrangian import (
    LAGRANGIAN_METHODS,
    LagrangianMax,
    cut,
    lagrangian_max,
    lagrangian_max_batch,
    lagrangian_objective,
    policy_terms,
)
from .nu import ParametrizationGap, parametrization_gap, proves_not_a_minimizer
from .primal import ParametrizedPrimal, parametrized_primal, with_candidate

__all__ = [
    "proves_not_a_minimizer",
    "lagrangian_objective",
    "lagrangian_max",
    "lagrangian_max_batch",
    "LagrangianMax",
    "LAGRANGIAN_METHODS",
    "parametrized_dual",
    "ParametrizedDual",
    "refine_dual",
    "parametrized_primal",
    "ParametrizedPrimal",
    "with_candidate",
    "parametrization_gap",
    "ParametrizationGap",
    "policy_terms",
    "cut",
]

"""Parametrized policy classes ``theta -> pi_theta`` on the reference support (torch, float64).

* :mod:`.base`: :class:`PolicyClass` (the tilted softmax, evaluation, :meth:`~PolicyClass.fit`,
  and the two hooks a class may override: :meth:`~PolicyClass.minimize`, the optimizer step of
  every fit, and :meth:`~PolicyClass.maximize_lagrangian`, the local search every Lagrangian
  maximization of :mod:`dualgap.gaps` runs), :class:`FitResult`;
* :mod:`.classes`: :class:`TabularPolicy`, :class:`LogLinearPolicy`, :class:`MLPPolicy`,
  :func:`problem_features`;
* :mod:`.optim`: the default hooks' optimizers (L-BFGS, natural-gradient ascent);
* :mod:`.terms`: ``J(pi_theta)`` and ``E_rho E_{pi_theta} h``, the two terms of the Lagrangian.

Importing this package imports torch; ``import dualgap`` does not.
"""

from __future__ import annotations

from .base import (
    FIT_OBJECTIVES,
    LAGRANGIAN_METHODS,
    FitResult,
    PolicyClass,
    approximation_gap,
    small_problem_threads,
)
from .classes import LogLinearPolicy, MLPPolicy, TabularPolicy, problem_features
from .optim import lbfgs, natural_ascent
from .terms import DTYPE, lagrangian_terms, problem_tensors

__all__ = [
    "PolicyClass",
    "TabularPolicy",
    "LogLinearPolicy",
    "MLPPolicy",
    "FitResult",
    "FIT_OBJECTIVES",
    "LAGRANGIAN_METHODS",
    "problem_features",
    "approximation_gap",
    "small_problem_threads",
    "lbfgs",
    "natural_ascent",
    "lagrangian_terms",
    "problem_tensors",
    "DTYPE",
]

"""dualgap: exact duals, parametrization gaps and CAID for constrained alignment.

``import dualgap`` loads the exact core only (numpy/scipy): the problem, the closed-form dual,
the Newton solver, the cvxpy reference and feasibility certificates.  Parts that need torch
(``dualgap.policies``, ``dualgap.gaps``, ``dualgap.report``, ``dualgap.algorithms``) are
imported on first use.  The Hugging Face half is a separate subpackage that imports this core
(never the other way round); import it by its own name.
"""

from __future__ import annotations

import importlib

from .dual import (
    DualEval,
    constraint_slack,
    dual_gradient,
    dual_hessian,
    dual_hessians,
    dual_oracle,
    dual_value,
    expected_utilities,
    kl_divergence,
    lagrangian,
    lagrangian_policy,
    objective,
)
from .feasibility import (
    FeasibilityMargin,
    InfeasibleError,
    attainable_maxima,
    feasibility_margin,
    ray_bound,
)
from .problem import NPZ_FIELDS, AlignmentProblem
from .reference import PrimalSolution, solve_primal_cvxpy
from .solver import (
    BoundaryFeasibleWarning,
    ConvergenceWarning,
    DualSolution,
    kkt_residual,
    perturbation,
    solve,
)

__version__ = "0.1.0"

__all__ = [
    "AlignmentProblem",
    "NPZ_FIELDS",
    "DualEval",
    "DualSolution",
    "PrimalSolution",
    "FeasibilityMargin",
    "InfeasibleError",
    "BoundaryFeasibleWarning",
    "ConvergenceWarning",
    "solve",
    "solve_primal_cvxpy",
    "perturbation",
    "dual_oracle",
    "dual_value",
    "dual_gradient",
    "dual_hessian",
    "dual_hessians",
    "lagrangian_policy",
    "expected_utilities",
    "constraint_slack",
    "kl_divergence",
    "objective",
    "lagrangian",
    "kkt_residual",
    "attainable_maxima",
    "feasibility_margin",
    "ray_bound",
]

# submodules that import torch or heavy stacks: loaded on first attribute access
_LAZY_SUBMODULES = {"policies", "gaps", "theory", "report", "algorithms", "testing", "plots",
                    "instances", "empirical"}


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'dualgap' has no attribute {name!r}")

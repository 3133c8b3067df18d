"""The Lagrangian of a parametrized policy and its maximization: ``D_p(lam)`` from below.

For a policy class ``theta -> pi_theta`` (:mod:`dualgap.policies`) and ``lam >= 0``::

    L(pi_theta, lam) = E_rho [ E_{pi_theta}(r + lam^T h) - beta KL(pi_theta(.|x) || pi_ref(.|x)) ]
                     = D(lam) - beta E_rho KL(pi_theta || pi_lam)          (exact identity)
    D_p(lam)  = max_theta L(pi_theta, lam)      <= D(lam)                 (convex, not smooth)

:func:`lagrangian_max` finds *a* theta by local search, through the class's hook
:meth:`~dualgap.policies.PolicyClass.maximize_lagrangian`: its value is a lower estimate of
``D_p(lam)`` and theta is the certificate; :func:`cut` is the lower bound
``lam' -> J(theta) + lam'^T s(theta)`` any theta gives.  The argument checks shared by the
package (:func:`check_compatible`, :func:`check_lam`, :func:`with_small_threads`) live here.

Imports torch.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..policies import (
    DTYPE,
    LAGRANGIAN_METHODS,
    PolicyClass,
    lagrangian_terms,
    small_problem_threads,
)
from ..problem import AlignmentProblem

__all__ = [
    "LAGRANGIAN_METHODS",
    "lagrangian_objective",
    "lagrangian_max",
    "lagrangian_max_batch",
    "LagrangianMax",
    "policy_terms",
    "cut",
    "check_compatible",
    "check_lam",
    "with_small_threads",
]


def with_small_threads(fn):
    """Decorator: run ``fn(problem, ...)`` under :func:`~dualgap.policies.small_problem_threads`
    (public: every module of the package uses it)."""
    @functools.wraps(fn)
    def wrapper(problem, *args, **kwargs):
        if not isinstance(problem, AlignmentProblem):
            raise ValueError(f"problem: expected an AlignmentProblem, got "
                             f"{type(problem).__name__}")
        with small_problem_threads(problem):
            return fn(problem, *args, **kwargs)
    return wrapper


def check_compatible(problem: AlignmentProblem, policy_class: PolicyClass) -> None:
    if not isinstance(policy_class, PolicyClass):
        raise ValueError(f"policy_class: expected a PolicyClass, got {type(policy_class).__name__}")
    if problem is policy_class.problem:
        return
    if problem.reward.shape != policy_class.problem.reward.shape:
        raise ValueError(f"problem: shape {problem.reward.shape} does not match the policy "
                         f"class's {policy_class.problem.reward.shape}")
    if not np.array_equal(problem.support, policy_class.problem.support):
        raise ValueError("problem: reference support differs from the policy class's")


def check_lam(problem: AlignmentProblem, lam: object) -> torch.Tensor:
    m = problem.num_constraints
    arr = np.asarray(lam.detach().numpy() if isinstance(lam, torch.Tensor) else lam,
                     dtype=np.float64).reshape(-1) if m else np.zeros(0)
    if arr.shape != (m,):
        raise ValueError(f"lam: shape {arr.shape} does not match m = {m}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"lam: multipliers must be finite and >= 0, got {arr!r}")
    return torch.as_tensor(arr, dtype=DTYPE)


def policy_terms(problem: AlignmentProblem, policy_class: PolicyClass,
                 theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(J(pi_theta), E_rho E_{pi_theta} h)`` as torch (scalar, ``(m,)``), differentiable.

    ``J = E_rho sum_{y in supp} pi_theta (r - beta (log pi_theta - log pi_ref))``; entries
    outside the support contribute exactly 0 (no ``0 * -inf``).
    """
    check_compatible(problem, policy_class)
    return lagrangian_terms(problem, policy_class, theta)


def lagrangian_objective(problem: AlignmentProblem, policy_class: PolicyClass,
                         theta: torch.Tensor, lam: object) -> torch.Tensor:
    """``L(pi_theta, lam) = E_rho[E_{pi_theta}(r + lam^T h)] - beta E_rho KL(pi_theta || pi_ref)``.

    A differentiable torch scalar (float64).  ``problem`` may differ from
    ``policy_class.problem`` (e.g. a tightened copy) if the shapes and supports agree.
    """
    lam_t = check_lam(problem, lam)
    J, slack = policy_terms(problem, policy_class, theta)
    return J + lam_t @ slack


@dataclass
class LagrangianMax:
    """The best ``theta`` :func:`lagrangian_max` found for ``max_theta L(pi_theta, lam)``.

    Attributes:
        value: ``L(pi_theta, lam)``, a lower estimate of ``D_p(lam)`` (theta certifies it).
        theta: the maximizer found, ``(num_params,)`` (detached float64 tensor).
        policy: ``pi_theta``, ``(X, Y)``.
        steps: L-BFGS iterations of the run that produced ``theta``.
        objective: ``J(pi_theta)``.
        slack: ``E_rho E_{pi_theta} h``, ``(m,)``: a subgradient of ``D_p`` at ``lam`` when
            theta is an exact maximizer (and always the slope of the cut
            ``lam' -> J + lam'^T slack <= D_p(lam')``).
        lam: the multiplier.
        start_values: the final value of each start (for diagnosing local maxima).
        total_steps: iterations over all starts.
    """

    value: float
    theta: torch.Tensor = field(repr=False)
    policy: np.ndarray = field(repr=False)
    steps: int
    objective: float = math.nan
    slack: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lam: np.ndarray = field(default_factory=lambda: np.zeros(0))
    start_values: list[float] = field(default_factory=list)
    total_steps: int = 0


@with_small_threads
def lagrangian_max(problem: AlignmentProblem, policy_class: PolicyClass, lam: object,
                   theta0: torch.Tensor | None = None, steps: int | None = None,
                   starts: int = 1, seed: int = 0, method: str = "auto") -> LagrangianMax:
    """``D_p(lam) = max_theta L(pi_theta, lam)``, estimated from below by local search.

    All starts are one call of the class's hook
    :meth:`~dualgap.policies.PolicyClass.maximize_lagrangian_batch` (one tensor program by
    default; ``method`` and ``steps`` = its ``budget`` are passed to it; the default hook runs
    natural-gradient steps and/or L-BFGS, see there; a class may bring its own optimizer).
    Starts: ``theta0`` (``None``: the class's default start) and ``starts - 1`` random ones
    (``init_params(seed + k)``).
    ``steps`` caps the iterations of each start (``None``: the class's default budget).
    ``theta0`` with a small ``steps`` is the inexact, warm-started policy step of CAID.
    Returns the best start, measured here: its ``value`` is a lower estimate of ``D_p(lam)``
    and ``theta`` is the certificate.
    """
    check_compatible(problem, policy_class)
    lam_t = check_lam(problem, lam)
    _check_search(policy_class, steps, method)
    if int(starts) < 1:
        raise ValueError(f"starts: must be >= 1, got {starts!r}")
    firsts = [None if theta0 is None else policy_class.check_params(theta0).detach()]
    firsts += [policy_class.init_params(seed + k) for k in range(1, int(starts))]
    budget = None if steps is None else int(steps)
    found = _searches(problem, policy_class, lam_t.expand(len(firsts), -1), firsts, budget,
                      method)
    k = int(np.argmax([res.value for res in found]))  # the first of equal values
    best = found[k]
    best.start_values = [res.value for res in found]
    best.total_steps = sum(res.steps for res in found)
    return best


def _check_search(policy_class: PolicyClass, steps: int | None, method: str) -> None:
    """The arguments every local search of this module shares, with the field named."""
    if steps is not None and (int(steps) != steps or int(steps) < 1):
        raise ValueError(f"steps: must be a positive integer or None, got {steps!r}")
    if method not in LAGRANGIAN_METHODS:
        raise ValueError(f"method: must be one of {LAGRANGIAN_METHODS}, got {method!r}")
    if method == "natural" and not policy_class.has_score_step:
        raise ValueError(f"method: 'natural' is not available for {policy_class!r}")


def _searches(problem: AlignmentProblem, policy_class: PolicyClass, lams: torch.Tensor,
              theta0s: list, budget: int | None, method: str) -> list[LagrangianMax]:
    """One batched call of the class's hook, each search measured here (one start each)."""
    out = []
    runs = policy_class.maximize_lagrangian_batch(lams, theta0s, budget, method=method,
                                                  problem=problem)
    for lam_t, (theta, n) in zip(lams, runs, strict=True):
        theta = policy_class.check_params(theta).detach()
        with torch.no_grad():
            J, s = policy_terms(problem, policy_class, theta)
            val = float(J + lam_t @ s)
        out.append(LagrangianMax(value=val, theta=theta.clone(), policy=policy_class.policy(theta),
                                 steps=int(n), objective=float(J), slack=s.numpy().copy(),
                                 lam=lam_t.numpy().copy(), start_values=[val],
                                 total_steps=int(n)))
    return out


@with_small_threads
def lagrangian_max_batch(problem: AlignmentProblem, policy_class: PolicyClass, lams: list,
                         theta0s: list | None = None, steps: int | None = None,
                         method: str = "auto") -> list[LagrangianMax]:
    """Many one-start :func:`lagrangian_max` searches as one batched call of the class's hook
    :meth:`~dualgap.policies.PolicyClass.maximize_lagrangian_batch`: search ``k`` maximizes
    ``L(pi_theta, lams[k])`` from ``theta0s[k]`` (``None``: the class's start), and its result
    is what ``lagrangian_max(problem, policy_class, lams[k], theta0s[k], steps, method=method)``
    returns (the same algorithm per search; only the evaluations are shared)."""
    check_compatible(problem, policy_class)
    theta0s = [None] * len(lams) if theta0s is None else list(theta0s)
    if len(theta0s) != len(lams):
        raise ValueError(f"theta0s: {len(theta0s)} starts for {len(lams)} multipliers")
    _check_search(policy_class, steps, method)
    if not lams:
        return []
    lam_t = torch.stack([check_lam(problem, lam) for lam in lams])
    firsts = [None if th is None else policy_class.check_params(th).detach() for th in theta0s]
    return _searches(problem, policy_class, lam_t, firsts, None if steps is None else int(steps),
                     method)


def cut(problem: AlignmentProblem, policy_class: PolicyClass,
        theta: torch.Tensor) -> tuple[float, np.ndarray]:
    """``(J(theta), s(theta))``: the cut ``lam -> J + lam^T s <= D_p(lam)`` of a parameter."""
    with torch.no_grad():
        J, s = policy_terms(problem, policy_class, theta)
    return float(J), s.numpy().copy()

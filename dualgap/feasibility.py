"""Feasibility of the constraints on the reference support, with certificates.

For any policy ``pi`` on the support and weights ``w >= 0``::

    w^T E_rho E_pi h  <=  E_rho max_{y in supp(x)} w^T h(x, y)  =: ray_bound(w)

so ``ray_bound(w) < 0`` for some ``w >= 0`` *proves* that no policy meets the constraints
(``w`` is the certificate: along ``lam = t w`` the dual falls like ``t * ray_bound(w)``).
The exact margin ``t* = max_pi min_i E_rho E_pi h_i`` (``> 0``: Slater holds; ``= 0``: feasible
only on the boundary; ``< 0``: infeasible) is a linear program solved with HiGHS.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .problem import AlignmentProblem

__all__ = [
    "InfeasibleError",
    "attainable_maxima",
    "ray_bound",
    "FeasibilityMargin",
    "feasibility_margin",
    "mixture_margin",
    "certify_slater",
    "maximizer_slacks",
    "BoundaryFeasibleWarning",
    "LP_MAX_ENTRIES",
]


#: Above this many support entries the exact LP margin is skipped (the mixture certificate
#: almost always suffices; the warning says so when it does not).
LP_MAX_ENTRIES = 2_000_000


class BoundaryFeasibleWarning(UserWarning):
    """The constraints can be met, but not strictly: lam* is unbounded (no Slater point)."""


class InfeasibleError(ValueError):
    """No policy on the reference support meets the constraints.

    Attributes:
        weights: ``w >= 0`` with ``ray_bound(w) < 0`` (the certificate), shape ``(m,)``.
        bound: ``ray_bound(w)``, the largest value of ``w^T E h`` any policy attains.
        maxima: ``max_pi E_rho E_pi h_i`` for each constraint alone, shape ``(m,)``.
    """

    def __init__(
        self, problem: AlignmentProblem, weights: np.ndarray, bound: float, maxima: np.ndarray
    ) -> None:
        self.weights = np.asarray(weights, dtype=float)
        self.bound = float(bound)
        self.maxima = np.asarray(maxima, dtype=float)
        names = problem.names
        lines = ["no policy on the reference support satisfies the constraints."]
        bad = [i for i in range(len(self.maxima)) if self.maxima[i] < 0]
        for i in bad:
            lines.append(
                f"  constraint {i} ({names[i]}): best attainable E h = {self.maxima[i]:.6g} < 0 "
                f"(threshold {problem.thresholds[i]:.6g} is {-self.maxima[i]:.6g} out of reach)"
            )
        if not bad:
            combo = " + ".join(
                f"{w:.4g}*E h[{names[i]}]" for i, w in enumerate(self.weights) if w > 0
            )
            lines.append(
                "  each constraint alone is attainable (best E h: "
                + ", ".join(f"{n} {v:.4g}" for n, v in zip(names, self.maxima, strict=True))
                + f") but not jointly: every policy has {combo} <= {self.bound:.6g} < 0"
            )
        super().__init__("\n".join(lines))


def _support_max(problem: AlignmentProblem, values: np.ndarray) -> np.ndarray:
    """``max_{y in supp(x)} values(x, y)`` per prompt, shape ``(X,)``."""
    return np.where(problem.support, values, -np.inf).max(axis=1)


def _check_problem(problem: object) -> None:
    if not isinstance(problem, AlignmentProblem):
        raise ValueError(f"problem: expected an AlignmentProblem, got {type(problem).__name__}")


def attainable_maxima(problem: AlignmentProblem) -> np.ndarray:
    """``max_pi E_rho E_pi h_i = E_rho max_{y in supp} h_i``, one constraint at a time, ``(m,)``."""
    _check_problem(problem)
    rho, c = problem.prompt_weights, problem.offsets
    return np.array(
        [
            rho @ _support_max(problem, problem.utilities[i]) - c[i]
            for i in range(problem.num_constraints)
        ]
    )


def ray_bound(problem: AlignmentProblem, weights: object) -> float:
    """``E_rho max_{y in supp} w^T h(x, y)``: an upper bound on ``w^T E_rho E_pi h``."""
    _check_problem(problem)
    from .problem import as_real_array

    w = as_real_array("weights", weights).reshape(-1)
    if not np.isfinite(w).all():
        raise ValueError(f"weights: must be finite, got {w.tolist()}")
    if w.shape != (problem.num_constraints,) or (w < 0).any():
        raise ValueError(f"weights: need shape ({problem.num_constraints},) and >= 0, got {w!r}")
    wg = np.tensordot(w, problem.utilities, axes=1)  # size = (X, Y)
    return float(problem.prompt_weights @ _support_max(problem, wg) - w @ problem.offsets)


def mixture_margin(slacks: np.ndarray) -> tuple[float, np.ndarray]:
    """``max_a min_i (S a)_i`` over mixtures ``a`` of candidate policies with slacks ``S``.

    ``slacks`` has shape ``(K, m)`` (one row per candidate policy).  Mixing policies mixes their
    slacks linearly, so a positive value certifies strict feasibility (Slater).
    """
    from scipy.optimize import linprog

    from .problem import as_real_array

    S = as_real_array("slacks", slacks)
    if S.ndim != 2 or 0 in S.shape:
        raise ValueError(f"slacks: expected shape (K, m) with K, m >= 1, got {S.shape}")
    if not np.isfinite(S).all():
        raise ValueError("slacks: non-finite value")
    K, m = S.shape
    unit = max(float(np.abs(S).max()), 1e-300)  # HiGHS prefers O(1) coefficients
    S = S / unit
    # variables (a_1..a_K, t): maximize t  s.t.  t - S^T a <= 0, sum a = 1, a >= 0
    cost = np.zeros(K + 1)
    cost[-1] = -1.0
    A_ub = np.hstack([-S.T, np.ones((m, 1))])
    res = linprog(
        cost,
        A_ub=A_ub,
        b_ub=np.zeros(m),
        A_eq=np.append(np.ones(K), 0.0)[None],
        b_eq=[1.0],
        bounds=[(0, None)] * K + [(None, None)],
        method="highs",
    )
    if res.status != 0:  # pragma: no cover - a bounded feasible LP
        raise RuntimeError(f"mixture LP failed: {res.message}")
    return float(res.x[-1]) * unit, res.x[:-1]


@dataclass(frozen=True)
class FeasibilityMargin:
    """``t* = max_pi min_i E_rho E_pi h_i``, a maximizing policy and the dual weights ``w``."""

    margin: float
    policy: np.ndarray
    weights: np.ndarray


def feasibility_margin(problem: AlignmentProblem) -> FeasibilityMargin:
    """Solve the linear program ``max_{pi, t} t  s.t.  E_rho E_pi h_i >= t`` exactly (HiGHS).

    Variables are the policy entries on the support (plus ``t``); one equality per prompt.
    The constraint duals ``w`` satisfy ``ray_bound(w) = t*`` (LP duality).
    """
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix

    _check_problem(problem)
    m = problem.num_constraints
    if m == 0:
        return FeasibilityMargin(np.inf, problem.reference.copy(), np.zeros(0))
    xs, ys = np.nonzero(problem.support)
    n = xs.size
    rho = problem.prompt_weights
    coef = rho[xs][None, :] * problem.utilities[:, xs, ys]  # size = (m, n)
    # -coef pi + t <= -c
    A_ub = csr_matrix(np.hstack([-coef, np.ones((m, 1))]))
    # one row per prompt: sum_y pi(x, y) = 1 (xs is sorted: row x's entries are contiguous)
    A_eq = csr_matrix((np.ones(n), np.arange(n), np.searchsorted(xs, np.arange(
        problem.num_prompts + 1))), shape=(problem.num_prompts, n + 1))
    cost = np.zeros(n + 1)
    cost[-1] = -1.0
    bounds = np.zeros((n + 1, 2))  # pi >= 0, t free: as an array, not n + 1 Python pairs
    bounds[:, 1] = np.inf
    bounds[-1, 0] = -np.inf
    res = linprog(
        cost,
        A_ub=A_ub,
        b_ub=-problem.offsets,
        A_eq=A_eq,
        b_eq=np.ones(problem.num_prompts),
        bounds=bounds,
        method="highs",
    )
    if res.status != 0:  # pragma: no cover - a bounded feasible LP
        raise RuntimeError(f"feasibility LP failed: {res.message}")
    pi = np.zeros_like(problem.reward)
    pi[xs, ys] = res.x[:n]
    w = -np.asarray(res.ineqlin.marginals)
    return FeasibilityMargin(float(res.x[-1]), pi, np.maximum(w, 0.0))


def maximizer_slacks(problem: AlignmentProblem) -> np.ndarray:
    """Row ``i``: the slack ``E_rho h(x, y_i(x))`` of the deterministic maximizer ``y_i(x)`` of
    ``h_i`` on the support, shape ``(m, m)`` (candidates for :func:`certify_slater`)."""
    _check_problem(problem)
    rho, g, c, sup = problem.prompt_weights, problem.utilities, problem.offsets, problem.support
    rows = []
    for i in range(problem.num_constraints):
        best = np.argmax(np.where(sup, g[i], -np.inf), axis=1)  # size = (X,)
        rows.append(rho @ g[:, np.arange(problem.num_prompts), best].T - c)
    return np.array(rows).reshape(problem.num_constraints, problem.num_constraints)


def certify_slater(
    problem: AlignmentProblem | Callable[[], AlignmentProblem],
    slack: np.ndarray,
    maxima: np.ndarray,
    ftol: float,
    witnesses: np.ndarray | None = None,
    support_entries: int | None = None,
) -> tuple[bool | None, float | None, bool]:
    """Certify strict feasibility (Slater) near a solution: ``(strictly, margin, unbounded)``.

    Candidates: the solution's policy (whose ``slack`` is given) and the deterministic maximizer
    of each ``h_i`` (``witnesses``, default :func:`maximizer_slacks`); a strictly feasible
    candidate or mixture of candidates (LP) certifies Slater, and the exact LP margin
    (:func:`feasibility_margin`) decides the rest (skipped with a warning above
    :data:`LP_MAX_ENTRIES` support entries).  ``ftol`` is the zero of the margin.  ``problem``
    may be a function returning it, called only when the problem itself is needed (the
    witnesses or the exact LP); ``support_entries`` then says how many support entries it has.
    """
    if (maxima <= ftol).any():  # one constraint can only be met with equality
        return False, float(maxima.min()), True

    def get() -> AlignmentProblem:
        return problem() if callable(problem) else problem

    if witnesses is None:
        witnesses = maximizer_slacks(get())
    S = np.vstack([slack[None, :], witnesses])  # size = (K, m)
    # cheap certificates first: one candidate, or the uniform mixture, strictly feasible
    margin = max(float(S.min(axis=1).max()), float(S.mean(axis=0).min()))
    if margin <= ftol:
        margin, _ = mixture_margin(S)
    if margin > ftol:
        return True, margin, False
    if support_entries is None:
        support_entries = int(get().support.sum())
    if support_entries > LP_MAX_ENTRIES:
        warnings.warn(
            "could not certify strict feasibility cheaply and the instance is too large for the "
            "exact LP margin; Slater is undecided",
            BoundaryFeasibleWarning,
            stacklevel=3,
        )
        return None, None, False
    exact_problem = get()
    exact = feasibility_margin(exact_problem)
    if exact.margin > ftol:
        return True, exact.margin, False
    if exact.margin < -ftol:  # pragma: no cover - the Newton loop raises first
        raise InfeasibleError(exact_problem, exact.weights, ray_bound(exact_problem, exact.weights),
                              maxima)
    return False, exact.margin, True

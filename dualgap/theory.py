"""The constants and statements of docs/theory.md as functions (the paper's symbols live here).

Constants (``K(lam) = M + beta + M ||lam||_1`` is the factor that recurs in every bound)::

    M        = max over the support of |r| and |h_i|                    (problem.score_bound)
    L_D      = (1 / (4 beta)) E_rho diam_x^2  >=  lambda_max(hess D(lam)) for all lam
    mu*_D    = lambda_min(hess D(lam*))
    lam*_nu  = argmin_{lam >= 0} D(lam) - M nu ||lam||_1 = lam* of the problem tightened by M nu

Statements (rebuilt from the proofs; docs/theory.md: check them, not trust them)::

    Lemma 3    0 <= D(lam) - D_p(lam) <= K(lam) nu
    Theorem 1  0 <= D*_p - P*_p <= K(lam*_nu) nu        (some theta strictly feasible, margin M nu)
    Theorem 2  -K(lam*_p) nu <= D*_p - P* <= K(lam*_nu) nu
    Lemma 4    ||lam*_p - lam*||_2 <= sqrt(2 K(lam*_p) nu / mu*_D)    (A5: mu_seg >= mu*_D)
               ||lam*_p - lam*||_2 <= sqrt(2 K(lam*_p) nu / mu_seg)   (always; the segment form)
    Lemma 5    ||eps*_p(lam*_p) - eps*(lam*_p)||_2 <= sqrt(2 L_D K(lam*_p) nu)
    SDD        D_p(lam_best) <= D*_p + eta S^2 / 2 + eps_app

Theorems 3-4 have no recovered constants: :func:`optimality_gaps` measures them and
:func:`fit_slope` gives their log-log slope against ``nu``.

A bound check compares a measured quantity with the bound's value (:func:`bound_holds`);
:func:`dualgap.report.gap_report` measures every quantity and checks every statement.
``holds`` allows a float rounding tolerance of ``FLOAT_TOL * (1 + |terms|)`` and nothing else;
every row says on which side each estimate errs and whether that makes the check harder or easier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .dual import constraint_slack, dual_hessian, objective
from .feasibility import InfeasibleError
from .problem import AlignmentProblem

__all__ = [
    "FLOAT_TOL",
    "bound_holds",
    "lowerbound_holds",
    "score_bound",
    "smoothness_bound",
    "dual_curvature",
    "gap_constant",
    "tightened_multiplier",
    "TightenedDual",
    "lemma1_curvature",
    "lemma3_bounds",
    "theorem1_bounds",
    "theorem1_assumption",
    "theorem2_bounds",
    "lemma4_bound",
    "lemma4_segment_bound",
    "lemma5_bound",
    "dual_descent_bound",
    "optimality_gaps",
    "OptimalityGaps",
    "fit_slope",
]

#: relative float-rounding tolerance of every ``holds`` test (not a widening of any bound)
FLOAT_TOL = 1e-12


# ---------------------------------------------------------------------------- constants
def score_bound(problem: AlignmentProblem) -> float:
    """``M = max_{(x, y) in supp} max(|r(x, y)|, max_i |h_i(x, y)|)``."""
    return float(problem.score_bound)


def smoothness_bound(problem: AlignmentProblem) -> float:
    """``L_D = (1 / (4 beta)) E_rho diam_x^2 >= lambda_max(hess D(lam))`` for every ``lam``.

    ``diam_x = max_{y, y' in supp(x)} ||g(x, y) - g(x, y')||_2``.  Proof: ``hess D =
    (1/beta) E_rho Cov_{pi_lam}(g)`` and for a unit ``u``, ``u^T Cov(g) u = Var(u^T g) <=
    (max_y u^T g - min_y u^T g)^2 / 4 <= diam_x^2 / 4`` (Popoviciu); ``lambda_max`` of a
    weighted sum is at most the weighted sum of ``lambda_max``.  (Never above ``m M^2 / beta``.)
    """
    m = problem.num_constraints
    if m == 0:
        return 0.0
    sup = problem.support
    total = 0.0
    for x in range(problem.num_prompts):
        G = problem.utilities[:, x, sup[x]].T  # size = (n_x, m)
        sq = (G * G).sum(1)
        d2 = sq[:, None] + sq[None, :] - 2.0 * G @ G.T  # size = (n_x, n_x)
        total += problem.prompt_weights[x] * max(float(d2.max()), 0.0)
    return total / (4.0 * problem.beta)


def dual_curvature(problem: AlignmentProblem, lam: object = None) -> float:
    """``mu*_D = lambda_min(hess D(lam))`` at ``lam`` (default: ``lam*`` from the exact solve)."""
    if problem.num_constraints == 0:
        return math.inf
    if lam is None:
        from .solver import solve

        lam = solve(problem).lam
    return float(np.linalg.eigvalsh(dual_hessian(problem, lam))[0])


def gap_constant(problem: AlignmentProblem, lam: object, nu: float) -> float:
    """``K(lam) nu = (M + beta + M ||lam||_1) nu``."""
    lam_a = np.asarray(lam, dtype=np.float64).reshape(-1)
    if not nu >= 0:
        raise ValueError(f"nu: must be >= 0, got {nu!r}")
    M = problem.score_bound
    return (M + problem.beta + M * float(np.abs(lam_a).sum())) * float(nu)


@dataclass
class TightenedDual:
    """``lam*_nu`` = the multiplier of the problem tightened by ``eps = M nu``.

    ``feasible`` is False (and ``lam`` None) when no policy meets ``E h >= M nu``: then the
    assumption of Theorems 1-2 fails and their upper bounds are undefined.
    """

    eps: float
    feasible: bool
    lam: np.ndarray | None
    primal_value: float | None


def tightened_multiplier(problem: AlignmentProblem, nu: float) -> TightenedDual:
    """``lam*_nu = argmin_{lam >= 0} D(lam) - M nu ||lam||_1``: the exact ``lam*`` of
    ``problem.tightened(M nu)`` (its dual is ``D(lam) - lam^T (M nu 1)``)."""
    import warnings

    from .solver import BoundaryFeasibleWarning, solve

    if not nu >= 0:
        raise ValueError(f"nu: must be >= 0, got {nu!r}")
    eps = problem.score_bound * float(nu)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", BoundaryFeasibleWarning)
            sol = solve(problem.tightened(eps))
    except (InfeasibleError, BoundaryFeasibleWarning):
        return TightenedDual(eps, False, None, None)
    return TightenedDual(eps, True, sol.lam, sol.primal_value)


# --------------------------------------------------------------------------- statements
def lemma1_curvature(problem: AlignmentProblem, lams: list) -> tuple[float, float]:
    """``(max_k lambda_max(hess D(lam_k)), min_k lambda_min(hess D(lam_k)))`` over ``lams``:
    Lemma 1 says the first is ``<= L_D`` and the second ``>= 0``."""
    top, bottom = -math.inf, math.inf
    for lam in lams:
        ev = np.linalg.eigvalsh(dual_hessian(problem, lam))
        top, bottom = max(top, float(ev[-1])), min(bottom, float(ev[0]))
    return top, bottom


def lemma3_bounds(problem: AlignmentProblem, lam: object, nu: float) -> tuple[float, float]:
    """Lemma 3: ``0 <= D(lam) - D_p(lam) <= K(lam) nu``; returns ``(0, K(lam) nu)``."""
    return 0.0, gap_constant(problem, lam, nu)


def theorem1_bounds(problem: AlignmentProblem, nu: float,
                    lam_nu: object | None) -> tuple[float, float]:
    """Theorem 1: ``0 <= D*_p - P*_p <= K(lam*_nu) nu``; ``inf`` when ``lam*_nu`` is undefined."""
    return 0.0, (math.inf if lam_nu is None else gap_constant(problem, lam_nu, nu))


def theorem1_assumption(problem: AlignmentProblem, nu: float, margin: float) -> bool:
    """Theorem 1's feasibility assumption, checked: some theta has ``min_i E h_i >= M nu + xi``
    with ``xi > 0``, i.e. the measured Slater ``margin`` of a found theta exceeds ``M nu``."""
    return bool(margin > problem.score_bound * nu)


def theorem2_bounds(problem: AlignmentProblem, nu: float, lam_p: object,
                    lam_nu: object | None) -> tuple[float, float]:
    """Theorem 2: ``-K(lam*_p) nu <= D*_p - P* <= K(lam*_nu) nu``."""
    upper = math.inf if lam_nu is None else gap_constant(problem, lam_nu, nu)
    return -gap_constant(problem, lam_p, nu), upper


def lemma4_bound(problem: AlignmentProblem, nu: float, lam_p: object, mu: float) -> float:
    """Lemma 4: ``||lam*_p - lam*||_2 <= sqrt(2 K(lam*_p) nu / mu*_D)`` (``inf`` if mu <= 0)."""
    if not mu > 0:
        return math.inf
    return math.sqrt(2.0 * gap_constant(problem, lam_p, nu) / mu)


def lemma4_segment_bound(problem: AlignmentProblem, nu: float, lam_p: object,
                         mu_seg: float) -> float:
    """Lemma 4, segment form: ``||lam*_p - lam*||_2 <= sqrt(2 K(lam*_p) nu / mu_seg)`` with
    ``mu_seg`` = :func:`dualgap.assumptions.segment_curvature` on ``[lam*, lam*_p]`` (``inf`` if
    mu_seg <= 0)."""
    return lemma4_bound(problem, nu, lam_p, mu_seg)








def lemma5_bound(problem: AlignmentProblem, nu: float, lam_p: object, L_D: float) -> float:
    """Lemma 5: ``||eps*_p(lam*_p) - eps*(lam*_p)||_2 <= sqrt(2 L_D K(lam*_p) nu)``."""
    return math.sqrt(2.0 * L_D * gap_constant(problem, lam_p, nu))


def dual_descent_bound(eta: float, S: float, eps_app: float) -> float:
    """Stochastic dual descent, best iterate: ``D_p(lam_best) - D*_p <= eta S^2 / 2 + eps_app``."""
    for name, v in (("eta", eta), ("S", S), ("eps_app", eps_app)):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name}: must be a finite float >= 0, got {v!r}")
    return eta * S * S / 2.0 + eps_app


@dataclass
class OptimalityGaps:
    """Reward and constraint optimality of a policy against ``pi*`` (Theorems 3-4).

    Attributes:
        reward_gap: ``J(pi) - P*`` (``J`` = the regularized reward ``E_rho E_pi[r - beta
            log(pi / pi_ref)]``); may be positive for an infeasible ``pi``.
        violation: ``||[-E_rho E_pi h]_+||_2`` (0 when feasible).
        slack_distance: ``||E_rho E_pi h - E_rho E_{pi*} h||_2``.
        slack: ``E_rho E_pi h``.
    """

    reward_gap: float
    violation: float
    slack_distance: float
    slack: np.ndarray


def optimality_gaps(problem: AlignmentProblem, policy: np.ndarray,
                    solution: object = None) -> OptimalityGaps:
    """:class:`OptimalityGaps` of ``policy`` (``solution``: a :class:`~dualgap.DualSolution`;
    solved exactly if not given)."""
    if solution is None:
        from .solver import solve

        solution = solve(problem)
    s = constraint_slack(problem, policy)
    return OptimalityGaps(
        reward_gap=objective(problem, policy) - solution.primal_value,  # type: ignore[attr-defined]
        violation=float(np.linalg.norm(np.maximum(-s, 0.0))),
        slack_distance=float(np.linalg.norm(s - solution.slack)),  # type: ignore[attr-defined]
        slack=s,
    )


def fit_slope(nu: object, gap: object, floor: float = 1e-13) -> tuple[float, float]:
    """Least-squares ``log |gap| = a + slope log nu`` over the points with both above
    ``floor``; returns ``(slope, a)`` (``nan`` with fewer than two points)."""
    x = np.asarray(nu, dtype=np.float64).reshape(-1)
    y = np.abs(np.asarray(gap, dtype=np.float64).reshape(-1))
    if x.shape != y.shape:
        raise ValueError(f"gap: shape {y.shape} does not match nu {x.shape}")
    ok = (x > floor) & (y > floor) & np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return math.nan, math.nan
    slope, a = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return float(slope), float(a)


def bound_holds(measured: float, bound: float | None, lower: float | None) -> bool:
    """``lower <= measured <= bound`` (either side optional) up to float rounding
    ``FLOAT_TOL * (1 + |measured| + |bound|)``: the comparison every check here uses."""
    tol = FLOAT_TOL * (1.0 + abs(measured) + (abs(bound) if bound is not None and
                                               math.isfinite(bound) else 0.0))
    ok = True
    if bound is not None:
        ok &= measured <= bound + tol
    if lower is not None:
        ok &= measured >= lower - tol
    return bool(ok)


def lowerbound_holds(with_lower: float, with_point: float, lower: float,
                     dual: object) -> tuple[bool | None, str]:
    """A ``>= lower`` check on a quantity linear in ``D*_p``: True if it holds with the
    certified lower bound of ``D*_p``; None (undecided: the text says why) if only the point
    estimate passes (the bundle's resolution ``value - lower_bound`` is too coarse to decide)
    or the box is uncertified; False if it fails even with the point estimate."""
    if not dual.box_certified:  # type: ignore[attr-defined]
        return None, "undecided: box not certified, the lower bound of D*_p is not proved"
    if bound_holds(with_lower, None, lower):
        return True, ""
    if bound_holds(with_point, None, lower):
        gap = dual.value - dual.lower_bound  # type: ignore[attr-defined]
        return None, (f"undecided: holds with the D*_p point estimate, not with its certified "
                      f"lower bound (bundle resolution {gap:.2g})")
    return False, "fails even with the D*_p point estimate"


def __getattr__(name: str):
    """``from dualgap.theory import gap_report`` (and ``gap_sweep``, ``GapRow``, ``GapReport``)
    keeps working: they live in :mod:`dualgap.report`, imported on first use (no import cycle:
    the report uses this module, not the other way round at import time)."""
    if name in ("gap_report", "gap_sweep", "GapRow", "GapReport"):
        from . import report

        return getattr(report, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

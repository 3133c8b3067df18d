"""The constants and statements of docs/theory.md as functions, and :func:`gap_report`.

Constants (``K(lam) = M + beta + M ||lam||_1`` is the factor that recurs in every bound)::

    M        = max over the support of |r| and |h_i|                    (problem.score_bound)
    L_D      = (1 / (4 beta)) E_rho diam_x^2  >=  lambda_max(hess D(lam)) for all lam
    mu*_D    = lambda_min(hess D(lam*))
    lam*_nu  = argmin_{lam >= 0} D(lam) - M nu ||lam||_1 = lam* of the problem tightened by M nu

Statements (rebuilt from the proofs; docs/theory.md: check them, not trust them)::

    Lemma 3    0 <= D(lam) - D_p(lam) <= K(lam) nu
    Theorem 1  0 <= D*_p - P*_p <= K(lam*_nu) nu        (some theta strictly feasible, margin M nu)
    Theorem 2  -K(lam*_p) nu <= D*_p - P* <= K(lam*_nu) nu
    Lemma 4    ||lam*_p - lam*||_2 <= sqrt(2 K(lam*_p) nu / mu*_D)
    Lemma 5    ||eps*_p(lam*_p) - eps*(lam*_p)||_2 <= sqrt(2 L_D K(lam*_p) nu)
    SDD        D_p(lam_best) <= D*_p + eta S^2 / 2 + eps_app

Theorems 3-4 have no recovered constants: :func:`optimality_gaps` measures them and
:func:`fit_slope` gives their log-log slope against ``nu``.

A bound check compares a measured quantity with the bound's value.  ``holds`` allows a float
rounding tolerance of ``FLOAT_TOL * (1 + |terms|)`` and nothing else; every row says on which
side each estimate errs and whether that makes the check harder or easier.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .dual import constraint_slack, dual_hessian, dual_value, objective
from .feasibility import InfeasibleError
from .problem import AlignmentProblem

__all__ = [
    "FLOAT_TOL",
    "bound_holds",
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
    "lemma5_bound",
    "dual_descent_bound",
    "optimality_gaps",
    "OptimalityGaps",
    "fit_slope",
    "GapRow",
    "GapReport",
    "gap_report",
    "gap_sweep",
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


# ------------------------------------------------------------------------------ report
@dataclass
class GapRow:
    """One statement checked: ``lower <= measured <= bound`` (either side may be None).

    ``holds`` is None when there is nothing to compare (measurement-only rows, or an
    assumption that fails so the statement says nothing).  ``sides`` says how each estimate
    errs and whether that makes this check harder or easier.
    """

    statement: str
    quantity: str
    measured: float
    bound: float | None = None
    lower: float | None = None
    holds: bool | None = None
    sides: str = ""
    note: str = ""

    def to_dict(self) -> dict:
        return {k: _json_num(v) for k, v in self.__dict__.items()}


def _json_num(v: object) -> object:
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(v, np.ndarray):
        return [_json_num(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_json_num(x) for x in v]
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


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


@dataclass
class GapReport:
    """Everything :func:`gap_report` measured (``str()`` is a table; :meth:`to_json`)."""

    problem: str
    policy_class: str
    quantities: dict
    rows: list[GapRow]
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def all_hold(self) -> bool:
        """Whether every checkable row holds."""
        return all(r.holds is not False for r in self.rows)

    def failures(self) -> list[GapRow]:
        return [r for r in self.rows if r.holds is False]

    def row(self, statement: str, quantity: str | None = None) -> GapRow:
        """The row named ``statement`` (and ``quantity`` when several rows share the name)."""
        hits = [r for r in self.rows if r.statement == statement
                and (quantity is None or r.quantity == quantity)]
        if not hits:
            names = sorted({r.statement for r in self.rows})
            raise ValueError(f"statement: no row {statement!r} (quantity {quantity!r}); "
                             f"known: {names}")
        return hits[0]

    def value(self, statement: str, field: str = "measured", quantity: str | None = None):
        """``row(statement, quantity).<field>`` (``measured``, ``bound``, ``lower``, ``holds``)."""
        if field not in ("measured", "bound", "lower", "holds"):
            raise ValueError(f"field: must be measured, bound, lower or holds, got {field!r}")
        v = getattr(self.row(statement, quantity), field)
        return math.nan if v is None and field != "holds" else v

    def to_dict(self) -> dict:
        return {"problem": self.problem, "policy_class": self.policy_class,
                "quantities": {k: _json_num(v) for k, v in self.quantities.items()},
                "rows": [r.to_dict() for r in self.rows], "seconds": self.seconds,
                "notes": list(self.notes), "all_hold": self.all_hold}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        def f(v: object) -> str:
            if v is None:
                return ""
            if isinstance(v, np.ndarray):
                return np.array2string(v, precision=6, separator=", ")
            if isinstance(v, bool):
                return str(v)
            if isinstance(v, (float, np.floating)):
                return f"{float(v):.6g}"
            return str(v)

        lines = [f"{self.problem}", f"policy class: {self.policy_class}", ""]
        qw = max(len(k) for k in self.quantities)
        for k, v in self.quantities.items():
            lines.append(f"  {k.ljust(qw)}  {f(v)}")
        lines.append("")
        head = ("statement", "quantity", "lower", "measured", "bound", "holds")
        table = [head] + [(r.statement, r.quantity, f(r.lower), f(r.measured), f(r.bound),
                           {True: "yes", False: "NO", None: "-"}[r.holds]) for r in self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        for k, row in enumerate(table):
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("")
        lines.append("how each estimate errs (and notes):")
        seen: dict[str, list[str]] = {}
        for r in self.rows:
            if r.sides:
                seen.setdefault(r.sides, []).append(r.statement)
        for text, who in seen.items():
            names = who[0] if len(who) == 1 else f"{who[0]} .. {who[-1]} ({len(who)} rows)"
            lines.append(f"  {names}: {text}")
        for r in self.rows:
            if r.note:
                lines.append(f"  {r.statement}: {r.note}")
        for n in self.notes:
            lines.append(f"note: {n}")
        lines.append(f"({self.seconds:.1f} s)")
        return "\n".join(lines)


_NU_SIDE = "nu: upper estimate (easier)"
_NU_NOTE = ("nu is an upper estimate for each target (the fitted theta is a witness), which "
            "makes every bound in nu easier to satisfy; it is fitted to the gap criterion "
            "itself to keep it small, and it is a max over finitely many targets pi_lam")


def gap_report(problem: AlignmentProblem, policy_class: object, *, starts: int | None = None,
               seed: int = 0, tol: float = 1e-8, grid: tuple[float, ...] = (0.0, 0.5, 1.5, 2.0),
               cvxpy_check: bool = True, fit_steps: int = 300) -> GapReport:
    """Measure ``P*, D*, P*_p, D*_p, lam*, lam*_p, nu`` and check every statement of docs/theory.md.

    ``D_p(lam)`` for Lemma 3 is the best of two local searches, warm-started at the bundle's
    best theta and at the fit witness of ``pi_lam`` (so the upper side of Lemma 3 is then
    guaranteed by its own proof: ``D - L(theta_fit) <= K(lam) nu(lam)``; a failure would mean
    a bug).  Targets of ``nu``: ``pi_lam`` for ``lam`` in ``{s lam* : s in grid} + {lam*, lam*_p,
    lam*_nu}`` (``lam*_nu`` depends on ``nu``: it is computed from the ``nu`` of the other
    targets, its own target added, and recomputed once if ``nu`` grew).
    """
    from .gaps import (
        lagrangian_max,
        parametrization_gap,
        parametrized_dual,
        parametrized_primal,
        refine_dual,
    )
    from .policies import PolicyClass, small_problem_threads
    from .solver import solve

    if not isinstance(policy_class, PolicyClass):
        raise ValueError(f"policy_class: expected a PolicyClass, got "
                         f"{type(policy_class).__name__}")
    t0 = time.perf_counter()
    notes: list[str] = []
    with small_problem_threads(problem):
        sol = solve(problem)
        m = problem.num_constraints
        M, beta = problem.score_bound, problem.beta
        L_D = smoothness_bound(problem)
        mu = dual_curvature(problem, sol.lam)
        P_cvx = None
        if cvxpy_check:
            from .reference import solve_primal_cvxpy

            P_cvx = solve_primal_cvxpy(problem).primal_value
        dual = parametrized_dual(problem, policy_class, tol=tol, starts=starts, seed=seed)
        primal = parametrized_primal(problem, policy_class, dual, starts=starts or 1, seed=seed)
        lam_p = dual.lam
        lams = [s * sol.lam for s in grid] + [sol.lam, lam_p]
        labels = [f"{s:g} lam*" for s in grid] + ["lam*", "lam*_p"]
        gap = parametrization_gap(problem, policy_class, lams, steps=fit_steps, seed=seed)
        fits = list(gap.fits)
        nu = gap.nu
        tight = tightened_multiplier(problem, nu)
        if tight.feasible:
            extra = parametrization_gap(problem, policy_class, [tight.lam], steps=fit_steps,
                                        seed=seed)
            lams.append(tight.lam)
            labels.append("lam*_nu")
            fits.append(extra.fits[0])
            if extra.nu > nu:
                notes.append(f"nu grew from {nu:.4g} to {extra.nu:.4g} with the target "
                             "pi_{lam*_nu}; lam*_nu recomputed once with the larger nu")
                nu = extra.nu
                gap.worst = "pi_{lam*_nu}"
                tight = tightened_multiplier(problem, nu)
        # the fit witnesses are parameters too: more cuts for D_p, more primal candidates
        dual = refine_dual(problem, policy_class, dual, [f.theta for f in fits])
        lam_p = dual.lam
        for f in fits:
            primal = _with_candidate(problem, policy_class, primal, f.theta)
        nu_1 = max(f.nu_1 for f in fits)
        nu_kl = max(f.nu_kl for f in fits)
        lam_nu = tight.lam if tight.feasible else None

        rows: list[GapRow] = []
        # Lemma 1
        top, bottom = lemma1_curvature(problem, lams) if m else (0.0, 0.0)
        rows.append(GapRow("Lemma 1 (smooth)", "max_k lambda_max(hess D(lam_k))", top, bound=L_D,
                           holds=bound_holds(top, L_D, None),
                           sides="exact eigenvalues on the lam grid; L_D a proved bound"))
        rows.append(GapRow("Lemma 1 (convex)", "min_k lambda_min(hess D(lam_k))", bottom,
                           lower=0.0, holds=bound_holds(bottom, None, 0.0),
                           sides="exact eigenvalues on the lam grid"))
        # Lemma 2
        res2 = (1.0 + float(np.abs(sol.lam).sum())) * sol.kkt_residual
        gap2 = sol.dual_value - sol.primal_value
        rows.append(GapRow("Lemma 2", "D(lam^) - J(pi_lam^) (exact solve)", gap2,
                           lower=-res2, bound=res2, holds=bound_holds(gap2, res2, -res2),
                           sides="the solver's resolution: D - J = lam^T E h is within "
                                 "+-(1 + ||lam||_1) x KKT residual of 0"))
        if P_cvx is not None:
            rows.append(GapRow("Lemma 2 (cvxpy)", "D* - P*_cvxpy", sol.dual_value - P_cvx,
                               note="cvxpy/CLARABEL solves to about 1e-8; not a bound check"))
        # Lemma 3 on the grid
        lemma3_warm_won = []
        for lab, lam, fit in zip(labels, lams, fits, strict=True):
            # D_p(lam) from below: the best of a search warm-started at the bundle's best theta
            # and one warm-started at the fit witness of pi_lam (more starts: a better estimate)
            est = lagrangian_max(problem, policy_class, lam,
                                 theta0=_best_theta(problem, policy_class, dual, lam),
                                 starts=starts or 1, seed=seed)
            est_fit = lagrangian_max(problem, policy_class, lam, theta0=fit.theta, seed=seed)
            if est_fit.value > est.value + 1e-12 * (1 + abs(est.value)):
                lemma3_warm_won.append(lab)
                est = est_fit
            gap_l = dual_value(problem, lam) - est.value
            lo, up = lemma3_bounds(problem, lam, nu)
            rows.append(GapRow(f"Lemma 3 at {lab}", "D(lam) - D_p(lam)", gap_l, bound=up,
                               lower=lo, holds=bound_holds(gap_l, up, lo),
                               sides="D_p lower estimate (local search): measured gap errs "
                                     "high, harder for the upper bound, easier for >= 0; "
                                     + _NU_SIDE))
        if lemma3_warm_won:
            notes.append("Lemma 3: at " + ", ".join(lemma3_warm_won) + " the search started "
                         "from the fit witness of pi_lam beat the bundle's thetas (the plain "
                         "local search underestimates D_p there)")
        # Theorem 1
        assumption = theorem1_assumption(problem, nu, primal.margin)
        lo1, up1 = theorem1_bounds(problem, nu, lam_nu)
        if primal.found:
            d1 = dual.value - primal.value
            if not (assumption and lam_nu is not None):
                held1 = None
                note1 = (f"assumption fails: best margin found {primal.margin:.3g} <= M nu = "
                         f"{M * nu:.3g}" if not assumption else "lam*_nu undefined")
            elif bound_holds(d1, up1, None):
                held1, note1 = True, ""
            else:
                # the feasible theta's own shortfall: J(theta_f) = L(theta_f, lam*_p) - lam*_p^T s_f
                # and L <= D_p(lam*_p), so P*_p can exceed J(theta_f) by up to lam*_p^T s_f
                resolution = float(lam_p @ primal.slack) + (dual.value - dual.lower_bound)
                if d1 - up1 <= resolution * (1 + 1e-9):
                    held1 = None
                    note1 = (f"inconclusive: the excess {d1 - up1:.2g} is within the primal "
                             f"estimate's resolution lam*_p^T s(theta_f) + bundle gap = "
                             f"{resolution:.2g}")
                else:
                    held1, note1 = False, "fails beyond the estimates' resolution"
            rows.append(GapRow("Theorem 1 (upper)", "D*_p - P*_p", d1, bound=up1,
                               holds=held1, note=note1,
                               sides="P*_p lower estimate (a feasible theta): harder; D*_p "
                                     "point estimate (errs low via the inner search, high via "
                                     "the outer tolerance); " + _NU_SIDE))
            d1l = dual.lower_bound - primal.value
            held, note = _lowerbound_holds(d1l, dual.value - primal.value, lo1, dual)
            rows.append(GapRow("Theorem 1 (weak duality)", "D*_p(certified lower) - P*_p", d1l,
                               lower=lo1, holds=held, note=note,
                               sides="D*_p certified lower bound: harder; P*_p lower estimate:"
                                     " easier"))
        else:
            notes.append("no feasible theta found: P*_p unknown, Theorem 1 not checked")
        # Theorem 2
        lo2, up2 = theorem2_bounds(problem, nu, lam_p, lam_nu)
        d2 = dual.value - sol.primal_value
        note2 = ""
        if lam_nu is None:
            held2, note2 = None, "lam*_nu undefined (the problem tightened by M nu is infeasible)"
        elif bound_holds(d2, up2, None):
            held2 = True
        elif d2 - up2 <= (dual.value - dual.lower_bound) * (1 + 1e-9):
            held2 = None
            note2 = (f"inconclusive: the excess {d2 - up2:.2g} is within the bundle's resolution "
                     f"value - lower_bound = {dual.value - dual.lower_bound:.2g}")
        else:
            held2, note2 = False, "fails beyond the bundle's resolution"
        rows.append(GapRow("Theorem 2 (upper)", "D*_p - P*", d2, bound=up2, holds=held2,
                           note=note2, sides="P* exact; D*_p point estimate (errs high by at "
                           "most the bundle gap when the inner search is exact); " + _NU_SIDE))
        d2l = dual.lower_bound - sol.primal_value
        held, note = _lowerbound_holds(d2l, dual.value - sol.primal_value, lo2, dual)
        rows.append(GapRow("Theorem 2 (lower)", "D*_p(certified lower) - P*", d2l, lower=lo2,
                           holds=held, note=note,
                           sides="D*_p certified lower bound: harder; " + _NU_SIDE))
        # Lemma 4
        dist = float(np.linalg.norm(lam_p - sol.lam))
        b4 = lemma4_bound(problem, nu, lam_p, mu)
        rows.append(GapRow("Lemma 4", "||lam*_p - lam*||_2", dist, bound=b4,
                           holds=bound_holds(dist, b4, None),
                           sides="lam* exact; lam*_p the bundle estimate (error of either "
                                 "sign, about sqrt(tol / mu)); mu*_D exact; " + _NU_SIDE))
        # Lemma 5
        eps_exact = constraint_slack(problem, _pi_lam(problem, lam_p))
        d5 = float(np.linalg.norm(dual.slack - eps_exact))
        b5 = lemma5_bound(problem, nu, lam_p, L_D)
        rows.append(GapRow("Lemma 5", "||eps_p(lam*_p) - eps(lam*_p)||_2", d5, bound=b5,
                           holds=bound_holds(d5, b5, None),
                           sides="eps_p at the maximizer found (a different local maximizer "
                                 "would give a different value); L_D an upper bound: easier; "
                                 + _NU_SIDE))
        # Theorems 3-4 (measured only)
        one_shot = lagrangian_max(problem, policy_class, sol.lam,
                                  theta0=_best_theta(problem, policy_class, dual, sol.lam),
                                  starts=starts or 1, seed=seed)
        for name, pol in (("Theorem 3 (multi-shot pi_p(lam*_p))", dual.policy),
                          ("Theorem 4 (one-shot pi_p(lam*))", one_shot.policy)):
            og = optimality_gaps(problem, pol, sol)
            rows.append(GapRow(name, "J(pi) - P*", og.reward_gap,
                               note=f"compare with nu = {nu:.3g} and sqrt(nu) = "
                                    f"{math.sqrt(nu):.3g} (no constants recovered)"))
            rows.append(GapRow(name, "||[-E h]_+||_2 (violation)", og.violation))
            rows.append(GapRow(name, "||E h - E* h||_2", og.slack_distance))

    quantities = {
        "P*": sol.primal_value, "D*": sol.dual_value,
        "P*_p (lower estimate)": primal.value if primal.found else math.nan,
        "D*_p (point estimate)": dual.value, "D*_p certified lower bound": dual.lower_bound,
        "lam*": sol.lam, "lam*_p": lam_p,
        "lam*_nu": lam_nu if lam_nu is not None else math.nan,
        "nu": nu, "nu_1": nu_1, "nu_KL": nu_kl, "nu attained at": gap.worst,
        "M": M, "beta": beta, "L_D": L_D, "mu*_D": mu,
        "Slater margin found (theta)": primal.margin,
        "Theorem 1 assumption (margin > M nu)": assumption,
        "bundle converged": dual.converged, "box certified": dual.box_certified,
    }
    if P_cvx is not None:
        quantities["P* (cvxpy)"] = P_cvx
    notes.append(_NU_NOTE)
    return GapReport(problem=repr(problem), policy_class=repr(policy_class),
                     quantities=quantities, rows=rows, seconds=time.perf_counter() - t0,
                     notes=notes)


def _lowerbound_holds(with_lower: float, with_point: float, lower: float,
                 dual: object) -> tuple[bool | None, str]:
    """A ``>= lower`` check on a quantity linear in ``D*_p``: True if it holds with the
    certified lower bound of ``D*_p``; None (inconclusive) if only the point estimate passes
    (the bundle's resolution ``value - lower_bound`` is too coarse) or the box is uncertified;
    False if it fails even with the point estimate."""
    if not dual.box_certified:  # type: ignore[attr-defined]
        return None, "box not certified: the lower bound of D*_p is not proved"
    if bound_holds(with_lower, None, lower):
        return True, ""
    if bound_holds(with_point, None, lower):
        gap = dual.value - dual.lower_bound  # type: ignore[attr-defined]
        return None, (f"inconclusive: holds with the D*_p point estimate, not with its certified "
                      f"lower bound (bundle resolution {gap:.2g})")
    return False, "fails even with the D*_p point estimate"


def _with_candidate(problem, policy_class, primal, theta):
    """``primal`` improved by ``theta`` if it is feasible with a larger ``J``."""
    import dataclasses

    from .gaps import _cut

    J, s = _cut(problem, policy_class, theta)
    smin = float(s.min()) if s.size else math.inf
    margin = max(primal.margin, smin)
    if smin >= 0 and J > primal.value:
        return dataclasses.replace(primal, value=J, theta=theta.detach().clone(),
                                   policy=policy_class.policy(theta), slack=s, found=True,
                                   margin=margin)
    return dataclasses.replace(primal, margin=margin)


def _pi_lam(problem: AlignmentProblem, lam: np.ndarray) -> np.ndarray:
    from .dual import lagrangian_policy

    return lagrangian_policy(problem, lam)


def _best_theta(problem, policy_class, dual, lam):
    """The theta of the parametrized dual's highest cut at ``lam`` (a warm start)."""
    if not dual.cuts:
        return None
    vals = [J + np.asarray(lam) @ s for _, _, J, s in dual.cuts]
    return dual.thetas[int(np.argmax(vals))]


def gap_sweep(problem: AlignmentProblem, policy_classes: list, *, progress: bool = True,
              **report_kw: object) -> list[GapReport]:
    """:func:`gap_report` for each class of a family (e.g. shrinking ``nu``), with a progress
    bar; keyword arguments go to :func:`gap_report`."""
    from tqdm import tqdm

    if not policy_classes:
        raise ValueError("policy_classes: need at least one policy class")
    return [gap_report(problem, cls, **report_kw)  # type: ignore[arg-type]
            for cls in tqdm(policy_classes, desc="gap reports", disable=not progress)]

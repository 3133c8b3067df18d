"""The paper's assumptions A1, A4, A5, A6 as measured conditions, and Lemma 4 in both forms.

docs/theory.md states each assumption; here each is a number with a verdict (numpy/scipy only):

* **A1** (the utilities span ``R^m`` on the support): ``lambda_min(E_rho Cov_ref(g))`` and the
  rank of the per-prompt centred utilities on the support.  ``hess D(lam) = (1/beta) E_rho
  Cov_{pi_lam}(g)`` and ``pi_lam`` has the support of ``pi_ref``, so ``hess D`` is positive
  definite everywhere exactly when this rank is ``m``.
* **A4** (some ``theta`` strictly feasible with margin ``M nu + xi``): the margin found against
  ``M nu``.
* **A5** (``D`` is ``mu*_D``-strongly convex on a neighbourhood of ``lam*`` containing
  ``lam*_p``): ``mu*_D = lambda_min(hess D(lam*))`` against ``mu_seg = min_{lam in [lam*,
  lam*_p]} lambda_min(hess D(lam))`` (:func:`segment_curvature`).
* **A6** (some policy strictly feasible for ``E h >= eps`` for every ``eps`` on the segment
  ``[eps*(lam*_p), eps*_p(lam*_p)]``): the set of ``eps`` with a strictly feasible policy is
  convex (``E_rho E_pi h`` is linear in ``pi``), so it suffices that
  ``t*(eps) = max_pi min_i (E_rho E_pi h_i - eps_i) > 0`` at both ends (an exact LP,
  :func:`dualgap.feasibility.feasibility_margin`).

Lemma 4, for ``K(lam) = M + beta + M ||lam||_1``:

* paper form (needs A5):   ``||lam*_p - lam*||_2 <= sqrt(2 K(lam*_p) nu / mu*_D)``;
* segment form (always):   ``||lam*_p - lam*||_2 <= sqrt(2 K(lam*_p) nu / mu_seg)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .feasibility import feasibility_margin
from .problem import AlignmentProblem

__all__ = [
    "SpanCheck",
    "utility_span",
    "MarginCheck",
    "strict_feasibility_margin",
    "SegmentCurvature",
    "hessian_lipschitz",
    "segment_curvature",
    "PerturbedFeasibility",
    "perturbed_feasibility",
    "Lemma4Check",
    "lemma4_paper",
    "lemma4_segment",
]


# --------------------------------------------------------------------------------- A1
@dataclass
class SpanCheck:
    """A1 measured: ``min_eig = lambda_min(E_rho Cov_ref(g))`` and ``rank`` of the centred
    utilities ``g(x, y) - E_ref[g | x]`` stacked over the support (``met``: ``rank == m``)."""

    min_eig: float
    rank: int
    num_constraints: int
    met: bool


def utility_span(problem: AlignmentProblem, rtol: float = 1e-10) -> SpanCheck:
    """A1: do the utilities span ``R^m`` on the support?

    ``rank`` uses numpy's SVD rank with tolerance ``rtol * sigma_max``; ``min_eig`` is the
    smallest eigenvalue of ``sum_x rho(x) sum_y pi_ref(y|x) c(x, y) c(x, y)^T`` with
    ``c = g - E_ref[g | x]`` (``beta`` times ``lambda_min(hess D(0))``).
    """
    m = problem.num_constraints
    if m == 0:
        return SpanCheck(math.inf, 0, 0, True)
    g = problem.utilities  # size = (m, X, Y)
    ref = problem.reference  # size = (X, Y)
    mean = np.einsum("xy,ixy->ix", ref, g)  # size = (m, X)
    c = g - mean[:, :, None]  # size = (m, X, Y)
    w = problem.prompt_weights[:, None] * ref  # size = (X, Y)
    cov = np.einsum("xy,ixy,jxy->ij", w, c, c)  # size = (m, m)
    sup = problem.support
    rows = c[:, sup].T  # size = (n_support, m)
    rank = int(np.linalg.matrix_rank(rows, tol=None if rows.size == 0 else
                                     rtol * max(np.linalg.norm(rows, 2), 1e-300)))
    return SpanCheck(float(np.linalg.eigvalsh(cov)[0]), rank, m, rank == m)


# --------------------------------------------------------------------------------- A4
@dataclass
class MarginCheck:
    """A4 measured: ``margin`` (``min_i E_rho E_{pi_theta} h_i`` of the best theta found)
    against ``required = M nu``; ``met``: ``margin > required``.  ``margin`` is a lower
    estimate of the class's best margin and ``nu`` an upper estimate: ``met`` errs towards
    "not met"."""

    margin: float
    required: float
    met: bool


def strict_feasibility_margin(problem: AlignmentProblem, margin: float, nu: float) -> MarginCheck:
    """A4: is ``margin > M nu`` (Theorems 1-2)?"""
    if not nu >= 0:
        raise ValueError(f"nu: must be >= 0, got {nu!r}")
    required = float(problem.score_bound) * float(nu)
    return MarginCheck(float(margin), required, bool(margin > required))


# --------------------------------------------------------------------------------- A5
def prompt_diameters(problem: AlignmentProblem) -> np.ndarray:
    """``diam_x = max_{y, y' in supp(x)} ||g(x, y) - g(x, y')||_2`` per prompt, ``(X,)``."""
    sup = problem.support
    out = np.zeros(problem.num_prompts)
    for x in range(problem.num_prompts):
        G = problem.utilities[:, x, sup[x]].T  # size = (n_x, m)
        sq = (G * G).sum(1)
        d2 = sq[:, None] + sq[None, :] - 2.0 * G @ G.T  # size = (n_x, n_x)
        out[x] = math.sqrt(max(float(d2.max()), 0.0))
    return out


def hessian_lipschitz(problem: AlignmentProblem) -> float:
    """``L_H = (1 / (4 beta^2)) E_rho diam_x^3``: ``||hess D(a) - hess D(b)||_op <= L_H ||a - b||``.

    Proof: ``d/dt hess D(lam + t v) = (1/beta^2) E_rho E_{pi}[(v^T c) c c^T]`` with
    ``c = g - E_pi g``; for unit ``v, w``: ``|E[(v^T c)(w^T c)^2]| <= max |v^T c| E (w^T c)^2
    <= diam_x * diam_x^2 / 4`` (Popoviciu).  ``lambda_min`` is 1-Lipschitz in the operator norm.
    """
    d = prompt_diameters(problem)
    return float(problem.prompt_weights @ d**3) / (4.0 * problem.beta**2)


@dataclass
class SegmentCurvature:
    """``mu_seg = min_{t in [0, 1]} lambda_min(hess D(a + t (b - a)))`` measured two ways.

    Attributes:
        grid_min: the minimum over the evaluated points: an *upper* estimate of ``mu_seg``
            (exact eigenvalues at finitely many points).
        certified_lower: ``max(0, min over intervals of (f(t_k) + f(t_k+1))/2 - L |t_k+1 - t_k|
            / 2)`` with ``L = L_H ||b - a||`` (:func:`hessian_lipschitz`) after bisecting the
            intervals whose bound is lowest: a proved *lower* bound of ``mu_seg`` (``0`` is
            always one, by convexity; the Lipschitz bound is loose when ``beta`` is small).
        argmin_t: where ``grid_min`` was attained (``t`` in ``[0, 1]``).
        evaluations: Hessians evaluated.
        mu_star: ``lambda_min(hess D(a))`` (``mu*_D`` when ``a = lam*``).
    """

    grid_min: float
    certified_lower: float
    argmin_t: float
    evaluations: int
    mu_star: float
    lipschitz: float


def _segment_eigenvalues(problem: AlignmentProblem, a: np.ndarray, b: np.ndarray):
    """``ts -> lambda_min(hess D(a + t (b - a)))`` for a batch of ``t``, ``(K,)``: the core's
    Hessians (:func:`dualgap.dual.dual_hessians`, one blocked pass for the batch) and one
    batched ``eigvalsh``."""
    from .dual import dual_hessians

    def lam_min(ts: object) -> np.ndarray:
        t = np.atleast_1d(np.asarray(ts, dtype=np.float64))
        return np.linalg.eigvalsh(dual_hessians(problem, a + t[:, None] * (b - a)))[:, 0]

    return lam_min


#: midpoints of the bisection evaluated ahead in one batch, at most
AHEAD = 256


def segment_curvature(problem: AlignmentProblem, lam_a: object, lam_b: object, *,
                      points: int = 201, budget: int = 2000) -> SegmentCurvature:
    """``mu_seg`` on the segment ``[lam_a, lam_b]``: a grid of ``points`` then bisection.

    The grid minimum errs high; ``certified_lower`` (Lipschitz continuity of ``hess D``)
    errs low.  Bisection (at most ``budget`` Hessians in all) splits the interval with the
    lowest certified bound until that bound is within ``1e-3 (1 + grid_min)`` of the grid
    minimum or the budget is spent.  The bisection is sequential, but its midpoints are
    evaluated ahead in batches (:data:`AHEAD`, one :func:`dualgap.dual.dual_hessians` pass
    each): when it needs a midpoint not yet known, that one and the midpoints of every
    interval still below the stopping bound are evaluated at once (the same values and the
    same sequence of splits as one at a time; ``evaluations`` counts the Hessians the
    bisection used).  Each Hessian is :func:`dualgap.dual.dual_hessian`'s at that point.
    """
    a = np.asarray(lam_a, dtype=np.float64).reshape(-1)
    b = np.asarray(lam_b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape or a.shape != (problem.num_constraints,):
        raise ValueError(f"lam_a, lam_b: need shape ({problem.num_constraints},), got "
                         f"{a.shape} and {b.shape}")
    for name, lam in (("lam_a", a), ("lam_b", b)):
        if not (np.isfinite(lam).all() and (lam >= 0).all()):
            raise ValueError(f"{name}: multipliers must be finite and >= 0, got {lam.tolist()}")
    if points < 2:
        raise ValueError(f"points: must be >= 2, got {points!r}")
    if budget < points:
        raise ValueError(f"budget: must be >= points = {points}, got {budget!r}")
    length = float(np.linalg.norm(b - a))
    L = hessian_lipschitz(problem) * length
    lam_min = _segment_eigenvalues(problem, a, b)
    ts = list(np.linspace(0.0, 1.0, points))
    fs = [float(f) for f in lam_min(ts)]
    grid_min = min(fs)
    # intervals (lower bound, t0, f0, t1, f1); bisect the lowest
    iv = [((f0 + f1) / 2 - L * (t1 - t0) / 2, t0, f0, t1, f1)
          for t0, f0, t1, f1 in zip(ts[:-1], fs[:-1], ts[1:], fs[1:], strict=True)]
    lows = np.full(budget, np.inf)  # iv[i][0], for argmin (the first lowest, as min)
    lows[:len(iv)] = [v[0] for v in iv]
    evals = points
    ahead: dict[float, float] = {}  # midpoints evaluated ahead, in batches

    def at_midpoint(tm: float, stop: float) -> float:
        if tm not in ahead:  # this midpoint and those of every interval still below stop
            want = [tm] + [0.5 * (v[1] + v[3]) for v, low in zip(iv, lows, strict=False)
                           if low < stop]
            want = list(dict.fromkeys(w for w in want if w not in ahead))
            want = want[:max(1, min(AHEAD, budget - evals))]
            ahead.update(zip(want, (float(f) for f in lam_min(want)), strict=True))
        return ahead.pop(tm)

    while evals < budget and L > 0:
        k = int(np.argmin(lows[:len(iv)]))
        low, t0, f0, t1, f1 = iv[k]
        stop = grid_min - 1e-3 * (1 + abs(grid_min))
        if low >= stop:
            break
        tm = 0.5 * (t0 + t1)
        fm = at_midpoint(tm, stop)
        evals += 1
        if fm < grid_min:
            grid_min = fm
            ts.append(tm)
            fs.append(fm)
        h = (t1 - t0) / 2
        iv[k] = ((f0 + fm) / 2 - L * h / 2, t0, f0, tm, fm)
        iv.append(((fm + f1) / 2 - L * h / 2, tm, fm, t1, f1))
        lows[k], lows[len(iv) - 1] = iv[k][0], iv[-1][0]
    lower = max(0.0, min(v[0] for v in iv)) if L > 0 else grid_min
    argmin = ts[int(np.argmin(fs))]
    return SegmentCurvature(grid_min=float(grid_min), certified_lower=float(min(lower, grid_min)),
                            argmin_t=float(argmin), evaluations=evals, mu_star=float(fs[0]),
                            lipschitz=float(L))


# --------------------------------------------------------------------------------- A6
@dataclass
class PerturbedFeasibility:
    """A6 measured: ``t*(eps)`` at both ends of the segment (``met``: both ``> 0``)."""

    margins: tuple[float, float]
    met: bool


def perturbed_feasibility(problem: AlignmentProblem, eps_a: object,
                          eps_b: object) -> PerturbedFeasibility:
    """A6: ``t*(eps) = max_pi min_i (E_rho E_pi h_i - eps_i)`` at ``eps_a`` and ``eps_b``.

    ``E h - eps >= 0`` is the problem with thresholds ``b + eps`` (in either constraint form),
    so ``t*`` is :func:`~dualgap.feasibility.feasibility_margin` of that problem (exact LP).
    """
    out = []
    for name, eps in (("eps_a", eps_a), ("eps_b", eps_b)):
        e = np.asarray(eps, dtype=np.float64).reshape(-1)
        if e.shape != (problem.num_constraints,) or not np.all(np.isfinite(e)):
            raise ValueError(f"{name}: need {problem.num_constraints} finite values, got {eps!r}")
        shifted = problem.replace(thresholds=problem.thresholds + e)
        out.append(float(feasibility_margin(shifted).margin))
    return PerturbedFeasibility((out[0], out[1]), bool(min(out) > 0))


# ----------------------------------------------------------------------------- Lemma 4
@dataclass
class Lemma4Check:
    """One form of Lemma 4: ``lhs = ||lam*_p - lam*||_2 <= rhs``.

    ``assumption_met``: for the paper form, A5 as measured (True: the certified lower
    ``mu_seg`` is at least ``mu*_D``; False: some evaluated point has ``lambda_min < mu*_D``;
    None: undecided); always True for the segment form, which needs no assumption.
    ``mu`` is the curvature the bound uses.
    """

    form: str
    lhs: float
    rhs: float
    holds: bool
    assumption_met: bool | None
    mu: float
    curvature: SegmentCurvature

    def as_tuple(self) -> tuple[float, float, bool, bool | None]:
        return self.lhs, self.rhs, self.holds, self.assumption_met


def _rhs(problem: AlignmentProblem, nu: float, lam_p: np.ndarray, mu: float) -> float:
    from .theory import lemma4_bound

    return math.inf if mu <= 0 else float(lemma4_bound(problem, nu, lam_p, mu))


def _lemma4_inputs(problem, lam_star, lam_p, nu, curvature):
    if not nu >= 0:
        raise ValueError(f"nu: must be >= 0, got {nu!r}")
    ls = np.asarray(lam_star, dtype=np.float64).reshape(-1)
    lp = np.asarray(lam_p, dtype=np.float64).reshape(-1)
    curv = curvature if curvature is not None else segment_curvature(problem, ls, lp)
    return ls, lp, float(np.linalg.norm(lp - ls)), curv


def _holds(lhs: float, rhs: float) -> bool:
    from .theory import bound_holds

    return bound_holds(lhs, rhs, None)


def lemma4_paper(problem: AlignmentProblem, lam_star: object, lam_p: object, nu: float, *,
                 curvature: SegmentCurvature | None = None) -> Lemma4Check:
    """Paper form: ``||lam*_p - lam*|| <= sqrt(2 K(lam*_p) nu / mu*_D)``, A5 measured."""
    ls, lp, lhs, curv = _lemma4_inputs(problem, lam_star, lam_p, nu, curvature)
    mu = curv.mu_star
    rhs = _rhs(problem, nu, lp, mu)
    tol = 1e-12 * (1 + abs(mu))
    if curv.grid_min < mu - tol:
        met: bool | None = False
    elif curv.certified_lower >= mu - tol:
        met = True
    else:
        met = None
    return Lemma4Check("paper (A5)", lhs, rhs, _holds(lhs, rhs), met, mu, curv)


def lemma4_segment(problem: AlignmentProblem, lam_star: object, lam_p: object, nu: float, *,
                   curvature: SegmentCurvature | None = None) -> Lemma4Check:
    """Segment form: ``||lam*_p - lam*|| <= sqrt(2 K(lam*_p) nu / mu_seg)``.

    ``mu_seg`` is the grid minimum, an *upper* estimate of the true minimum: the bound it
    gives is the smaller one, so the check is the harder one.
    """
    ls, lp, lhs, curv = _lemma4_inputs(problem, lam_star, lam_p, nu, curvature)
    mu = curv.grid_min
    rhs = _rhs(problem, nu, lp, mu)
    return Lemma4Check("segment", lhs, rhs, _holds(lhs, rhs), True, mu, curv)

"""Exact solution of the constrained problem by minimizing the closed-form dual.

``solve`` runs a projected Newton method (Bertsekas 1982) on ``min_{lam >= 0} D(lam)``:

* free set ``F`` = coordinates not held at the bound; held = ``lam_i <= eps`` and
  ``grad_i > 0`` with ``eps = min(1e-3, ||lam - [lam - grad]_+||)``;
* direction ``d_F = -(H_FF + tau I)^{-1} grad_F`` (exact Hessian, ``tau`` a tiny
  Levenberg-Marquardt shift raised only if Cholesky fails); ``d_held = -grad_held / H_ii``;
* a trust region ``||d||_inf <= radius`` (D is nearly piecewise linear where the softmax is
  nearly hard, and the raw Newton step is then huge), and a projected Armijo search on
  ``lam(t) = [lam + t d]_+`` with safeguarded quadratic interpolation of the step;
* beta-continuation when ``spread(scores) / beta > 1e3``: the problem is first solved loosely at
  larger betas (factor 10 apart) and each solution warm-starts the next.

It stops when the KKT residual ``||lam - [lam - grad D(lam)]_+||_inf`` (primal feasibility,
dual feasibility and complementary slackness at once, in the units of ``h``) is at most
``tol * max(1, M_h)``, or at the float64 floor ``8 eps ||H|| max(1, ||lam||)`` when that is
larger (the residual is always reported as computed).  Along the way it watches for a
diverging multiplier, which is how infeasibility shows in the dual:
``ray_bound(lam / ||lam||_1) < 0`` is a proof, raised as
:class:`~dualgap.feasibility.InfeasibleError`.  At the end it certifies strict feasibility
(Slater) with a mixture of known policies, or with the exact LP margin; a problem feasible only
on the boundary gets a warning and ``multiplier_unbounded=True``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from .dual import DualEval, constraint_slack, dual_backend, lagrangian_policy, objective
from .feasibility import (
    InfeasibleError,
    attainable_maxima,
    feasibility_margin,
    mixture_margin,
    ray_bound,
)
from .problem import AlignmentProblem

__all__ = [
    "DualSolution",
    "solve",
    "perturbation",
    "BoundaryFeasibleWarning",
    "ConvergenceWarning",
    "kkt_residual",
]

#: Above this many support entries the exact LP margin is skipped (the mixture certificate
#: almost always suffices; the warning says so when it does not).
LP_MAX_ENTRIES = 2_000_000


class BoundaryFeasibleWarning(UserWarning):
    """The constraints can be met, but not strictly: lam* is unbounded (no Slater point)."""


class ConvergenceWarning(UserWarning):
    """The solver stopped before reaching its tolerance."""


@dataclass
class DualSolution:
    """The result of :func:`solve` (all arrays float64).

    Attributes:
        lam: ``lam*``, shape ``(m,)``.
        dual_value: ``D(lam*)``.
        primal_value: ``J(pi_{lam*})``, computed from the policy (not from ``D``).
        policy: ``pi* = pi_{lam*}``, shape ``(X, Y)``.
        slack: ``E_rho E_{pi*} h``, shape ``(m,)`` (``>= 0`` up to the tolerance).
        kkt_residual: ``||lam - [lam - grad D]_+||_inf`` at ``lam*``.
        kkt_tolerance: the target it was held to: ``max(tol * max(1, M_h), float64 floor)``.
        duality_gap: ``D(lam*) - J(pi*)`` (``= lam*^T slack``, complementary slackness).
        iterations: Newton iterations taken.
        passes: passes over the ``(X, Y)`` data (oracle calls).
        converged: whether the KKT tolerance was reached.
        strictly_feasible: Slater certified (True), refuted (False) or not decided (None).
        margin: the certified lower bound on ``max_pi min_i E h_i`` (Slater margin), if known.
        multiplier_unbounded: the problem is feasible only on the boundary (Slater fails), so
            the set of optimal multipliers is unbounded -- or empty (``lam* = inf``), in which
            case ``lam`` is the last finite iterate and ``policy`` its limit up to ``tol``.
        hessian: ``hess D(lam*)``, shape ``(m, m)``.
        seconds: wall time.
        history: per-iteration ``(D, kkt_residual, step)``.
    """

    lam: np.ndarray
    dual_value: float
    primal_value: float
    policy: np.ndarray = field(repr=False)
    slack: np.ndarray
    kkt_residual: float
    kkt_tolerance: float
    duality_gap: float
    iterations: int
    passes: int
    converged: bool
    strictly_feasible: bool | None
    margin: float | None
    multiplier_unbounded: bool
    hessian: np.ndarray = field(repr=False)
    seconds: float
    history: list[tuple[float, float, float]] = field(default_factory=list, repr=False)

    def to_dict(self, include_policy: bool = False) -> dict:
        """A JSON-ready dict (the policy only when asked for)."""
        out = {}
        for k, v in asdict(self).items():
            if k == "policy" and not include_policy:
                continue
            out[k] = v.tolist() if isinstance(v, np.ndarray) else v
        return out


def kkt_residual(lam: np.ndarray, grad: np.ndarray) -> float:
    """``||lam - [lam - grad]_+||_inf``: zero iff ``lam >= 0, grad >= 0, lam * grad = 0``."""
    if lam.size == 0:
        return 0.0
    return float(np.abs(lam - np.maximum(lam - grad, 0.0)).max())


def _newton_direction(ev: DualEval, free: np.ndarray) -> np.ndarray:
    g, H = ev.gradient, ev.hessian
    d = np.zeros_like(g)
    held = ~free
    if held.any():
        diag = np.diag(H)[held]
        d[held] = -g[held] / np.where(diag > 0, diag, 1.0)
    if free.any():
        Hf = H[np.ix_(free, free)]
        scale = max(float(np.trace(Hf)) / free.sum(), 1e-300)
        tau = 1e-13 * scale
        for _ in range(30):
            try:
                chol = np.linalg.cholesky(Hf + tau * np.eye(free.sum()))
                break
            except np.linalg.LinAlgError:
                tau = max(tau * 100, 1e-300)
        else:  # pragma: no cover - H is a covariance: PSD
            chol = np.diag(np.sqrt(np.maximum(np.diag(Hf), 1e-300)))
        d[free] = -np.linalg.solve(chol.T, np.linalg.solve(chol, g[free]))
    return d


def _continuation_betas(problem: AlignmentProblem, ratio: float = 100.0) -> list[float]:
    """Betas ``beta_0 > beta_1 > ... > problem.beta`` (factor 10 apart, excluding the last)
    with ``spread / beta_0 = ratio``; empty when the problem is already smooth enough."""
    s = problem.support
    spread = float(np.ptp(problem.reward[s]))
    for i in range(problem.num_constraints):
        spread = max(spread, float(np.ptp(problem.utilities[i][s])))
    if problem.num_constraints == 0 or spread / problem.beta <= 10 * ratio:
        return []
    betas = []
    b = spread / ratio
    while b > 10 * problem.beta:
        betas.append(b)
        b /= 10.0
    return betas


class _Newton:
    """Projected Newton with a trust region and Armijo search on one problem."""

    def __init__(self, problem: AlignmentProblem, maxima: np.ndarray, ftol: float,
                 backend: str = "numpy") -> None:
        self.problem, self.maxima, self.ftol = problem, maxima, ftol
        self.dual = dual_backend(backend)
        self.passes = 0
        self.iterations = 0
        self.history: list[tuple[float, float, float]] = []

    def oracle(self, lam: np.ndarray) -> DualEval:
        self.passes += 1
        return self.dual(self.problem, lam, order=2)

    # hooks that a problem stored out of memory (dualgap.streaming) computes its own way
    def multiplier_scale(self) -> float:
        return _multiplier_scale(self.problem)

    def ray_bound(self, w: np.ndarray) -> float:
        return ray_bound(self.problem, w)

    def run(self, lam: np.ndarray, tol: float, max_iter: int) -> np.ndarray:
        problem, ftol = self.problem, self.ftol
        ev = self.oracle(lam)
        kkt = kkt_residual(lam, ev.gradient)
        self.history.append((ev.value, kkt, 0.0))
        next_ray_check = 10.0 * max(1.0, float(lam.sum()))
        radius = 10.0 * (1.0 + float(np.max(lam, initial=0.0))) * self.multiplier_scale()
        it = 0
        converged = kkt <= max(tol, _precision_floor(ev))
        while not converged and it < max_iter:
            it += 1
            g = ev.gradient
            eps = min(1e-3, kkt)
            free = ~((lam <= eps) & (g > 0))
            d = _newton_direction(ev, free)
            # trust region on the step: where D is nearly piecewise linear (tiny beta,
            # infeasible rays) the Hessian nearly vanishes and the raw step is huge or infinite
            d_norm = float(np.max(np.abs(d)))
            clipped = not np.isfinite(d_norm) or d_norm > radius
            if clipped:
                if not np.isfinite(d_norm):
                    d = -g
                d *= radius / float(np.max(np.abs(d)))
                d_norm = radius
            # projected Armijo search with safeguarded quadratic interpolation
            t, accepted = 1.0, None
            for _ in range(60):
                trial = np.maximum(lam + t * d, 0.0)
                step = trial - lam
                if not np.any(step):
                    break
                ev_t = self.oracle(trial)
                decrease = float(g @ step)
                if ev_t.value <= ev.value + 1e-4 * decrease:
                    accepted = (trial, ev_t)
                    break
                # at the precision floor, accept a step that still shrinks the KKT residual
                if (
                    abs(ev_t.value - ev.value) <= 1e-13 * max(1.0, abs(ev.value))
                    and kkt_residual(trial, ev_t.gradient) < kkt
                ):
                    accepted = (trial, ev_t)
                    break
                denom = 2.0 * (ev_t.value - ev.value - decrease)
                t_q = -decrease * t / denom if denom > 0 else 0.5 * t
                t = float(np.clip(t_q, 0.1 * t, 0.5 * t))
            if accepted is None:
                break  # no progress possible at float precision
            if t == 1.0:
                radius = 4.0 * radius if clipped else radius
            else:  # backtracked: the model was poor at this distance
                radius = max(2.0 * t * d_norm, 1e-12 * radius)
            lam, ev = accepted
            kkt = kkt_residual(lam, ev.gradient)
            self.history.append((ev.value, kkt, t))
            converged = kkt <= max(tol, _precision_floor(ev))
            norm = float(lam.sum())
            if norm > next_ray_check:  # diverging multiplier: test the ray for infeasibility
                next_ray_check = 2.0 * norm
                w = lam / norm
                bound = self.ray_bound(w)
                self.passes += 1
                if bound < -ftol:
                    raise InfeasibleError(problem, w, bound, self.maxima)
        self.iterations, self.ev, self.kkt, self.converged = it, ev, kkt, converged
        return lam


def solve(
    problem: AlignmentProblem,
    tol: float = 1e-10,
    max_iter: int = 200,
    lam0: object = None,
    check_slater: bool = True,
    backend: str = "numpy",
) -> DualSolution:
    """Solve ``max_pi J(pi) s.t. E h >= 0`` exactly through ``min_{lam >= 0} D(lam)``.

    Args:
        problem: the instance.
        tol: KKT tolerance, relative to ``max(1, M_h)`` with ``M_h = max |h|`` on the support.
        max_iter: Newton iteration cap (a :class:`ConvergenceWarning` if reached).
        lam0: warm start (default zeros).
        check_slater: certify strict feasibility at the end (cheap mixture LP, then the
            exact LP margin when the cheap test is inconclusive).
        backend: the dual oracle's backend, one of :data:`dualgap.dual.BACKENDS`
            (``"torch"``: float64 on CUDA when available, else CPU; ``"torch-float32"``).

    Raises:
        InfeasibleError: with a certificate, when no policy meets the constraints.
    """
    if not isinstance(problem, AlignmentProblem):  # chunked, out of memory: streamed passes
        from .streaming import ChunkedProblem, solve_chunked

        if isinstance(problem, ChunkedProblem):
            return solve_chunked(problem, tol, max_iter, lam0, check_slater, backend)
        raise ValueError(f"problem: expected an AlignmentProblem or ChunkedProblem, got "
                         f"{type(problem).__name__}")
    t0 = time.perf_counter()
    dual_backend(backend)  # an unknown backend fails before any work
    m = problem.num_constraints
    s = problem.support
    h_scale = max(
        [1.0]
        + [float(np.abs(problem.utilities[i][s] - problem.offsets[i]).max()) for i in range(m)]
    )
    atol = tol * h_scale
    ftol = 1e-12 * h_scale  # what counts as "zero" in feasibility tests

    # properties of the constraint set alone, computed once per problem: a warm re-solve
    # (lam0 from an earlier solve of the same problem) skips their passes
    memo = problem.__dict__.setdefault("_solve_memo", {})
    passes = 0
    if "maxima" not in memo:
        memo["maxima"] = attainable_maxima(problem) if m else np.zeros(0)
        passes = 1 if m else 0
    maxima = memo["maxima"]
    if m and (maxima < -ftol).any():
        i = int(np.argmin(maxima))
        w = np.zeros(m)
        w[i] = 1.0
        raise InfeasibleError(problem, w, maxima[i], maxima)

    lam = np.zeros(m) if lam0 is None else np.maximum(np.asarray(lam0, float).reshape(m), 0.0)
    history: list[tuple[float, float, float]] = []
    it = 0
    # beta-continuation: when the softmax is nearly hard (score spread >> beta) D is nearly
    # piecewise linear far from lam*; solve a smoother problem first and warm-start.
    for stage_beta in _continuation_betas(problem) if lam0 is None else []:
        stage = _Newton(problem.replace(beta=stage_beta), maxima, ftol, backend)
        lam = stage.run(lam, tol=1e-3 * h_scale, max_iter=max_iter)
        it += stage.iterations
        passes += stage.passes
        history += stage.history
    newton = _Newton(problem, maxima, ftol, backend)
    lam = newton.run(lam, tol=atol, max_iter=max_iter)
    it += newton.iterations
    passes += newton.passes
    history += newton.history
    ev, kkt, converged = newton.ev, newton.kkt, newton.converged

    policy = lagrangian_policy(problem, lam)
    slack = constraint_slack(problem, policy)
    primal = objective(problem, policy)
    passes += 1

    strictly, margin, unbounded = None, None, False
    if m and check_slater:
        if "slater" not in memo:
            memo["slater"] = _certify_slater(problem, policy, slack, maxima, ftol)
        strictly, margin, unbounded = memo["slater"]
        if unbounded:
            warnings.warn(
                "the constraints can be met only on the boundary (no strictly feasible policy: "
                f"max_pi min_i E h_i = {margin:.3g}); lam* is unbounded and the returned lam is "
                "the last finite iterate",
                BoundaryFeasibleWarning,
                stacklevel=2,
            )
    if not converged:
        warnings.warn(
            f"solve stopped after {it} iterations with KKT residual {kkt:.3g} > {atol:.3g}",
            ConvergenceWarning,
            stacklevel=2,
        )
    return DualSolution(
        lam=lam,
        dual_value=ev.value,
        primal_value=primal,
        policy=policy,
        slack=slack,
        kkt_residual=kkt,
        kkt_tolerance=max(atol, _precision_floor(ev)),
        duality_gap=ev.value - primal,
        iterations=it,
        passes=passes,
        converged=converged,
        strictly_feasible=strictly,
        margin=margin,
        multiplier_unbounded=unbounded,
        hessian=ev.hessian,
        seconds=time.perf_counter() - t0,
        history=history,
    )


def _precision_floor(ev: DualEval) -> float:
    """The smallest KKT residual float64 can resolve: ``8 eps ||H|| max(1, ||lam||)``.

    Moving ``lam`` by one ulp changes the gradient by about ``||H|| ulp(lam)``; with
    ``beta = 1e-4`` and scores of 1e4 that is ~1e-6, above any absolute ``tol``.
    """
    if ev.lam.size == 0:
        return 0.0
    H = float(np.abs(ev.hessian).sum(axis=1).max())
    return 8.0 * np.finfo(float).eps * H * max(1.0, float(np.abs(ev.lam).max()))


def _multiplier_scale(problem: AlignmentProblem) -> float:
    """A natural size for ``lam``: reward range over the smallest utility range (>= 1e-12)."""
    s = problem.support
    r_range = float(np.ptp(problem.reward[s]))
    g_ranges = [float(np.ptp(problem.utilities[i][s])) for i in range(problem.num_constraints)]
    g_min = min([v for v in g_ranges if v > 0], default=1.0)
    return max(1.0, r_range / g_min)


def _certify_slater(
    problem: AlignmentProblem,
    policy: np.ndarray,
    slack: np.ndarray,
    maxima: np.ndarray,
    ftol: float,
) -> tuple[bool | None, float | None, bool]:
    """Returns ``(strictly_feasible, margin, multiplier_unbounded)``."""
    m = problem.num_constraints
    if (maxima <= ftol).any():  # one constraint can only be met with equality
        return False, float(maxima.min()), True
    # candidates: pi*, and the deterministic maximizer of each h_i
    rows = [slack]
    rho, g, c, sup = problem.prompt_weights, problem.utilities, problem.offsets, problem.support
    for i in range(m):
        best = np.argmax(np.where(sup, g[i], -np.inf), axis=1)  # size = (X,)
        rows.append(rho @ g[:, np.arange(problem.num_prompts), best].T - c)
    S = np.array(rows)  # size = (K, m)
    # cheap certificates first: one candidate, or the uniform mixture, strictly feasible
    margin = max(float(S.min(axis=1).max()), float(S.mean(axis=0).min()))
    if margin <= ftol:
        margin, _ = mixture_margin(S)
    if margin > ftol:
        return True, margin, False
    if int(sup.sum()) > LP_MAX_ENTRIES:
        warnings.warn(
            "could not certify strict feasibility cheaply and the instance is too large for the "
            "exact LP margin; Slater is undecided",
            BoundaryFeasibleWarning,
            stacklevel=3,
        )
        return None, None, False
    exact = feasibility_margin(problem)
    if exact.margin > ftol:
        return True, exact.margin, False
    if exact.margin < -ftol:  # pragma: no cover - the Newton loop raises first
        raise InfeasibleError(problem, exact.weights, ray_bound(problem, exact.weights), maxima)
    return False, exact.margin, True


def perturbation(problem: AlignmentProblem, eps: float | np.ndarray, **solve_kw: object) -> float:
    """``P*(eps) = max_pi J(pi) s.t. E_rho E_pi h >= eps`` (scalar or per-constraint ``eps``).

    By convex duality ``P*`` is concave in ``eps`` with ``-lam*`` as a supergradient at 0.
    """
    return solve(problem.tightened(eps), **solve_kw).primal_value  # type: ignore[arg-type]

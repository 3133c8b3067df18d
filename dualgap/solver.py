"""Exact solution of the constrained problem by minimizing the closed-form dual.

``solve`` runs a projected Newton method (Bertsekas 1982) on ``min_{lam >= 0} D(lam)``:

* free set ``F`` = coordinates not held at the bound; held = ``lam_i <= eps`` and
  ``grad_i > 0`` with ``eps = min(1e-3, ||lam - [lam - grad]_+||)``;
* direction ``d_F = -(H_FF + tau I)^{-1} grad_F`` (exact Hessian, ``tau`` a tiny
  Levenberg-Marquardt shift raised only if Cholesky fails); ``d_held = -lam_held`` (a held
  coordinate steps to its bound); a free coordinate at 0 whose step is negative is held for
  that step and ``d_F`` recomputed (an active-set step: the projection would bend ``d``);
* a trust region ``||d||_inf <= radius`` (D is nearly piecewise linear where the softmax is
  nearly hard, and the raw Newton step is then huge), and a projected Armijo search on
  ``lam(t) = [lam + t d]_+`` with safeguarded quadratic interpolation of the step (a scaled
  gradient step when the projected Newton step does not descend), which tries the breakpoint
  where a free coordinate reaches 0 before interpolating;
* beta-continuation when ``spread(scores) / beta > 1e3``: the problem is first solved at
  larger betas (factor 10 apart) and each solution warm-starts the next.

All of this runs in normalized units (:mod:`dualgap.scaling`: per-prompt reward shift, scores
of size one, one scale ``a_i = max |h_i|`` per constraint), so scores of 1e300, beta from
1e-300 to 1e300 and offsets of 1e12 are solved the same way.  It stops when the dimensionless
KKT residual ``||lam' - [lam' - grad']_+||_inf`` (``lam'_i = lam_i a_i / s``, ``grad'_i =
E h_i / a_i``: primal feasibility, dual feasibility and complementary slackness at once) is at
most ``tol``, or at the float64 floor ``8 eps ||H'|| max(1, ||lam'||)`` when that is larger.
The result is reported in the problem's units and judged there: the residual is recomputed from
the returned ``lam`` (its policy and slack), times ``M_h = max_i a_i``; ``converged`` means it is
at most ``kkt_tolerance = max(tol, min(floor, FLOOR_CAP)) * M_h``.  A run that cannot converge
because float64 cannot resolve the KKT conditions (beta far below the score spread, so that pi*
is an argmax at float precision) raises ``ValueError`` naming ``beta``.

Along the way it watches for a diverging multiplier, which is how infeasibility shows in the dual:
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

from .dual import _check_lam, dual_backend
from .feasibility import BoundaryFeasibleWarning, InfeasibleError, certify_slater
from .newton import Newton, kkt_residual, precision_floor
from .problem import AlignmentProblem, as_real_scalar
from .scaling import Normalization, normalize

__all__ = [
    "DualSolution",
    "solve",
    "perturbation",
    "BoundaryFeasibleWarning",
    "ConvergenceWarning",
    "kkt_residual",
    "Newton",
    "precision_floor",
    "FLOOR_CAP",
    "STAGE_TOL",
]


#: relative KKT tolerance of the continuation stages (each warm-starts the next)
STAGE_TOL = 1e-10


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
        kkt_residual: ``M_h ||lam' - [lam' - slack']_+||_inf`` in the units of ``h``, recomputed
            from the returned ``lam`` (``lam'_i = lam_i a_i / s``, ``slack'_i = slack_i / a_i``,
            ``a_i = max |h_i|``, ``s`` the reward scale, ``M_h = max_i a_i``; see the module).
        kkt_tolerance: the target it was held to: ``max(tol, min(float64 floor, FLOOR_CAP))
            * M_h``, never above ``M_h``.
        duality_gap: ``D(lam*) - J(pi*)`` (``= lam*^T slack``, complementary slackness).
        iterations: Newton iterations taken.
        passes: passes over the ``(X, Y)`` data: the stats pass (on a problem object's first
            solve), the oracle calls, ray bounds and the final policy pass (with
            ``backend="numba"`` none of its own when the last oracle pass wrote ``pi*``).
        converged: whether the KKT tolerance was reached.
        strictly_feasible: Slater certified (True), refuted (False) or not decided (None).
        margin: the certified lower bound on ``max_pi min_i E h_i`` (Slater margin), if known.
        multiplier_unbounded: the problem is feasible only on the boundary (Slater fails), so
            the set of optimal multipliers is unbounded -- or empty (``lam* = inf``), in which
            case ``lam`` is the last finite iterate and ``policy`` its limit up to ``tol``.
        hessian: ``hess D(lam*)``, shape ``(m, m)``, in the problem's units; an entry is
            ``inf`` only where ``hess D`` itself exceeds float64 (``a_i a_j / beta > 1e308``,
            for example utilities of 1e300 with ``beta = 1``), never NaN.
        seconds: wall time.
        history: per-iteration ``(D', kkt_residual', step)`` in normalized units (all stages).
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


def _continuation_betas(norm: Normalization, ratio: float = 100.0) -> list[float]:
    """Betas ``beta'_0 > beta'_1 > ... > beta'`` (factor 10 apart, excluding the last) with
    ``spread / beta'_0 = ratio``, in normalized units (``spread`` the largest score range over
    the support); empty when the problem is already smooth enough."""
    spread, beta = float(norm.spreads.max()), norm.beta
    if norm.spreads.size == 1 or spread / beta <= 10 * ratio:
        return []
    betas = []
    b = spread / ratio
    while b > 10 * beta:
        betas.append(b)
        b /= 10.0
    return betas


#: the largest relative KKT tolerance the float64 floor may grant (``kkt_tolerance`` never
#: exceeds this share of the data's scale, whatever the floor)
FLOOR_CAP = 1e-6


def _check_solve_args(problem: AlignmentProblem, tol: object, max_iter: object,
                      lam0: object, check_slater: object) -> tuple[float, np.ndarray | None]:
    if not isinstance(problem, AlignmentProblem):
        raise ValueError(f"problem: expected an AlignmentProblem, got {type(problem).__name__}")
    if isinstance(tol, (bool, np.bool_, str, bytes)) or np.ndim(tol) != 0:
        raise ValueError(f"tol: must be a positive finite float below 1, got {tol!r}")
    tol_f = as_real_scalar("tol", tol)
    if not (np.isfinite(tol_f) and 0.0 < tol_f < 1.0):
        raise ValueError(f"tol: must be a positive finite float below 1, got {tol!r}")
    if isinstance(max_iter, (bool, np.bool_)) or not isinstance(max_iter, (int, np.integer)):
        raise ValueError(f"max_iter: must be a positive int, got {max_iter!r}")
    if max_iter < 1:
        raise ValueError(f"max_iter: must be a positive int, got {max_iter!r}")
    if not isinstance(check_slater, (bool, np.bool_)):
        raise ValueError(f"check_slater: must be a bool, got {check_slater!r}")
    lam = None if lam0 is None else _check_lam(problem, lam0, overflow_guard=False)
    return tol_f, lam


def solve(
    problem: AlignmentProblem,
    tol: float = 1e-10,
    max_iter: int = 200,
    lam0: object = None,
    check_slater: bool = True,
    backend: str = "numpy",
) -> DualSolution:
    """Solve ``max_pi J(pi) s.t. E h >= 0`` exactly through ``min_{lam >= 0} D(lam)``.

    The Newton method runs in normalized units (:mod:`dualgap.scaling`: scores of size one),
    so any finite instance float64 can hold is solved the same way; every reported quantity is
    in the problem's own units, and ``converged`` is decided there: the KKT residual
    ``||lam - [lam - E_{pi_lam} h]_+||_inf``, recomputed on the returned ``lam``, is at most
    ``kkt_tolerance = max(tol, floor) * M_h`` (``M_h = max |h|`` on the support; ``floor`` the
    float64 resolution of the KKT conditions, granted only up to :data:`FLOOR_CAP`).

    Args:
        problem: the instance.
        tol: relative KKT tolerance, a float in ``(0, 1)``.
        max_iter: Newton iteration cap per stage (a :class:`ConvergenceWarning` if reached).
        lam0: warm start ``(m,)``, ``>= 0`` (default zeros).
        check_slater: certify strict feasibility at the end (cheap mixture LP, then the
            exact LP margin when the cheap test is inconclusive).
        backend: the dual oracle's backend, one of :data:`dualgap.dual.BACKENDS`
            (``"numba"``: the stats pass, the oracle and the final pass compiled, one loop per
            prompt, the final pass inside the last oracle pass where it is predicted, the
            prompts split over :func:`dualgap.threads.get_threads` threads with the same
            bits on any number; needs the ``fast`` extra; ``"torch"``: float64 on CUDA when
            available, else CPU; ``"torch-float32"``).

    Raises:
        InfeasibleError: with a certificate, when no policy meets the constraints.
        ValueError: a bad argument, or an instance whose answer float64 cannot represent
            (the message names the field and says why).
    """
    if not isinstance(problem, AlignmentProblem):  # chunked, out of memory: streamed passes
        from .streaming import ChunkedProblem, solve_chunked

        if isinstance(problem, ChunkedProblem):
            return solve_chunked(problem, tol, max_iter, lam0, check_slater, backend)
        raise ValueError(f"problem: expected an AlignmentProblem or ChunkedProblem, got "
                         f"{type(problem).__name__}")
    t0 = time.perf_counter()
    tol, lam0_arr = _check_solve_args(problem, tol, max_iter, lam0, check_slater)
    dual_backend(backend)  # an unknown backend fails before any work
    m = problem.num_constraints
    stats_pass = "normalized" not in problem.__dict__  # one pass, cached on the problem
    if stats_pass and backend == "numba":  # compiled, and it writes q for the oracle passes
        problem.__dict__["normalized"] = normalize(problem, compiled=True)
    norm: Normalization = problem.normalized
    a = norm.constraint_scales  # size = (m,)
    ftol = 1e-12  # what counts as "zero" in feasibility tests, in normalized units (|h'| <= 1)
    try:
        lam_n, newton, it, passes, history = _solve_normalized(
            norm, tol, max_iter, None if lam0_arr is None else norm.to_internal(lam0_arr), ftol,
            backend,
        )
    except InfeasibleError as exc:  # back to the problem's units and thresholds
        w = exc.weights / a
        raise InfeasibleError(problem, w / w.sum(), exc.bound / float((exc.weights / a).sum()),
                              exc.maxima * a) from None
    passes += int(stats_pass)
    ev = newton.ev
    lam = norm.to_problem(lam_n, problem.names)

    # everything below is recomputed on the returned lam, in the problem's units: one pass
    # writes pi* and adds up its slack E_rho E_pi h = grad D(lam) and J'(pi*) from the policy
    # -- or the last oracle pass did, at this very lam (numba: a predicted last iterate)
    final = norm.take_policy(lam)
    if final is None:
        final = norm.final(lam, backend)
        passes += 1
    policy, slack, primal_n = final
    # the residual in the units of h: lam_i a_i / s and slack_i / a_i are the problem's own
    # multiplier and slack made dimensionless (s = reward scale, a_i = max |h_i|), times M_h
    scale = float(a.max(initial=0.0))
    with np.errstate(over="ignore", under="ignore"):
        kkt = scale * kkt_residual(lam * (a / norm.reward_scale), slack / a)
    floor = precision_floor(ev)
    kkt_tolerance = max(tol, min(floor, FLOOR_CAP)) * scale
    converged = bool(kkt <= kkt_tolerance)
    primal = norm.value(primal_n)
    dual = norm.value(ev.value)

    strictly, margin, unbounded = None, None, False
    if m and check_slater:
        # a property of the constraint set and lam*: a warm re-solve of the same problem
        # (lam0 from an earlier solve) reuses the certificate instead of redoing its LP
        if "slater" not in norm.memo:
            norm.memo["slater"] = certify_slater(
                lambda: norm.problem, slack / a, norm.maxima, ftol, witnesses=norm.witnesses,
                support_entries=norm.support_entries,
            )
        strictly, margin_n, unbounded = norm.memo["slater"]
        if margin_n is not None:  # a valid lower bound in the problem's units
            margin = margin_n * float(a.min() if margin_n > 0 else a.max())
        if unbounded:
            warnings.warn(
                "the constraints can be met only on the boundary (no strictly feasible policy: "
                f"max_pi min_i E h_i = {margin:.3g}); lam* is unbounded and the returned lam is "
                "the last finite iterate",
                BoundaryFeasibleWarning,
                stacklevel=2,
            )
    # a one-ulp move of lam' (|lam'| >= 1) moves grad' by up to 8 eps / beta' (|h'| <= 1)
    worst_floor = 8.0 * np.finfo(float).eps / norm.beta
    if m and not converged and not unbounded and max(floor, worst_floor) > FLOOR_CAP:
        spread = float(norm.spreads[0]) * norm.reward_scale
        raise ValueError(
            f"beta: {problem.beta!r} is too small for float64 against scores of spread "
            f"{spread:.3g}: near lam* a one-ulp change of lam moves the gradient by up to "
            f"{max(floor, worst_floor):.2g} relative (KKT residual {kkt:.3g} > tolerance "
            f"{kkt_tolerance:.3g}); pi* is nearly an argmax that float64 cannot represent"
        )
    if not converged:
        warnings.warn(
            f"solve stopped after {it} iterations with KKT residual {kkt:.3g} > "
            f"{kkt_tolerance:.3g}",
            ConvergenceWarning,
            stacklevel=2,
        )
    with np.errstate(over="ignore"):  # inf only where hess D itself exceeds float64
        hessian = (ev.hessian * (a / norm.reward_scale)[:, None]) * a[None, :]
    return DualSolution(
        lam=lam,
        dual_value=dual,
        primal_value=primal,
        policy=policy,
        slack=slack,
        kkt_residual=kkt,
        kkt_tolerance=kkt_tolerance,
        duality_gap=norm.reward_scale * (ev.value - primal_n),
        iterations=it,
        passes=passes,
        converged=converged,
        strictly_feasible=strictly,
        margin=margin,
        multiplier_unbounded=bool(unbounded),
        hessian=hessian,
        seconds=time.perf_counter() - t0,
        history=history,
    )


def _solve_normalized(norm: Normalization, tol: float, max_iter: int,
                      lam0: np.ndarray | None, ftol: float, backend: str = "numpy"):
    """The Newton solve (with beta-continuation) of a problem in normalized units.

    The attainable maxima, score ranges and Slater candidates come from the normalization's
    one pass (cached on the problem: a warm re-solve does not redo it).
    """
    m = norm.source.num_constraints
    maxima = norm.maxima
    if m and (maxima < -ftol).any():
        i = int(np.argmin(maxima))
        w = np.zeros(m)
        w[i] = 1.0
        raise InfeasibleError(norm.source, w, maxima[i], maxima)
    lam = np.zeros(m) if lam0 is None else lam0
    history: list[tuple[float, float, float]] = []
    it = passes = 0
    scale = _multiplier_scale(norm)
    # beta-continuation: when the softmax is nearly hard (score spread >> beta) D is nearly
    # piecewise linear far from lam*; solve smoother problems first and warm-start.
    stages = (_continuation_betas(norm) if lam0 is None else []) + [norm.beta]
    for k, stage_beta in enumerate(stages):
        last = k == len(stages) - 1
        newton = Newton(
            lambda x, b=stage_beta: norm.dual_sums_at(x, b, 2, backend),
            maxima, ftol, scale, norm.ray_bound, norm.source,
            # numba: a predicted last iterate's pass also writes pi* (saves the final pass)
            (lambda x, b=stage_beta: norm.dual_sums_at(x, b, 2, backend, policy=True))
            if last and backend == "numba" and norm.direct else None,
        )
        lam = newton.run(lam, tol=tol if last else STAGE_TOL, max_iter=max_iter)
        it += newton.iterations
        passes += newton.passes
        history += newton.history
    return lam, newton, it, passes, history


def _multiplier_scale(norm: Normalization) -> float:
    """A natural size for ``lam'``: reward range over the smallest positive utility range."""
    r_range = float(norm.spreads[0])
    g_min = min([float(v) for v in norm.spreads[1:] if v > 0], default=1.0)
    return max(1.0, r_range / g_min)


def perturbation(problem: AlignmentProblem, eps: float | np.ndarray, **solve_kw: object) -> float:
    """``P*(eps) = max_pi J(pi) s.t. E_rho E_pi h >= eps`` (scalar or per-constraint ``eps``).

    By convex duality ``P*`` is concave in ``eps`` with ``-lam*`` as a supergradient at 0.
    """
    return solve(problem.tightened(eps), **solve_kw).primal_value  # type: ignore[arg-type]

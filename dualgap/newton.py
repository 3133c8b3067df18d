"""The projected Newton loop on the dual, its KKT residual and float64 floor (docs/problem.md).

:class:`Newton` sees the data only through an oracle ``lam -> (D, grad D, hess D)`` and a ray
bound, so one loop serves :func:`dualgap.solve` (in normalized units, :mod:`dualgap.scaling`)
and problems streamed from disk (:mod:`dualgap.streaming`); :func:`dualgap.solve`'s docstring
states the method.  Numpy only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .dual import DualEval
from .feasibility import InfeasibleError
from .problem import as_real_array

__all__ = ["Newton", "kkt_residual", "precision_floor"]


def kkt_residual(lam: np.ndarray, grad: np.ndarray) -> float:
    """``||lam - [lam - grad]_+||_inf``: zero iff ``lam >= 0, grad >= 0, lam * grad = 0``.

    Evaluated without cancellation: entry ``i`` is ``grad_i`` where ``grad_i <= lam_i`` and
    ``lam_i`` elsewhere (the same number in exact arithmetic; ``lam - (lam - grad)`` would lose
    ``grad`` entirely when ``lam >> |grad|``).
    """
    lam, grad = as_real_array("lam", lam), as_real_array("grad", grad)
    if lam.ndim != 1 or grad.shape != lam.shape:
        raise ValueError(f"kkt_residual: lam and grad must be vectors of one shape, got "
                         f"{lam.shape} and {grad.shape}")
    if lam.size == 0:
        return 0.0
    return float(np.abs(np.where(grad <= lam, grad, lam)).max())


def _newton_direction(ev: DualEval, free: np.ndarray) -> np.ndarray:
    g, H = ev.gradient, ev.hessian
    d = np.zeros_like(g)  # the held coordinates' steps are the caller's (to their bound)
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


class Newton:
    """Projected Newton with a trust region and Armijo search on one dual (module docstring).

    The loop sees the data only through its arguments, so the same loop serves in-memory
    problems (in normalized units) and problems streamed from disk (:mod:`dualgap.streaming`).

    Args:
        oracle: ``lam -> DualEval`` with gradient and Hessian (one pass over the data).
        maxima: ``max_pi E h_i``, ``(m,)`` (reported by an :class:`InfeasibleError`).
        ftol: what counts as zero in the infeasibility test ``ray_bound(w) < -ftol``.
        multiplier_scale: a natural size of ``lam`` (sets the first trust region).
        ray_bound: ``w -> E_rho max_{y in supp} w^T h`` (one pass; see :func:`dualgap.ray_bound`).
        problem: the problem an :class:`InfeasibleError` names.
        speculate: optional, ``lam -> DualEval`` like ``oracle`` (one pass) that also prepares
            the caller's final pass; called for the full step of an iteration whose result is
            predicted to converge (quadratic convergence: ``kkt^3 / kkt_prev^2 <= tol``; a miss
            costs the extra work of that one pass, a hit saves the final pass).

    After :meth:`run`: ``passes`` (oracle calls and ray bounds), ``iterations``, ``history``,
    and ``ev``, ``kkt``, ``converged`` at the returned ``lam``.
    """

    def __init__(self, oracle: Callable[[np.ndarray], DualEval], maxima: np.ndarray,
                 ftol: float, multiplier_scale: float, ray_bound: Callable[[np.ndarray], float],
                 problem: object,
                 speculate: Callable[[np.ndarray], DualEval] | None = None) -> None:
        self._oracle, self.maxima, self.ftol = oracle, maxima, ftol
        self._speculate = speculate
        self._multiplier_scale, self._ray_bound, self.problem = multiplier_scale, ray_bound, problem
        self.passes = 0
        self.iterations = 0
        self.history: list[tuple[float, float, float]] = []

    def oracle(self, lam: np.ndarray, speculate: bool = False) -> DualEval:
        """One counted oracle pass (``speculate``: through the ``speculate`` oracle)."""
        self.passes += 1
        if speculate and self._speculate is not None:
            return self._speculate(lam)
        return self._oracle(lam)

    def run(self, lam: np.ndarray, tol: float, max_iter: int) -> np.ndarray:
        """Iterate from ``lam`` until the KKT residual is at most ``max(tol, precision_floor)``
        or ``max_iter`` iterations; returns the last iterate.

        Raises:
            InfeasibleError: when a diverging multiplier's ray proves infeasibility.
        """
        problem, ftol = self.problem, self.ftol
        ev = self.oracle(lam)
        kkt = kkt_residual(lam, ev.gradient)
        self.history.append((ev.value, kkt, 0.0))
        next_ray_check = 10.0 * max(1.0, float(lam.sum()))
        radius = 10.0 * (1.0 + float(np.max(lam, initial=0.0))) * self._multiplier_scale
        it = 0
        converged = kkt <= max(tol, precision_floor(ev))
        prev = None  # the KKT residual one iteration back
        while not converged and it < max_iter:
            it += 1
            # the next residual under quadratic convergence, kkt * (kkt / prev^2) * kkt
            spec = (self._speculate is not None and prev is not None and prev > 0
                    and kkt**3 <= max(tol, precision_floor(ev)) * prev**2)
            prev = kkt
            g = ev.gradient
            eps = min(1e-3, kkt)
            free = ~((lam <= eps) & (g > 0))
            d = _newton_direction(ev, free)
            # a free multiplier at 0 whose Newton step is negative blocks the step: the
            # projection would bend it off its direction (with two nearly collinear constraints
            # that direction is a near-null one of hess D, 1e4 times the useful step, and the
            # bent step moved the useful multipliers by ~1e-4 of the trust region: the
            # ill-conditioned fuzz, 200 iterations at KKT residual 365).  Hold it at 0 for this
            # step and recompute the others' (an active-set step, at most m times)
            for _ in range(lam.size):
                blocked = free & (lam <= 0.0) & (d < 0.0)
                if not blocked.any() or blocked.sum() == free.sum():
                    break
                free = free & ~blocked
                d = _newton_direction(ev, free)
            # a held coordinate (lam_i <= eps, g_i > 0, or blocked above) steps to its bound
            # (a blocked one, at 0, stays there): the diagonal step it used to take,
            # -g_i / H_ii, capped there, would keep a near-zero H_ii (a nearly piecewise linear
            # D) from shrinking the free coordinates' step through the trust region below, and
            # a large H_ii that a direction shared with a free multiplier brings (two nearly
            # collinear constraints: D is flat along their difference) would move lam_i by
            # ~1e-4 of itself per iteration (the ill-conditioned fuzz: 225 iterations at KKT
            # residual 2e-3); the search still checks that the step descends
            d[~free] = -lam[~free]
            # trust region on the step: where D is nearly piecewise linear (tiny beta,
            # infeasible rays) the Hessian nearly vanishes and the raw step is huge or infinite
            d_norm = float(np.max(np.abs(d)))
            clipped = not np.isfinite(d_norm) or d_norm > radius
            if clipped:
                if not np.isfinite(d_norm):
                    d = -g
                d *= radius / float(np.max(np.abs(d)))
                d_norm = radius
            accepted, t = self._search(lam, ev, d, kkt, spec, _breakpoint(lam, d, free))
            if accepted is None:  # the projected Newton step does not descend: a gradient step
                diag = float(np.max(np.diag(ev.hessian), initial=0.0))
                d = -g / diag if diag > 0 else -g
                d_norm = float(np.max(np.abs(d)))
                clipped = not np.isfinite(d_norm) or d_norm > radius
                if clipped:
                    d = -g * (radius / float(np.max(np.abs(g))))
                    d_norm = radius
                accepted, t = self._search(lam, ev, d, kkt)
            if accepted is None:
                break  # no progress possible at float precision
            if t == 1.0:
                radius = 4.0 * radius if clipped else radius
            else:  # backtracked: the model was poor at this distance
                radius = max(2.0 * t * d_norm, 1e-12 * radius)
            lam, ev = accepted
            kkt = kkt_residual(lam, ev.gradient)
            self.history.append((ev.value, kkt, t))
            converged = kkt <= max(tol, precision_floor(ev))
            norm = float(lam.sum())
            if norm > next_ray_check:  # diverging multiplier: test the ray for infeasibility
                next_ray_check = 2.0 * norm
                w = lam / norm
                bound = self._ray_bound(w)
                self.passes += 1
                if bound < -ftol:
                    raise InfeasibleError(problem, w, bound, self.maxima)
        self.iterations, self.ev, self.kkt, self.converged = it, ev, kkt, converged
        return lam

    def _search(self, lam: np.ndarray, ev: DualEval, d: np.ndarray, kkt: float,
                speculate: bool = False, breakpoint: tuple[float, int] | None = None,
                ) -> tuple[tuple[np.ndarray, DualEval] | None, float]:
        """Projected Armijo search on ``[lam + t d]_+`` with safeguarded quadratic
        interpolation of ``t``: ``((lam_t, ev_t), t)``, or ``(None, t)`` when no step helps
        (``speculate``: the full step through the ``speculate`` oracle).

        ``breakpoint = (t_b, i)``: the step at which free coordinate ``i`` first reaches 0.
        After a rejected ``t > t_b`` the search tries ``t_b`` itself, with ``lam_i`` exactly
        0, before interpolating: where ``D`` is nearly linear along ``d`` (two nearly collinear
        constraints, beta far below the score spread: ``hess D`` has a null direction) the
        projection bends every longer step off that direction, and steps just short of ``t_b``
        shrink ``lam_i`` only geometrically (the ill-conditioned fuzz: 200 iterations at KKT
        residual 1e-4).
        """
        g = ev.gradient
        t = 1.0
        for _ in range(60):
            trial = np.maximum(lam + t * d, 0.0)
            if breakpoint is not None and t == breakpoint[0]:
                trial[breakpoint[1]] = 0.0
            step = trial - lam
            if not np.any(step):
                break
            ev_t = self.oracle(trial, speculate and t == 1.0)
            decrease = float(g @ step)
            if ev_t.value <= ev.value + 1e-4 * decrease:
                return (trial, ev_t), t
            # at the precision floor, accept a step that still shrinks the KKT residual
            if (
                abs(ev_t.value - ev.value) <= 1e-13 * max(1.0, abs(ev.value))
                and kkt_residual(trial, ev_t.gradient) < kkt
            ):
                return (trial, ev_t), t
            if decrease >= 0:  # the projected step ascends: shrinking it cannot help
                break
            if breakpoint is not None and breakpoint[0] < t:
                t = breakpoint[0]
                continue
            denom = 2.0 * (ev_t.value - ev.value - decrease)
            t_q = -decrease * t / denom if denom > 0 else 0.5 * t
            t = float(np.clip(t_q, 0.1 * t, 0.5 * t))
        return None, t


def _breakpoint(lam: np.ndarray, d: np.ndarray, free: np.ndarray) -> tuple[float, int] | None:
    """``(t_b, i)``: the first ``t < 1`` at which a free positive coordinate of ``lam + t d``
    reaches 0, or None (see :meth:`Newton._search`)."""
    hits = free & (lam > 0) & (d < 0) & (lam + d < 0)
    if not hits.any():
        return None
    idx = np.flatnonzero(hits)
    ratios = lam[idx] / -d[idx]
    k = int(np.argmin(ratios))
    return float(ratios[k]), int(idx[k])


def precision_floor(ev: DualEval) -> float:
    """The smallest KKT residual float64 can resolve at ``ev``: ``8 eps ||H|| max(1, ||lam||)``.

    Moving ``lam`` by one ulp changes the gradient by about ``||H|| ulp(lam)``; with
    ``beta = 1e-4`` and scores of 1e4 that is ~1e-6, above any absolute ``tol``.  ``||H||`` is
    the largest absolute row sum of ``ev.hessian`` and ``||lam||`` the largest entry.
    """
    if ev.lam.size == 0:
        return 0.0
    H = float(np.abs(ev.hessian).sum(axis=1).max())
    return 8.0 * np.finfo(float).eps * H * max(1.0, float(np.abs(ev.lam).max()))

"""Problems larger than memory: the prompts in chunks, each solver pass a stream over them.

The dual is a sum over prompts (docs/problem.md)::

    D(lam) = beta sum_k sum_{x in chunk k} rho(x) log Z_lam(x) - lam^T c

so every pass of :func:`~dualgap.solve` reads one chunk at a time and adds its
:class:`~dualgap.dual.DualSums`; peak memory is a chunk and its cache-sized blocks, not the
table.  A :class:`ChunkedProblem` comes from memory-mapped ``.npy`` files
(:meth:`ChunkedProblem.from_npy`) or from any function that returns a fresh iterator of
:class:`PromptChunk` (one call per pass).  Each chunk is validated as an
:class:`~dualgap.AlignmentProblem` (its weights renormalized, its mass ``s_k = sum rho`` kept),
so the checks, the support and ``log pi_ref`` are those of the in-memory problem.

One stats pass (on construction) gives what the solver needs besides the oracle: the offsets
``c``, ``max_pi E h_i``, ``M_h`` and the score ranges.  Not streamed: the beta-continuation (a
problem with ``spread / beta > 1e3`` may stop with a ``ConvergenceWarning``) and the exact LP
margin (Slater is certified by the cheap mixture test or left undecided, with a warning).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dual import DualEval, DualSums, _check_order, check_multipliers, dual_sums, lagrangian_policy
from .errors import UserError
from .feasibility import InfeasibleError, attainable_maxima, mixture_margin, ray_bound
from .newton import Newton, precision_floor
from .problem import AlignmentProblem
from .solver import BoundaryFeasibleWarning, ConvergenceWarning, DualSolution

__all__ = ["PromptChunk", "ChunkedProblem", "chunked_dual_oracle", "solve_chunked", "CHUNK_ENTRIES"]

#: Default chunk size for :meth:`ChunkedProblem.from_npy`, in table entries (32 MiB per array).
CHUNK_ENTRIES = 1 << 22


@dataclass(frozen=True)
class PromptChunk:
    """Rows of the table: ``reward``/``reference`` ``(x, Y)``, ``utilities`` ``(m, x, Y)`` and
    ``prompt_weights`` ``(x,)`` (``rho`` on these rows, not renormalized; ``None`` in every
    chunk: uniform over all prompts)."""

    reward: np.ndarray
    utilities: np.ndarray
    reference: np.ndarray
    prompt_weights: np.ndarray | None = None


@dataclass
class _Stats:
    ref_g: np.ndarray  # sum_k s_k E_ref g, size = (m,)
    max_g: np.ndarray  # sum_k s_k E max_supp g, size = (m,)
    g_lo: np.ndarray  # min over the support, size = (m,)
    g_hi: np.ndarray
    prompts: int = 0
    mass: float = 0.0
    r_lo: float = np.inf
    r_hi: float = -np.inf


class ChunkedProblem:
    """``max_pi J(pi) s.t. E_rho E_pi h >= 0`` with the table stored as chunks of prompts.

    Args:
        chunks: called once per pass; returns an iterable of :class:`PromptChunk` covering every
            prompt once, the same each call.
        thresholds: ``b``, ``(m,)``.  beta, relative, names: as in :class:`AlignmentProblem`.

    Raises:
        ValueError: naming the chunk and the field, for a chunk the in-memory problem would
            reject, chunks of different ``Y`` or ``m``, or weights that do not sum to 1.
    """

    def __init__(self, chunks: Callable[[], Iterable[PromptChunk]], thresholds: object,
                 beta: float, relative: bool = True, names: tuple[str, ...] | None = None) -> None:
        if not callable(chunks):
            raise ValueError(f"chunks: must be a callable returning chunks, got {chunks!r}")
        self._chunks = chunks
        self.thresholds = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
        self.beta = beta
        self.relative = relative
        self.names = names
        self._uniform: bool | None = None
        st = _Stats(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0))
        m = 0
        for k, (sub, mass) in enumerate(self._problems(with_uniform=False)):
            if k == 0:
                self.num_responses, self.num_constraints = sub.num_responses, sub.num_constraints
                m = self.num_constraints
                st = _Stats(np.zeros(m), np.zeros(m), np.full(m, np.inf), np.full(m, -np.inf))
                self.beta = sub.beta
            elif (sub.num_responses, sub.num_constraints) != (self.num_responses, m):
                raise ValueError(
                    f"chunk {k}: (Y, m) = {(sub.num_responses, sub.num_constraints)} differs from "
                    f"chunk 0's {(self.num_responses, m)}"
                )
            st.prompts += sub.num_prompts
            st.mass += mass
            st.ref_g += mass * sub.reference_utilities
            if m:
                st.max_g += mass * attainable_maxima(sub)
            s = sub.support
            st.r_lo = min(st.r_lo, float(sub.reward[s].min()))
            st.r_hi = max(st.r_hi, float(sub.reward[s].max()))
            for i in range(m):
                gi = sub.utilities[i][s]
                st.g_lo[i], st.g_hi[i] = min(st.g_lo[i], gi.min()), max(st.g_hi[i], gi.max())
        if st.prompts == 0:
            raise ValueError("chunks: no prompts (the iterable was empty)")
        if self.thresholds.shape != (self.num_constraints,):
            raise ValueError(f"thresholds: shape {self.thresholds.shape} does not match "
                             f"m = {self.num_constraints}")
        if not self._uniform and abs(st.mass - 1.0) > 1e-9 * max(1.0, st.prompts**0.5):
            raise ValueError(f"prompt_weights: sum to {st.mass!r} over all chunks, not 1")
        self.num_prompts = st.prompts
        if self._uniform:  # each chunk's mass is its share of the prompts
            st.ref_g, st.max_g = st.ref_g / st.mass, st.max_g / st.mass
        self.offsets = st.ref_g + self.thresholds if relative else self.thresholds.copy()
        self.maxima = st.max_g - self.offsets  # max_pi E h_i, size = (m,)
        self._stats = st
        if names is None:
            self.names = tuple(f"g{i + 1}" for i in range(self.num_constraints))
        elif len(tuple(names)) != self.num_constraints:
            raise ValueError(f"names: {len(tuple(names))} names for m = {self.num_constraints} "
                             "constraints")
        else:
            self.names = tuple(str(n) for n in names)

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_npy(cls, directory: str | Path, thresholds: object, beta: float,
                 relative: bool = True, chunk_prompts: int | None = None,
                 names: tuple[str, ...] | None = None) -> ChunkedProblem:
        """Memory-mapped ``reward.npy`` ``(X, Y)``, ``utilities.npy`` ``(m, X, Y)``,
        ``reference.npy`` ``(X, Y)`` and optional ``prompt_weights.npy`` ``(X,)`` in
        ``directory``, read ``chunk_prompts`` rows at a time (default: ``CHUNK_ENTRIES / Y``)."""
        d = Path(directory)
        arrays = {}
        for name in ("reward", "utilities", "reference", "prompt_weights"):
            path = d / f"{name}.npy"
            if not path.exists():
                if name == "prompt_weights":
                    continue
                raise UserError(f"directory: {str(path)!r} does not exist")
            try:
                arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise UserError(
                    f"{name}: {str(path)!r} is not a readable .npy file ({exc})"
                ) from None
        X, Y = arrays["reward"].shape if arrays["reward"].ndim == 2 else (0, 1)
        if chunk_prompts is None:
            chunk_prompts = max(1, CHUNK_ENTRIES // max(Y, 1))
        if not isinstance(chunk_prompts, (int, np.integer)) or chunk_prompts < 1:
            raise ValueError(f"chunk_prompts: must be a positive int, got {chunk_prompts!r}")
        if arrays["utilities"].ndim != 3 or arrays["utilities"].shape[1:] != (X, Y):
            raise ValueError(f"utilities: shape {arrays['utilities'].shape} does not match "
                             f"(m, X, Y) = (m, {X}, {Y})")

        def chunks() -> Iterator[PromptChunk]:
            for a in range(0, X, chunk_prompts):
                b = min(X, a + chunk_prompts)
                rho = arrays.get("prompt_weights")
                yield PromptChunk(
                    np.asarray(arrays["reward"][a:b]),
                    np.asarray(arrays["utilities"][:, a:b]),
                    np.asarray(arrays["reference"][a:b]),
                    None if rho is None else np.asarray(rho[a:b]),
                )

        return cls(chunks, thresholds, beta, relative, names)

    # ---------------------------------------------------------------- passes
    def _problems(self, with_uniform: bool = True) -> Iterator[tuple[AlignmentProblem, float]]:
        """Each chunk as a validated problem (normalized weights, absolute, ``b = 0``) and its
        mass ``s_k``; a pass over the data."""
        for k, ch in enumerate(self._chunks()):
            if not isinstance(ch, PromptChunk):
                raise ValueError(f"chunk {k}: expected a PromptChunk, got {type(ch).__name__}")
            uniform = ch.prompt_weights is None
            if self._uniform is None:
                self._uniform = uniform
            elif uniform != self._uniform:
                raise ValueError(f"chunk {k}: prompt_weights must be given in every chunk or in "
                                 "none")
            x = np.shape(ch.reward)[0] if np.ndim(ch.reward) == 2 else 0
            rho = np.full(x, 1.0) if uniform else np.asarray(ch.prompt_weights, dtype=np.float64)
            mass = float(rho.sum()) if rho.ndim == 1 else 0.0
            try:
                sub = AlignmentProblem(
                    ch.reward, ch.utilities, np.zeros(np.shape(ch.utilities)[0]), self.beta,
                    ch.reference, rho / mass if mass > 0 else rho, relative=False,
                )
            except ValueError as exc:
                raise ValueError(f"chunk {k}: {exc}") from None
            if with_uniform and self._uniform:
                mass = sub.num_prompts / self.num_prompts
            yield sub, mass

    def dual_oracle(self, lam: object, order: int = 2) -> DualEval:
        """:func:`dualgap.dual_oracle` as one streamed pass over the chunks.

        The chunks were validated by the stats pass; this pass reads them raw (``log pi_ref``
        and the weights per chunk, then :func:`~dualgap.dual.dual_sums`)."""
        lam = check_multipliers(lam, self.num_constraints)
        order = _check_order(order)
        m = self.num_constraints
        total = DualSums(0.0, np.zeros(m), np.zeros((m, m)))
        for ch in self._chunks():
            reward = np.asarray(ch.reward, dtype=np.float64)
            with np.errstate(divide="ignore"):
                log_ref = np.log(np.asarray(ch.reference, dtype=np.float64))
            rho = (np.full(reward.shape[0], 1.0 / self.num_prompts) if self._uniform
                   else np.asarray(ch.prompt_weights, dtype=np.float64))
            total += dual_sums(reward, np.asarray(ch.utilities, dtype=np.float64), log_ref, rho,
                               lam, self.beta, order)
        return total.finish(lam, self.beta, self.offsets, order)

    def ray_bound(self, w: np.ndarray) -> float:
        """``E_rho max_{y in supp} w^T h``, streamed (see :func:`dualgap.ray_bound`)."""
        return sum(mass * ray_bound(sub, w) for sub, mass in self._problems()) - float(
            w @ self.offsets)

    def multiplier_scale(self) -> float:
        """Reward range over the smallest positive utility range (as for in-memory problems)."""
        st = self._stats
        ranges = [float(v) for v in st.g_hi - st.g_lo if v > 0]
        return max(1.0, (st.r_hi - st.r_lo) / min(ranges, default=1.0))

    def policies(self, lam: object) -> Iterator[np.ndarray]:
        """``pi_lam`` chunk by chunk, each ``(x, Y)``: the policy without holding it whole."""
        for sub, _ in self._problems():
            yield lagrangian_policy(sub, lam)

    def __repr__(self) -> str:
        return (f"ChunkedProblem(X={self.num_prompts}, Y={self.num_responses}, "
                f"m={self.num_constraints}, beta={self.beta:g})")


def chunked_dual_oracle(problem: ChunkedProblem, lam: object, order: int = 2) -> DualEval:
    """The oracle of a chunked problem (the ``dual`` of the solver's Newton loop)."""
    return problem.dual_oracle(lam, order)


def solve_chunked(problem: ChunkedProblem, tol: float = 1e-10, max_iter: int = 200,
                  lam0: object = None, check_slater: bool = True,
                  backend: str = "numpy") -> DualSolution:
    """:func:`dualgap.solve` on a chunked problem; ``policy`` is ``None`` in the result (use
    :meth:`ChunkedProblem.policies`), everything else as for an in-memory problem."""
    if backend != "numpy":
        raise ValueError(f"backend: chunked problems are streamed by numpy, got {backend!r}")
    t0 = time.perf_counter()
    m, st = problem.num_constraints, problem._stats
    h_scale = max([1.0] + [float(max(abs(st.g_hi[i] - problem.offsets[i]),
                                     abs(st.g_lo[i] - problem.offsets[i]))) for i in range(m)])
    atol, ftol = tol * h_scale, 1e-12 * h_scale
    maxima = problem.maxima
    if m and (maxima < -ftol).any():
        i = int(np.argmin(maxima))
        raise InfeasibleError(problem, np.eye(m)[i], maxima[i], maxima)  # type: ignore[arg-type]
    lam = np.zeros(m) if lam0 is None else np.maximum(np.asarray(lam0, float).reshape(m), 0.0)
    newton = Newton(problem.dual_oracle, maxima, ftol, problem.multiplier_scale(),
                    problem.ray_bound, problem)
    lam = newton.run(lam, tol=atol, max_iter=max_iter)
    ev, kkt = newton.ev, newton.kkt
    # the final pass: pi*, its slack and J, and the per-constraint maximizers (Slater witnesses)
    slack, primal, rows = np.zeros(m), 0.0, np.zeros((m, m))
    for sub, mass in problem._problems():
        # the chunk's stats pass (its Slater candidates) and its fused policy pass
        norm = sub.normalized
        _, expected, j_n = norm.final(lam)  # E g on the chunk (its c is 0), J' from pi
        slack += mass * expected
        primal += mass * norm.value(j_n)
        rows += mass * (norm.witnesses * norm.constraint_scales[None, :])  # E g at argmax g_i
    slack -= problem.offsets
    strictly, margin, unbounded = None, None, False
    if m and check_slater:
        if (maxima <= ftol).any():
            strictly, margin, unbounded = False, float(maxima.min()), True
        else:
            S = np.vstack([slack, rows - problem.offsets])  # size = (m + 1, m)
            margin = max(float(S.min(axis=1).max()), float(S.mean(axis=0).min()))
            if margin <= ftol:
                margin, _ = mixture_margin(S)
            strictly = True if margin > ftol else None
            if strictly is None:
                margin = None
                warnings.warn("could not certify strict feasibility with the mixture test and a "
                              "chunked problem has no exact LP margin; Slater is undecided",
                              BoundaryFeasibleWarning, stacklevel=2)
    if not newton.converged:
        warnings.warn(f"solve stopped after {newton.iterations} iterations with KKT residual "
                      f"{kkt:.3g} > {atol:.3g}", ConvergenceWarning, stacklevel=2)
    return DualSolution(
        lam=lam, dual_value=ev.value, primal_value=primal, policy=None,  # type: ignore[arg-type]
        slack=slack, kkt_residual=kkt, kkt_tolerance=max(atol, precision_floor(ev)),
        duality_gap=ev.value - primal, iterations=newton.iterations,
        passes=newton.passes + 2, converged=newton.converged, strictly_feasible=strictly,
        margin=margin, multiplier_unbounded=unbounded, hessian=ev.hessian,
        seconds=time.perf_counter() - t0, history=newton.history,
    )

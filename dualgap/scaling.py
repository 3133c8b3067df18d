"""Normalized units: the same problem with scores of size one, for solving at any float64 scale.

The dual is homogeneous and shift-invariant (docs/problem.md).  With a per-prompt reward shift
``u(x)``, a reward scale ``s > 0`` and one scale ``a_i > 0`` per constraint::

    r'   = (r - u(x)) / s        h'_i = h_i / a_i        beta' = beta / s
    lam'_i = lam_i a_i / s       pi_{lam'}' = pi_lam     D(lam) = E_rho u + s D'(lam')
    grad_i D(lam) = a_i grad_i D'(lam')                  J(pi) = E_rho u + s J'(pi)
    hess D'(lam') = s hess D(lam) / (a a^T)

Here ``a_i = max_supp |h_i|`` (1 when ``h_i = 0`` on the support) and ``s = max(largest
per-prompt spread of r over the support, beta)``, so ``|r'| <= 1``, ``|h'_i| <= 1`` and
``beta' <= 1``.  One blocked pass over the data (:func:`normalize`) finds them, with what the
solver needs besides the oracle: ``max_pi E h'_i``, the score ranges and the slacks of the
deterministic maximizer of each ``h_i`` (Slater candidates).

Two ways to evaluate the normalized problem, chosen by the data's range:

* **direct** (no copy): when the data are already of their own size -- every entry (support or
  not) has ``|r| <= DIRECT_RANGE s`` and ``|g_i| <= DIRECT_RANGE a_i``, and ``s``, ``a_i`` and
  ``beta`` lie within ``10^{+-DIRECT_EXPONENT}`` -- the oracle and the final policy pass run on
  the problem's own arrays with ``lam = lam' s / a`` and ``u = 0`` and convert by the maps
  above.  Forming ``r + lam^T g`` then loses at most ``log2(DIRECT_RANGE) = 3`` bits against
  the normalized values, and nothing overflows (``|z| <= 8 (1 + sum lam') / beta'`` and
  ``(8 a)^2 / beta <= 1e302``).  Results that are nevertheless not finite fall back to a copy.
* **copy**: otherwise (offsets of 1e12, scores of 1e300, beta of 1e-300), ``u(x) = max_supp
  r(x, .)`` and the normalized arrays ``r'``, ``h'`` are built once (:attr:`Normalization.
  problem`, one copy of the reward and utility tables): offsets cancel once, exactly, in
  ``h = g - c``, and never again.  Entries outside the reference support are set to 0.

Anything float64 cannot hold raises ``ValueError`` naming the field and why (a spread or an
offset that overflows, or ``beta / spread`` below :data:`BETA_MIN`).  Numpy only.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .dual import (
    BLOCK_ENTRIES,
    DualEval,
    DualSums,
    LogOf,
    PolicySums,
    dual_sums,
    policy_sums,
)
from .problem import AlignmentProblem
from .stats_pass import _log_reference_plus, _stats_numpy

__all__ = ["Normalization", "normalize", "BETA_MIN", "DIRECT_RANGE", "DIRECT_EXPONENT"]

#: the smallest beta' = beta / s accepted: 1 / beta' and the Hessian bound 4 / beta' must fit
#: in float64 with room to spare
BETA_MIN = 1e-306

#: direct evaluation (no normalized copy) when every ``|r| <= DIRECT_RANGE s`` and every
#: ``|g_i| <= DIRECT_RANGE a_i`` (offsets and shifts of at most this many scales) ...
DIRECT_RANGE = 8.0
#: ... and ``s``, ``a_i`` and ``beta`` lie in ``[10^-DIRECT_EXPONENT, 10^DIRECT_EXPONENT]``
DIRECT_EXPONENT = 100


@dataclass(frozen=True, eq=False)
class Normalization:
    """A problem in normalized units and the maps back (see the module docstring).

    Attributes:
        source: the problem in its own units (held by a weak reference: the problem caches
            its normalization, and a cycle would keep large arrays alive until a GC run).
        reward_shift: ``u(x)``, shape ``(X,)`` (zeros when ``direct``).
        reward_scale: ``s``.
        constraint_scales: ``a``, shape ``(m,)``.
        direct: the oracle runs on ``source``'s arrays (no copy).
        maxima: ``max_pi E_rho E_pi h'_i``, shape ``(m,)``.
        spreads: the ranges of ``r'`` and of each ``h'_i`` over the support, shape ``(1 + m,)``.
        witnesses: row ``i`` is ``E_rho h'(x, y_i(x))`` for the maximizer ``y_i(x)`` of ``h_i``
            on the support, shape ``(m, m)`` (Slater candidates).
        support_entries: the number of support entries.
    """

    source_ref: weakref.ReferenceType
    reward_shift: np.ndarray
    reward_scale: float
    constraint_scales: np.ndarray
    direct: bool
    maxima: np.ndarray
    spreads: np.ndarray
    witnesses: np.ndarray
    support_entries: int
    memo: dict = field(default_factory=dict, repr=False)

    @property
    def source(self) -> AlignmentProblem:
        """The problem in its own units."""
        p = self.source_ref()
        if p is None:
            raise ValueError("source: the problem of this normalization no longer exists")
        return p

    @property
    def beta(self) -> float:
        """``beta' = beta / s``."""
        return self.source.beta / self.reward_scale

    @cached_property
    def problem(self) -> AlignmentProblem:
        """The normalized :class:`AlignmentProblem` (absolute, ``c' = 0``): a copy of the reward
        and utility tables, built on first use (always for a problem that is not ``direct``)."""
        p = self.source
        shift = _support_row_max(p, p.reward) if self.direct else self.reward_shift
        off = ~p.support  # size = (X, Y)
        r = p.reward - shift[:, None]  # size = (X, Y)
        r[off] = 0.0
        r /= self.reward_scale
        h = p.utilities - p.offsets[:, None, None]  # size = (m, X, Y)
        h[:, off] = 0.0
        h /= self.constraint_scales[:, None, None]
        return AlignmentProblem(r, h, np.zeros(p.num_constraints), self.beta, p.reference,
                                p.prompt_weights, relative=False, names=p.names)

    # ----------------------------------------------------------------- maps
    def to_internal(self, lam: np.ndarray) -> np.ndarray:
        """``lam' = lam a / s`` (raises when a multiplier overflows in normalized units)."""
        with np.errstate(over="ignore"):
            out = lam * (self.constraint_scales / self.reward_scale)
        if not np.isfinite(out).all():
            raise ValueError(f"lam: {lam.tolist()} is too large for this problem: lam * (scale of "
                             "h) / (scale of r) overflows float64")
        return out

    def to_problem(self, lam_n: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
        """``lam = lam' s / a``; a multiplier float64 cannot hold raises ``ValueError``."""
        with np.errstate(over="ignore"):
            lam = lam_n * (self.reward_scale / self.constraint_scales)
        bad = ~np.isfinite(lam)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"utilities: the multiplier of constraint {names[i]!r} overflows float64 "
                f"(reward scale {self.reward_scale:.3g} over utility scale "
                f"{self.constraint_scales[i]:.3g}, times lam' = {lam_n[i]:.3g})"
            )
        return lam

    def value(self, normalized_value: float) -> float:
        """``E_rho u + s * value'`` (a dual or primal value back in the problem's units)."""
        rho = self.source.prompt_weights
        out = float(rho @ self.reward_shift) + self.reward_scale * float(normalized_value)
        if not np.isfinite(out):
            raise ValueError(f"reward: the objective value overflows float64 (reward scale "
                             f"{self.reward_scale:.3g})")
        return out

    # --------------------------------------------------------------- passes
    def exponent_base(self, p: AlignmentProblem) -> tuple[np.ndarray, float]:
        """``(q, beta_q)`` with ``q = log pi_ref + r / beta_q`` on ``p``'s arrays (``p`` the source
        or the normalized copy) and ``beta_q = p.beta``, computed once (one blocked pass) and
        cached: the oracle passes read ``q`` and ``m`` utilities, not ``r``, ``log pi_ref`` and
        ``m`` utilities.  It stands in for ``p.log_reference`` (one ``(X, Y)`` array), which a
        solve no longer builds (the final pass recovers ``log pi_ref = q - r / beta_q``)."""
        key = "q" if p is self.source else "q_copy"
        if key not in self.memo:
            self.memo[key] = (_log_reference_plus(p), p.beta)
        return self.memo[key]

    def dual_sums_at(self, lam_n: np.ndarray, beta_n: float, order: int,
                     backend: str = "numpy", policy: bool = False) -> DualEval:
        """``D'``, its gradient and Hessian at ``lam'`` for the normalized problem at ``beta'
        = beta_n`` (one pass; :func:`dualgap.dual.dual_sums` or its torch twin).

        ``policy`` (numba, direct, at the problem's beta; else ignored): the same pass also
        writes ``pi_lam`` and the final pass's sums, kept for :meth:`take_policy` (a solve asks
        for this where its next iterate is predicted to converge)."""
        s, a = self.reward_scale, self.constraint_scales
        self.memo.pop("policy_at", None)
        if policy and self.direct and backend == "numba" and order == 2:
            out = self._oracle_with_policy(lam_n, beta_n)
            if out is not None:
                return out
        if self.direct:
            with np.errstate(over="ignore", invalid="ignore"):
                lam = lam_n * (s / a)
                ev = _backend_sums(self.source, lam, beta_n * s, order, backend,
                                   self._base(self.source, backend))
                out = DualEval(
                    lam_n,
                    ev.value / s,
                    None if ev.gradient is None else ev.gradient / a,
                    None if ev.hessian is None else ev.hessian * s / np.outer(a, a),
                )
            if _finite(out):
                return out
        return _backend_sums(self.problem, lam_n, beta_n, order, backend,
                             self._base(self.problem, backend))

    def _oracle_with_policy(self, lam_n: np.ndarray, beta_n: float) -> DualEval | None:
        """The compiled oracle pass that also writes the policy (see :meth:`dual_sums_at`), or
        None where it does not apply (another beta, values that are not finite)."""
        from .dual_numba import numba_policy_sums

        p, s, a = self.source, self.reward_scale, self.constraint_scales
        q, bq = self.exponent_base(p)
        beta = beta_n * s
        if abs(beta - bq) > 4 * np.finfo(float).eps * bq:
            return None
        with np.errstate(over="ignore", invalid="ignore"):
            lam = lam_n * (s / a)  # bit for bit the lam that solve's final pass gets
            c = lam * (1.0 / p.beta)  # and the c that the final pass computes
            if not np.isfinite(c).all():
                return None
            pi = np.empty_like(p.reward)
            ps, sums = numba_policy_sums(q, p.reward, 0.0, p.utilities, p.prompt_weights, c,
                                         1.0 / bq, pi, hessian=True)
            ev = sums.finish(lam, beta, p.offsets, 2)
            out = DualEval(lam_n, ev.value / s, ev.gradient / a,
                           ev.hessian * s / np.outer(a, a))
        if not (_finite(out) and ps.finite and np.isfinite(ps.utilities).all()
                and np.isfinite(ps.reward + ps.kl)):
            return None
        self.memo["policy_at"] = (lam, (pi, ps.utilities - p.offsets,
                                        (ps.reward - p.beta * ps.kl) / s))
        return out

    def take_policy(self, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
        """:meth:`final`'s ``(pi_lam, slack, J')`` when the last oracle pass wrote them at
        this very ``lam`` (bit for bit), else None; the kept policy is released either way."""
        kept = self.memo.pop("policy_at", None)
        if kept is not None and np.array_equal(kept[0], lam):
            return kept[1]
        return None

    def _base(self, p: AlignmentProblem, backend: str) -> tuple[np.ndarray, float]:
        if backend in ("numpy", "numba"):
            return self.exponent_base(p)
        return None, None  # type: ignore[return-value]  # torch keeps its own device copy

    def ray_bound(self, w_n: np.ndarray) -> float:
        """``E_rho max_supp w'^T h'`` (see :func:`dualgap.ray_bound`), in normalized units."""
        from .feasibility import ray_bound

        if self.direct:
            with np.errstate(over="ignore", invalid="ignore"):
                out = ray_bound(self.source, w_n / self.constraint_scales)
            if np.isfinite(out):
                return out
        return ray_bound(self.problem, w_n)

    def final(self, lam: np.ndarray, backend: str = "numpy"
              ) -> tuple[np.ndarray, np.ndarray, float]:
        """``(pi_lam, slack, J'(pi_lam))`` in one pass that writes the policy once into its
        ``(X, Y)`` array: ``slack = E_rho E_pi h`` in the problem's units, ``J'`` from the policy
        in normalized units (``J = E_rho u + s J'``, :meth:`value`).  ``lam`` is in the
        problem's units, checked; ``backend="numba"`` runs the pass compiled
        (:func:`dualgap.dual_numba.numba_policy_sums`), any other numpy's."""
        pi, ps, direct = self._policy_pass(lam, True, backend == "numba")
        if direct:
            p = self.source
            return pi, ps.utilities - p.offsets, (ps.reward - p.beta * ps.kl) / self.reward_scale
        return pi, self.constraint_scales * ps.utilities, ps.reward - self.beta * ps.kl

    def policy(self, lam: np.ndarray) -> np.ndarray:
        """``pi_lam`` (``lam`` in the problem's units, checked), written once."""
        return self._policy_pass(lam, sums=False)[0]

    def _policy_pass(self, lam: np.ndarray, sums: bool, compiled: bool = False
                     ) -> tuple[np.ndarray, PolicySums, bool]:
        p = self.source
        out = np.empty_like(p.reward)
        if self.direct:
            with np.errstate(over="ignore", invalid="ignore"):
                ps = _policy_sums(p, lam, out, sums, self.exponent_base(p), compiled)
            if ps.finite and np.isfinite(ps.utilities).all() and np.isfinite(ps.reward + ps.kl):
                return out, ps, True
        n = self.problem
        with np.errstate(over="ignore", invalid="ignore"):
            ps = _policy_sums(n, self.to_internal(lam), out, sums, self.exponent_base(n),
                              compiled)
        if not ps.finite:
            raise ValueError(f"lam: {lam.tolist()} is too large for this problem: (r + lam^T h) "
                             f"/ beta overflows float64 (beta = {p.beta:.3g})")
        return out, ps, False


def _policy_sums(p: AlignmentProblem, lam: np.ndarray, out: np.ndarray, sums: bool,
                 base: tuple[np.ndarray, float], compiled: bool) -> PolicySums:
    """The final pass over ``p``'s arrays at ``p.beta`` with ``base = (q, beta_q)``: numpy's
    :func:`~dualgap.dual.policy_sums`, or the compiled one (``compiled`` and ``sums``)."""
    q, bq = base
    if compiled and sums:
        from .dual_numba import numba_policy_sums

        c = lam * (1.0 / p.beta)
        if np.isfinite(c).all():
            return numba_policy_sums(q, p.reward, 0.0, p.utilities, p.prompt_weights, c,
                                     1.0 / bq, out)
    return policy_sums(p.reward, p.utilities, None, p.prompt_weights, lam,  # type: ignore
                       p.beta, out, sums, base=q, base_beta=bq)


def _finite(ev: DualEval) -> bool:
    return bool(np.isfinite(ev.value) and (ev.gradient is None or np.isfinite(ev.gradient).all())
                and (ev.hessian is None or np.isfinite(ev.hessian).all()))


def _backend_sums(p: AlignmentProblem, lam: np.ndarray, beta: float, order: int,
                  backend: str, base: tuple[np.ndarray, float]) -> DualEval:
    """One oracle pass over ``p``'s arrays at ``beta`` (not ``p.beta``), numpy, numba or
    torch; ``base = (q, beta_q)`` (:meth:`Normalization.exponent_base`) serves numpy and numba
    at ``beta = beta_q`` (the last stage); the continuation stages (other betas) take numpy's
    ``(r + lam^T g) / beta + log pi_ref`` with ``log pi_ref`` computed block by block."""
    q, bq = base
    at_base = q is not None and abs(beta - bq) <= 4 * np.finfo(float).eps * bq
    with np.errstate(over="ignore"):
        c = lam * (1.0 / beta)
    if backend == "numba" and at_base and np.isfinite(c).all():
        from .dual_numba import numba_dual_sums

        sums: DualSums = numba_dual_sums(q, p.reward, 0.0, p.utilities, p.prompt_weights, c,
                                         order)
    elif backend in ("numpy", "numba"):
        log_ref = None if at_base else LogOf(p.reference)
        sums = dual_sums(p.reward, p.utilities, log_ref, p.prompt_weights, lam,  # type: ignore
                         beta, order, base=q if at_base else None, base_beta=bq)
    else:
        from .dual_torch import torch_data, torch_dual_sums

        dtype = "float32" if backend == "torch-float32" else "float64"
        sums = torch_dual_sums(torch_data(p, dtype=dtype), lam, beta, order)
    return sums.finish(lam, beta, p.offsets, order)


def _support_row_max(p: AlignmentProblem, values: np.ndarray) -> np.ndarray:
    """``max_{y in supp(x)} values(x, y)``, shape ``(X,)``, block by block."""
    out = np.empty(p.num_prompts)
    X, Y = values.shape
    step = max(1, BLOCK_ENTRIES // Y)
    for a in range(0, X, step):
        b = min(X, a + step)
        out[a:b] = np.where(p.reference[a:b] > 0, values[a:b], -np.inf).max(axis=1)
    return out


def normalize(problem: AlignmentProblem, compiled: bool = False) -> Normalization:
    """The :class:`Normalization` of ``problem`` (use ``problem.normalized``, which caches it).

    One pass over the data (:func:`_stats_numpy`, or with ``compiled`` the numba pass
    :func:`dualgap.dual_numba.numba_stats`, which also writes ``q = log pi_ref + r / beta``
    and caches it for the oracle), which also yields ``E_rho E_ref g`` (so the offsets ``c``,
    when not known yet, cost no pass of their own), then the choice direct / copy.
    """
    names = problem.names
    m = problem.num_constraints
    rho = problem.prompt_weights
    need_ref_g = bool(m) and "reference_utilities" not in problem.__dict__
    if compiled:
        from .dual_numba import numba_stats

        st = numba_stats(problem, max(1, BLOCK_ENTRIES // problem.num_responses))
        st["ref_g"] = st.pop("ref_rows") @ rho
    else:
        st = _stats_numpy(problem, need_ref_g)
    width, top, low, at = st["width"], st["top"], st["low"], st["at"]
    if not np.isfinite(width).all():
        x = int(np.argmax(~np.isfinite(width)))
        raise ValueError(f"reward: the spread of the reward over the support of prompt "
                         f"x = {x} overflows float64")
    spread, r_abs, g_abs = float(width.max()), st["r_abs"], st["g_abs"]
    with np.errstate(over="ignore", invalid="ignore"):
        if need_ref_g:  # the offsets without a pass
            problem.__dict__["reference_utilities"] = st["ref_g"]
        c = problem.offsets
        if not np.isfinite(c).all():
            i = int(np.argmax(~np.isfinite(c)))
            raise ValueError(f"thresholds: the offset c = E_ref g + b of constraint "
                             f"{names[i]!r} overflows float64")
        top -= c[:, None]  # max_supp h_i per prompt
        low -= c[:, None]
        at -= c[None, :, None]  # h_j at the maximizer of h_i
        h_hi = top.max(axis=1, initial=-np.inf)
        h_lo = low.min(axis=1, initial=np.inf)
        max_sum = top @ rho  # sum_x rho max_supp h_i
        wit = at @ rho  # sum_x rho h_j(x, argmax_supp h_i), size = (m, m)
    a_scale = np.maximum(np.abs(h_hi), np.abs(h_lo)) if m else np.zeros(0)  # max_supp |h_i|
    if not np.isfinite(a_scale).all():
        i = int(np.argmax(~np.isfinite(a_scale)))
        raise ValueError(f"utilities: h = g - c of constraint {names[i]!r} overflows "
                         f"float64 (threshold {problem.thresholds[i]!r})")
    a_scale = np.where(a_scale > 0, a_scale, 1.0)
    s = max(spread, problem.beta)
    beta_n = problem.beta / s
    if not beta_n >= BETA_MIN:
        raise ValueError(
            f"beta: {problem.beta!r} against a reward spread of {spread:.3g}: beta / spread = "
            f"{beta_n:.3g} is below {BETA_MIN:g}, beyond float64 (the optimal policy is an argmax "
            "float64 cannot resolve)"
        )
    lo_e, hi_e = 10.0**-DIRECT_EXPONENT, 10.0**DIRECT_EXPONENT
    scales = np.concatenate([[s, problem.beta], a_scale])
    direct = bool(
        r_abs <= DIRECT_RANGE * s and (g_abs <= DIRECT_RANGE * a_scale).all()
        and ((scales >= lo_e) & (scales <= hi_e)).all()
    )
    with np.errstate(over="ignore", under="ignore"):
        spreads = np.concatenate([[spread / s], (h_hi - h_lo) / a_scale])
        maxima = max_sum / a_scale
        witnesses = wit / a_scale[None, :]
    X = problem.num_prompts
    out = Normalization(weakref.ref(problem), np.zeros(X) if direct else st["shift"], s,
                        a_scale, direct, maxima, spreads, witnesses, st["entries"])
    if "q" in st and direct:  # the compiled pass wrote q = log pi_ref + r / beta: keep it
        out.memo["q"] = (st["q"], problem.beta)
    return out

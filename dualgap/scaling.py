"""Normalized units: the same problem with scores of size one, for solving at any float64 scale.

The dual is homogeneous and shift-invariant (docs/problem.md).  With a per-prompt reward shift
``u(x)``, a reward scale ``s > 0`` and one scale ``a_i > 0`` per constraint::

    r'   = (r - u(x)) / s        h'_i = h_i / a_i        beta' = beta / s
    lam'_i = lam_i a_i / s       pi_{lam'}' = pi_lam     D(lam) = E_rho u + s D'(lam')
    grad_i D(lam) = a_i grad_i D'(lam')                  J(pi) = E_rho u + s J'(pi)

Here ``u(x) = max_{y in supp(x)} r(x, y)``, ``a_i = max_supp |h_i|`` (1 when ``h_i = 0`` on the
support) and ``s = max(spread of r over the support, beta)``, so ``|r'| <= 1``, ``|h'_i| <= 1``
and ``beta' <= 1``.  The normalized problem is absolute (``c' = 0``): its utilities are ``h'``
themselves, so offsets of 1e12 cancel once, exactly, in ``h = g - c``, and never again.
Entries outside the reference support are set to 0 (they never carry probability).

Anything float64 cannot hold raises ``ValueError`` naming the field and why (a spread or an
offset that overflows, or ``beta / spread`` below :data:`BETA_MIN`).  Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .problem import AlignmentProblem

__all__ = ["Normalization", "normalize", "BETA_MIN"]

#: the smallest beta' = beta / s accepted: 1 / beta' and the Hessian bound 4 / beta' must fit
#: in float64 with room to spare
BETA_MIN = 1e-306


@dataclass(frozen=True, eq=False)
class Normalization:
    """``problem`` in normalized units and the maps back (see the module docstring).

    Attributes:
        problem: the normalized :class:`AlignmentProblem` (absolute, ``c' = 0``).
        reward_shift: ``u(x)``, shape ``(X,)``.
        reward_scale: ``s``.
        constraint_scales: ``a``, shape ``(m,)``.
    """

    problem: AlignmentProblem
    reward_shift: np.ndarray
    reward_scale: float
    constraint_scales: np.ndarray

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
        rho = self.problem.prompt_weights
        out = float(rho @ self.reward_shift) + self.reward_scale * float(normalized_value)
        if not np.isfinite(out):
            raise ValueError(f"reward: the objective value overflows float64 (reward scale "
                             f"{self.reward_scale:.3g})")
        return out


def normalize(problem: AlignmentProblem) -> Normalization:
    """The normalized problem of ``problem`` (use ``problem.normalized``, which caches it).

    Works in place on two new arrays (``r'`` and ``h'``), so the extra memory is one copy of
    the reward and utility tables.
    """
    off = ~problem.support  # size = (X, Y)
    names = problem.names
    with np.errstate(over="ignore", invalid="ignore"):
        shift = np.where(off, -np.inf, problem.reward).max(axis=1)  # size = (X,)
        r = problem.reward - shift[:, None]  # size = (X, Y), <= 0 on the support
        r[off] = 0.0
        bad_rows = ~np.isfinite(r).all(axis=1)
        if bad_rows.any():
            raise ValueError(f"reward: the spread of the reward over the support of prompt "
                             f"x = {int(np.argmax(bad_rows))} overflows float64")
        c = problem.offsets
        if not np.isfinite(c).all():
            i = int(np.argmax(~np.isfinite(c)))
            raise ValueError(f"thresholds: the offset c = E_ref g + b of constraint "
                             f"{names[i]!r} overflows float64")
        h = problem.utilities - c[:, None, None]  # size = (m, X, Y)
        h[:, off] = 0.0
        a = np.array([np.abs(hi).max() for hi in h], dtype=np.float64).reshape(-1)  # size = (m,)
        if not np.isfinite(a).all():
            i = int(np.argmax(~np.isfinite(a)))
            raise ValueError(f"utilities: h = g - c of constraint {names[i]!r} overflows "
                             f"float64 (threshold {problem.thresholds[i]!r})")
    spread = float(-r.min())
    a = np.where(a > 0, a, 1.0)
    s = max(spread, problem.beta)
    beta_n = problem.beta / s
    if not beta_n >= BETA_MIN:
        raise ValueError(
            f"beta: {problem.beta!r} against a reward spread of {spread:.3g}: beta / spread = "
            f"{beta_n:.3g} is below {BETA_MIN:g}, beyond float64 (the optimal policy is an argmax "
            "float64 cannot resolve)"
        )
    r /= s
    h /= a[:, None, None]
    normalized = AlignmentProblem(
        r, h, np.zeros(len(c)), beta_n, problem.reference, problem.prompt_weights,
        relative=False, names=names,
    )
    return Normalization(normalized, shift, s, a)

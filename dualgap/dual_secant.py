"""The secant correction of the sampled dual Hessian, and the slack's sampling noise (numpy only).

The sampled Hessian ``H = (1/beta) E_rho Cov_pi_t(h)`` is the curvature of the
*distribution-space* dual ``D``.  For a policy class with ``nu > 0`` the dual that CAID actually
descends is ``D_p``, whose curvature can differ (on the benchmark's log-linear class it is about
half of ``H``), and a Newton step with ``H`` then converges only linearly.  The change of the
sampled slack between two iterates measures the curvature the iteration really sees, at no extra
sample::

    s = lam_t - lam_{t-1},   y = u_hat_t - u_hat_{t-1}   (~ hess D_p s)

The sampled Hessians at both ends predict ``y ~ H_bar s`` with ``H_bar = (H_t + H_{t-1}) / 2``
(the trapezoid rule along the segment: exact to second order for the tabular class, where the
sampled Hessian *is* the dual's).  :func:`secant_hessian` measures how far the observed change
departs from that prediction and carries the departure over to ``H_t``: ``M``, the BFGS update
of the identity with the pair whitened by ``H_bar`` (``s' = H_bar^{1/2} s``,
``y' = H_bar^{-1/2} y``, so that ``H_bar^{1/2} M H_bar^{1/2} s = y``), has its eigenvalues
clipped into :data:`SECANT_BOUNDS` and gives ``B = H_t^{1/2} M H_t^{1/2}``.  For ``m = 1``
this is ``B = H_t * y / (H_bar s)``; where the sampled Hessian predicts the change, ``M ~ I``
and Newton keeps its quadratic rate.

With sampled slacks the correction takes no more than the evidence supports: ``y`` is pulled
towards the prediction ``H_bar s`` until ``s^T y / s^T H_bar s`` is the end nearest to 1 of its
interval ``ratio +- SECANT_Z * sqrt(s^T Cov(y) s) / s^T H_bar s`` (``Cov(y) = Sigma_t +
Sigma_{t-1}``, :func:`slack_noise`, from the same samples; 0 for exact expectations, where
the pair is taken as it is), and an interval containing 1 leaves ``H_t`` as it is (the reason
is returned), as does a negative curvature.  ``SECANT_Z`` and ``SECANT_BOUNDS`` are fixed
constants, free of the units of ``r``, ``g`` and ``beta``; no user supplies them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SECANT_Z", "SECANT_BOUNDS", "SecantPair", "SecantMemory", "secant_hessian",
           "slack_noise"]

#: standard errors by which ``s^T y`` must exceed its sampling noise for the correction.
SECANT_Z = 3.0
#: range of the corrected Hessian's eigenvalues relative to the sampled Hessian's.
SECANT_BOUNDS = (0.25, 4.0)


@dataclass(frozen=True)
class SecantPair:
    """``step`` = ``s = lam_t - lam_{t-1}``, ``change`` = ``y = u_hat_t - u_hat_{t-1}`` (both
    ``(m,)``), ``noise`` = ``Cov(y)`` and ``hessian`` = the sampled Hessian ``H_{t-1}`` at
    ``lam_{t-1}`` (None: unknown), both ``(m, m)``."""

    step: np.ndarray
    change: np.ndarray
    noise: np.ndarray
    hessian: np.ndarray | None = None

    def restrict(self, keep: np.ndarray) -> SecantPair:
        """The pair on the coordinates ``keep`` (a boolean mask)."""
        sub = np.ix_(keep, keep)
        return SecantPair(self.step[keep], self.change[keep], self.noise[sub],
                          None if self.hessian is None else self.hessian[sub])


def slack_noise(samples) -> np.ndarray:
    """``Sigma = Cov(u_hat) = sum_x rho(x)^2 Cov_q(h(x, .)) / K`` for i.i.d. draws (Bessel-
    corrected, estimated from the same samples), 0 for exact weights; shape ``(m, m)``.
    ``samples`` is a :class:`dualgap.dual_steps.OnPolicySamples`."""
    m = samples.num_constraints
    if samples.weights is not None:
        return np.zeros((m, m))
    K = samples.reward.shape[1]
    if K < 2:
        raise ValueError(f"samples: the slack's noise needs K >= 2 draws per prompt, got {K}")
    g = samples.utilities  # size = (m, X, K)
    gc = g - g.mean(axis=2, keepdims=True)
    cov = np.einsum("ixk,jxk->xij", gc, gc) / (K - 1)  # per prompt, size = (X, m, m)
    return np.einsum("x,xij->ij", samples.prompt_weights ** 2, cov) / K


def secant_hessian(H: np.ndarray, pair: SecantPair
                   ) -> tuple[np.ndarray | None, float | None, str | None]:
    """``(B, ratio, reason)``: ``B`` the corrected ``H`` (None when the pair cannot be used,
    ``reason`` then says why), ``ratio = s^T y / s^T H_bar s`` the curvature the pair measured
    along ``s`` relative to the sampled one (before the clipping; None when undefined).

    ``H`` must be positive definite (the caller passes the Hessian on Newton's free set, which
    it has checked), ``pair`` restricted to the same coordinates; a pair without ``hessian``
    takes ``H_bar = H``."""
    H = np.asarray(H, dtype=np.float64)
    s, y = np.asarray(pair.step, np.float64), np.asarray(pair.change, np.float64)
    Hbar = H if pair.hessian is None else (H + np.asarray(pair.hessian, np.float64)) / 2
    ebar = np.linalg.eigvalsh(Hbar)
    if not ebar[0] > 0:
        return None, None, "the previous sampled Hessian is singular on the free set"
    sHs = float(s @ Hbar @ s)
    if not np.isfinite(sHs) or sHs <= 0:
        return None, None, "no step on the free set since the last samples"
    sy = float(s @ y)
    ratio = sy / sHs
    half = SECANT_Z * float(np.sqrt(max(float(s @ pair.noise @ s), 0.0))) / sHs
    if not abs(ratio - 1.0) > half:
        return None, ratio, (f"slack change within its noise (ratio {ratio:.3g} +- {half:.3g} "
                             f"at {SECANT_Z:g} standard errors)")
    near = ratio - np.sign(ratio - 1.0) * half  # the end of the interval nearest to 1
    if not near > 0:
        return None, ratio, f"negative curvature along the step (ratio {ratio:.3g} +- {half:.3g})"
    Hs = Hbar @ s
    y = Hs + (near - 1.0) / (ratio - 1.0) * (y - Hs)  # s^T y / s^T H_bar s = near
    rbar = _sqrtm(Hbar)
    sw = rbar @ s  # whitened: H_bar -> I
    yw = np.linalg.solve(rbar, y)
    M = np.eye(len(s)) - np.outer(sw, sw) / (sw @ sw) + np.outer(yw, yw) / (sw @ yw)
    ev, W = np.linalg.eigh((M + M.T) / 2)
    ev = np.clip(ev, *SECANT_BOUNDS)
    root = _sqrtm(H)
    return root @ ((W * ev) @ W.T) @ root, ratio, None


def _sqrtm(A: np.ndarray) -> np.ndarray:
    e, V = np.linalg.eigh(A)
    return (V * np.sqrt(np.maximum(e, 0.0))) @ V.T


class SecantMemory:
    """The last ``lam``, ``u_hat``, ``Sigma`` and ``H_hat`` a stepper saw; calling it with the
    next samples
    returns the :class:`SecantPair` since then (None at the first call, after a change of
    ``m``, or for samples without a noise estimate, ``K < 2`` i.i.d. draws) and remembers them."""

    KEYS = ("secant_lam", "secant_slack", "secant_noise", "secant_hessian")

    def __init__(self) -> None:
        self.last: tuple[np.ndarray, ...] | None = None

    @property
    def noise(self) -> np.ndarray | None:
        """``Sigma`` of the samples of the last call."""
        return None if self.last is None else self.last[2]

    def __call__(self, samples, lam: np.ndarray, hessian: np.ndarray | None
                 ) -> SecantPair | None:
        """``hessian``: the sampled Hessian of ``samples`` (None: no pair, as for K < 2)."""
        if hessian is None:
            self.last = None
            return None
        lam = np.asarray(lam, dtype=np.float64).copy()
        u, sig = samples.slack(), slack_noise(samples)
        last, self.last = self.last, (lam, u, sig, np.asarray(hessian, np.float64))
        if last is None or last[0].shape != lam.shape:
            return None
        return SecantPair(lam - last[0], u - last[1], sig + last[2], last[3])

    def state_dict(self) -> dict:
        vals = [None] * 4 if self.last is None else [a.tolist() for a in self.last]
        return dict(zip(self.KEYS, vals, strict=True))

    @classmethod
    def from_state(cls, state: dict) -> SecantMemory:
        """The memory :meth:`state_dict` describes; all three keys None: empty."""
        out = cls()
        vals = [state.get(k) for k in cls.KEYS]
        if all(v is None for v in vals):
            return out
        if any(v is None for v in vals):
            raise ValueError(f"state: {', '.join(cls.KEYS)} go together, got {vals!r}")
        arrs = tuple(np.asarray(v, dtype=np.float64) for v in vals)
        m = arrs[0].shape[0] if arrs[0].ndim == 1 else -1
        if [a.shape for a in arrs] != [(m,), (m,), (m, m), (m, m)] or not all(
                np.isfinite(a).all() for a in arrs):
            raise ValueError(f"state: secant shapes {[a.shape for a in arrs]} are not "
                             "(m,), (m,), (m, m), (m, m) of finite values")
        out.last = arrs
        return out

"""The current policy's scored samples for a dual step, and the slack's lower confidence bound.

:class:`OnPolicySamples` holds ``K`` scored responses per prompt with weights ``q(x, k)``
(``1/K`` for i.i.d. draws from ``pi_t``, ``pi_t(y|x)`` for the exact expectation);
:func:`exact_samples` and :func:`policy_samples` build them for a tabular policy.

**The margin.**  A dual step that drives the *estimated* slack ``u_hat`` to 0 leaves the
constraint violated about half the time (the estimate's noise).  With a one-sided confidence
level ``c`` (``confidence``) the step drives the lower confidence bound instead::

    u_low = u_hat - z_c SE(u_hat),   z_c = Phi^{-1}(c),   SE_i = sqrt(Sigma_ii)

with ``Sigma = Cov(u_hat)`` of :func:`dualgap.dual_secant.slack_noise` (estimated from the same
samples; 0 for exact expectations, so the exact case is unchanged).  :func:`slack_margin`
returns ``z_c SE`` (the dual step divides it by ``sqrt(n)`` when its iterate averages ``n``
sample sets, :mod:`dualgap.dual_steps`).  ``confidence`` None or 0 is no margin
(``u_low = u_hat``); otherwise it must lie in ``[0.5, 1)`` (0.5: ``z = 0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from .dual_secant import slack_noise
from .problem import AlignmentProblem

__all__ = ["OnPolicySamples", "exact_samples", "policy_samples", "check_confidence",
           "confidence_z", "slack_margin"]

@dataclass(frozen=True)
class OnPolicySamples:
    """Scored responses of the current policy, ``K`` per prompt (all arrays float64).

    Attributes:
        reward: ``r(x, y_{x,k})``, shape ``(X, K)``.
        utilities: ``g_i(x, y_{x,k})``, shape ``(m, X, K)``.
        offsets: ``c`` with ``h = g - c``, shape ``(m,)``.
        beta: the KL coefficient.
        weights: ``q(x, k)``, shape ``(X, K)``, rows summing to 1 (exact expectation), or
            None: i.i.d. draws, ``q = 1/K``.
        log_policy: ``log pi_t(y_{x,k}|x)``, shape ``(X, K)``, or None when unknown.
        log_reference: ``log pi_ref(y_{x,k}|x)``, shape ``(X, K)``, or None when unknown.
        prompt_weights: ``rho``, shape ``(X,)``; None: uniform.
    """

    reward: np.ndarray
    utilities: np.ndarray
    offsets: np.ndarray
    beta: float
    weights: np.ndarray | None = None
    log_policy: np.ndarray | None = None
    log_reference: np.ndarray | None = None
    prompt_weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        r = np.asarray(self.reward, dtype=np.float64)
        if r.ndim != 2 or r.shape[1] < 1:
            raise ValueError(f"reward: expected shape (X, K) with K >= 1, got {r.shape}")
        X, K = r.shape
        g = np.asarray(self.utilities, dtype=np.float64)
        if g.ndim != 3 or g.shape[1:] != (X, K):
            raise ValueError(f"utilities: expected shape (m, {X}, {K}), got {g.shape}")
        c = np.asarray(self.offsets, dtype=np.float64).reshape(-1)
        if c.shape != (g.shape[0],):
            raise ValueError(f"offsets: shape {c.shape} does not match m = {g.shape[0]}")
        beta = float(self.beta)
        if not np.isfinite(beta) or beta <= 0:
            raise ValueError(f"beta: must be a positive finite float, got {self.beta!r}")
        for name, arr in (("reward", r), ("utilities", g), ("offsets", c)):
            if not np.isfinite(arr).all():
                raise ValueError(f"{name}: non-finite value")
        set_(self, "reward", r)
        set_(self, "utilities", g)
        set_(self, "offsets", c)
        set_(self, "beta", beta)
        for name in ("weights", "log_policy", "log_reference"):
            v = getattr(self, name)
            if v is not None:
                arr = np.asarray(v, dtype=np.float64)
                if arr.shape != (X, K):
                    raise ValueError(f"{name}: expected shape ({X}, {K}), got {arr.shape}")
                if np.isnan(arr).any() or (name == "weights" and np.isinf(arr).any()):
                    raise ValueError(f"{name}: NaN or infinite value")
                set_(self, name, arr)
        if self.weights is not None:
            w = self.weights
            if (w < 0).any() or np.abs(w.sum(axis=1) - 1.0).max() > 1e-8:
                raise ValueError("weights: rows must be non-negative and sum to 1")
        produced = np.ones((X, K), bool) if self.weights is None else self.weights > 0
        if self.log_policy is not None and (np.isinf(self.log_policy) & produced).any():
            raise ValueError("log_policy: -inf at a sample the policy produced")
        rho = (np.full(X, 1.0 / X) if self.prompt_weights is None
               else np.asarray(self.prompt_weights, dtype=np.float64).reshape(-1))
        if rho.shape != (X,) or (rho < 0).any() or abs(rho.sum() - 1.0) > 1e-8:
            raise ValueError(f"prompt_weights: expected {X} non-negative weights summing to 1")
        set_(self, "prompt_weights", rho)

    @property
    def num_constraints(self) -> int:
        return self.utilities.shape[0]

    @property
    def sample_weights(self) -> np.ndarray:
        """``q``, shape ``(X, K)``."""
        X, K = self.reward.shape
        return np.full((X, K), 1.0 / K) if self.weights is None else self.weights

    @property
    def h(self) -> np.ndarray:
        """``h = g - c``, shape ``(m, X, K)``."""
        return self.utilities - self.offsets[:, None, None]

    def slack(self) -> np.ndarray:
        """``u_hat = sum_x rho(x) sum_k q(x,k) h(x, y_{x,k})``, shape ``(m,)``."""
        return np.einsum("x,xk,ixk->i", self.prompt_weights, self.sample_weights, self.h)



def check_confidence(confidence: object, name: str = "confidence") -> float | None:
    """``confidence`` as a float in ``[0.5, 1)``, or None for no margin (None or 0); a
    ValueError naming ``name`` otherwise."""
    if confidence is None:
        return None
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        raise ValueError(f"{name}: must be 0 (no margin) or a level in [0.5, 1), got "
                         f"{confidence!r}")
    c = float(confidence)
    if c == 0:
        return None
    if not 0.5 <= c < 1:
        raise ValueError(f"{name}: must be 0 (no margin) or a level in [0.5, 1), got "
                         f"{confidence!r}")
    return c


def confidence_z(confidence: object) -> float:
    """``z_c = Phi^{-1}(c)``, the one-sided normal quantile (0 for no margin)."""
    c = check_confidence(confidence)
    return 0.0 if c is None else NormalDist().inv_cdf(c)


def slack_margin(samples: OnPolicySamples, confidence: object) -> np.ndarray:
    """``z_c SE(u_hat)`` per constraint, shape ``(m,)``: 0 without a margin, for exact weights
    (no noise) and for fewer than 2 i.i.d. draws per prompt (no noise estimate)."""
    z = confidence_z(confidence)
    m = samples.num_constraints
    if z == 0 or samples.weights is not None or samples.reward.shape[1] < 2:
        return np.zeros(m)
    return z * np.sqrt(np.maximum(np.diag(slack_noise(samples)), 0.0))


def exact_samples(problem: AlignmentProblem, policy: np.ndarray) -> OnPolicySamples:
    """Every response of ``problem`` weighted by ``policy`` (the exact expectation), with
    the exact log-probabilities; responses outside the reference support get weight 0."""
    pi = np.asarray(policy, dtype=np.float64)
    if pi.shape != problem.reward.shape:
        raise ValueError(f"policy: shape {pi.shape} does not match {problem.reward.shape}")
    sup = problem.support
    with np.errstate(divide="ignore"):
        log_pi = np.log(np.where(sup, pi, 0.0))
    q = np.where(sup, pi, 0.0)
    q = q / q.sum(axis=1, keepdims=True)
    safe = np.where(q > 0, log_pi, 0.0)
    return OnPolicySamples(problem.reward, problem.utilities, problem.offsets, problem.beta,
                           weights=q, log_policy=safe, log_reference=problem.log_reference,
                           prompt_weights=problem.prompt_weights)


def policy_samples(problem: AlignmentProblem, policy: np.ndarray, num_samples: int,
                   rng: np.random.Generator | int | None = None) -> OnPolicySamples:
    """``K = num_samples`` i.i.d. draws per prompt from ``policy``, scored by ``problem``,
    with their log-probabilities under ``policy`` and the reference."""
    from .empirical import sample_responses
    pi = np.asarray(policy, dtype=np.float64)
    idx = sample_responses(pi, num_samples, rng)  # size = (X, K)
    rows = np.arange(problem.num_prompts)[:, None]
    with np.errstate(divide="ignore"):
        log_pi = np.log(pi[rows, idx])
    return OnPolicySamples(problem.reward[rows, idx], problem.utilities[:, rows, idx],
                           problem.offsets, problem.beta, log_policy=log_pi,
                           log_reference=problem.log_reference[rows, idx],
                           prompt_weights=problem.prompt_weights)

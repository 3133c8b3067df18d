"""Self-tuning dual steps for CAID: the next ``lam`` from the current policy's samples (numpy only).

CAID's subgradient step is ``lam_{t+1} = [lam_t - eta u_t]_+`` with a user-chosen ``eta``.  The
rules here compute the step from the *same* on-policy samples that give ``u_t`` and need no
number from the user.  For every prompt ``x`` there are ``K`` responses ``y_{x,k}`` with weights
``q(x, k)`` (``1/K`` for i.i.d. draws from ``pi_t``; ``pi_t(y|x)`` itself for the exact
expectation over all responses)::

    u_hat   = sum_x rho(x) sum_k q(x,k) h(x, y_{x,k})                            # size = (m,)
    H_hat   = (1/beta) sum_x rho(x) Cov_q(h(x, .))    (Bessel-corrected for i.i.d. draws)
            ~ hess D(lam_t) = (1/beta) E_rho Cov_{pi_lam_t}(h)  when pi_t ~ pi_lam_t

Rules (``rule=``):

* ``"newton"``: projected Newton on the free set ``F = {i: lam_i > 0 or u_i < 0}``:
  ``d_F = B_FF^{-1} u_F`` (0 off ``F``), target ``lam - d``; ``B = H_hat``, or, given the
  change of ``u_hat`` since the previous samples (:class:`DualStepper` passes it), its secant
  correction :func:`dualgap.dual_secant.secant_hessian` (the curvature of the dual the
  iteration descends, ``D_p`` for a policy class, which ``H_hat`` can misstate).
* ``"curvature"``: ``eta_t = 1 / lambda_max(H_hat)`` recomputed every call,
  target ``lam - eta_t u_hat``.
* ``"empirical"``: ``lam_hat``, the exact solver (:func:`dualgap.solve`) on the empirical
  instance of the samples reweighted to the reference by their known log-probabilities,
  ``w(x,k) ∝ q(x,k) pi_ref(y_{x,k}|x) / pi_t(y_{x,k}|x)`` (self-normalized per prompt), with
  the absolute thresholds ``c`` (``h = g - c``).
  Its effective sample size per prompt is ``ESS(x) = 1 / sum_k w(x,k)^2``.

**The margin** (``confidence``): every rule reads ``u_low = u_hat - z SE / sqrt(n)``, the
slack's one-sided lower confidence bound at level ``confidence``, in place of ``u_hat``
(:mod:`dualgap.dual_samples`; the empirical rule's thresholds become ``c + z SE / sqrt(n)``),
so its fixed point is a ``lam`` whose slack is estimated ``>= 0`` at that level, not one that
misses the constraint whenever the estimate's noise is positive.  ``n`` (``averaged``) is the
number of sample sets the iterate averages: 1 for :func:`dual_step` alone, ``1 / gain``
(before this step) for :class:`DualStepper`, whose iterate becomes a running average of the
rule's targets once the steps turn back and forth (an approximation: the SE of an average of
``n`` independent slack estimates).  So the margin is full while the steps are few or still
point one way, and it shrinks as the average accumulates: a long run still converges to
``lam*``.  ``SE = 0`` for exact expectations: the exact case is unchanged.

Every rule's projected target ``[lam - d]_+`` is then pulled towards ``lam`` into the trust
region, the range over which samples of the current policy still describe the next one:
``KL(pi_lam || pi_lam+) ~ d^T H_hat d / (2 beta) <= TRUST_KL`` nats (``d = lam - lam+``) and,
by bisection on the step's length, the KL estimated on the samples without that approximation
(:func:`sampled_kl`; it catches a misleading local curvature, e.g. ``H ~ 0`` from a nearly
deterministic policy).  ``TRUST_KL`` is a fixed constant in nats, free of the units of ``r``,
``g`` and ``beta``; no user supplies it.

When the samples cannot support a rule (``K < 2`` draws per prompt, a Hessian that is zero or
singular on the free set, missing log-probabilities, an effective sample size below
``MIN_ESS`` per prompt, an empirical instance that is infeasible) the rule falls back to a
*damped* step ``eta = 1 / L_hat`` with ``L_hat = (1/beta) sum_i (range_i / 2)^2`` -- an upper
bound on ``lambda_max`` of any covariance of ``h`` over the observed values (Popoviciu) -- and
its :class:`DualStepRecord` says so and why.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np

from .dual_samples import (
    OnPolicySamples,
    check_confidence,
    exact_samples,
    policy_samples,
    slack_margin,
)
from .dual_secant import SecantMemory, SecantPair, secant_hessian, slack_noise
from .problem import AlignmentProblem

__all__ = [
    "DUAL_STEP_RULES",
    "DEFAULT_RULE",
    "TRUST_KL",
    "MIN_ESS",
    "DEFAULT_CONFIDENCE",
    "OnPolicySamples",
    "DualStepRecord",
    "dual_step",
    "DualStepper",
    "slack_noise",
    "sampled_hessian",
    "sampled_kl",
    "damped_step_size",
    "policy_samples",
    "exact_samples",
]

DUAL_STEP_RULES = ("newton", "curvature", "empirical")
#: the rule ``step_size: auto`` selects (the measured winner, benchmarks/README.md).
DEFAULT_RULE = "newton"
#: trust region of a step, in nats of ``KL(pi_lam || pi_lam+)`` to second order.
TRUST_KL = 0.5
#: fewest effective samples per prompt (median over prompts) for the ``"empirical"`` rule.
MIN_ESS = 2.0
#: the one-sided confidence level of the margin ``confidence="auto"`` selects (0: none; the
#: measured choice, benchmarks/README.md "Dual steps").
DEFAULT_CONFIDENCE = 0.84
_RCOND = 1e-10  # H_FF eigenvalues below _RCOND * lambda_max count as singular



@dataclass(frozen=True)
class DualStepRecord:
    """What one dual step did: the entry of the lam history.

    ``rule`` is the rule asked for, ``used`` the one that produced ``lam`` (``"damped"`` on a
    fallback, whose reason is ``fallback``); ``eta`` the step size of a gradient-type step
    (None for Newton and empirical); ``ess`` the median effective sample size per prompt of
    the empirical rule's reweighting (and ``ess_min`` the smallest); ``trust_scale`` the factor
    the trust region shrank the step by (1: inside); ``predicted_kl`` ``d^T H d / (2 beta)`` of
    the step taken and ``sampled_kl`` its :func:`sampled_kl`; ``gain`` and ``noise_share``
    those of :class:`DualStepper` (None from
    :func:`dual_step` alone); ``curvature`` the Hessian of a Newton step, ``"sampled"`` or
    ``"secant"`` (:mod:`dualgap.dual_secant`), ``secant_ratio`` the curvature the secant pair
    measured relative to the sampled Hessian, ``secant_skip`` why the pair was not used;
    ``confidence`` the margin's level (None: no margin) and ``margin`` ``z SE(u_hat) / sqrt(n)``
    per constraint (:func:`~dualgap.dual_samples.slack_margin`, ``n`` the sample sets the
    iterate averages; the step drove ``slack - margin``, the slack's lower confidence bound; 0
    for exact expectations).
    """

    rule: str
    used: str
    lam: list[float]
    slack: list[float]
    eta: float | None = None
    fallback: str | None = None
    ess: float | None = None
    ess_min: float | None = None
    trust_scale: float = 1.0
    predicted_kl: float | None = None
    sampled_kl: float | None = None
    hessian_max_eig: float | None = None
    gain: float | None = None
    noise_share: float | None = None
    curvature: str | None = None
    secant_ratio: float | None = None
    secant_skip: str | None = None
    confidence: float | None = None
    margin: list[float] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def sampled_hessian(samples: OnPolicySamples) -> np.ndarray:
    """``H_hat = (1/beta) sum_x rho(x) Cov_q(h(x, .))``, shape ``(m, m)``.

    For i.i.d. draws (``weights`` None) the per-prompt covariance carries the Bessel factor
    ``K / (K - 1)`` (unbiased); it needs ``K >= 2``.  With exact weights it is the exact
    ``(1/beta) E_rho Cov_pi(h)``.
    """
    q = samples.sample_weights  # size = (X, K)
    K = q.shape[1]
    if samples.weights is None and K < 2:
        raise ValueError(f"samples: the sampled Hessian needs K >= 2 draws per prompt, got {K}")
    g = samples.utilities  # size = (m, X, K)
    gc = g - np.einsum("xk,ixk->ix", q, g)[:, :, None]  # centered per prompt, size = (m, X, K)
    cov = np.einsum("x,xk,ixk,jxk->ij", samples.prompt_weights, q, gc, gc)  # size = (m, m)
    if samples.weights is None:
        cov *= K / (K - 1)
    return cov / samples.beta


def damped_step_size(samples: OnPolicySamples) -> float:
    """``1 / L_hat``, ``L_hat = (1/beta) sum_i (range_i / 2)^2`` over the observed ``g``
    (Popoviciu: no distribution on those values has a larger covariance eigenvalue)."""
    g = samples.utilities.reshape(samples.num_constraints, -1)  # size = (m, X K)
    half = (g.max(axis=1) - g.min(axis=1)) / 2.0  # size = (m,)
    spread = float(half @ half)
    return samples.beta / spread if spread > 0 else samples.beta


def sampled_kl(samples: OnPolicySamples, d: np.ndarray) -> float:
    """``KL(pi_lam || pi_lam+d)`` estimated on the samples without the second-order
    approximation, for ``pi_lam+d ∝ pi_lam exp(d^T h / beta)`` on each prompt::

        KL = sum_x rho(x) [log sum_k q(x,k) exp(delta_xk) - sum_k q(x,k) delta_xk],
        delta_xk = d^T h(x, y_{x,k}) / beta

    (exact for exact weights and ``pi_t = pi_lam``; >= 0, convex in the step's length)."""
    from scipy.special import logsumexp

    q = samples.sample_weights  # size = (X, K)
    delta = np.einsum("i,ixk->xk", np.asarray(d, dtype=np.float64), samples.h) / samples.beta
    with np.errstate(divide="ignore"):
        lse = logsumexp(delta, axis=1, b=q)  # size = (X,)
    per = lse - (q * delta).sum(axis=1)
    return float(samples.prompt_weights @ np.maximum(per, 0.0))


def _trust(lam: np.ndarray, target: np.ndarray, H: np.ndarray, samples: OnPolicySamples
           ) -> tuple[np.ndarray, float, float, float]:
    """``lam + s ([target]_+ - lam)`` with the largest ``s <= 1`` inside the trust region
    (module docstring; projected first, so the bound holds for the step taken); returns
    ``(lam+, s, d^T H d / (2 beta), sampled KL)``."""
    beta = samples.beta
    d = np.maximum(target, 0.0) - lam
    kl = float(d @ H @ d) / (2.0 * beta)
    scale = 1.0 if (kl <= TRUST_KL or not np.isfinite(kl)) else float(np.sqrt(TRUST_KL / kl))
    if sampled_kl(samples, scale * d) > TRUST_KL:
        lo, hi = 0.0, scale  # sampled_kl is convex in s and 0 at s = 0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if sampled_kl(samples, mid * d) <= TRUST_KL else (lo, mid)
        scale = lo
    step = scale * d
    return (np.maximum(lam + step, 0.0), scale, float(step @ H @ step) / (2.0 * beta),
            sampled_kl(samples, step))


def _confidence(confidence: object) -> float | None:
    """The margin's level: ``"auto"`` is :data:`DEFAULT_CONFIDENCE`; None/0: no margin."""
    if isinstance(confidence, str):
        if confidence != "auto":
            raise ValueError(f"confidence: must be 'auto', 0 or a level in [0.5, 1), got "
                             f"{confidence!r}")
        confidence = DEFAULT_CONFIDENCE
    return check_confidence(confidence)


def _free_set(lam: np.ndarray, u: np.ndarray) -> np.ndarray:
    return (lam > 0) | (u < 0)


def _newton(lam, u, H, secant: SecantPair | None, info: dict):
    """``(lam - d, reason)``, ``d_F = B_FF^{-1} u_F`` on the free set, 0 elsewhere; ``B`` is
    ``H`` or its secant correction (``info`` records which)."""
    free = _free_set(lam, u)
    d = np.zeros_like(lam)
    if not free.any():
        return lam.copy(), None
    Hf = H[np.ix_(free, free)]
    eig = np.linalg.eigvalsh(Hf)
    if eig[-1] <= 0 or eig[0] <= _RCOND * eig[-1]:
        return None, f"Hessian singular on the free set (eigenvalues {eig.tolist()})"
    info["curvature"] = "sampled"
    if secant is None:
        info["secant_skip"] = "no earlier samples"
    else:
        B, info["secant_ratio"], info["secant_skip"] = secant_hessian(Hf, secant.restrict(free))
        if B is not None:
            Hf, info["curvature"] = B, "secant"
    d[free] = np.linalg.solve(Hf, u[free])
    return lam - d, None


def _empirical(samples: OnPolicySamples, lam: np.ndarray, margin: np.ndarray):
    """``(lam_hat, fallback reason, ess median, ess min)`` of the empirical rule (thresholds
    ``c + margin``)."""
    if samples.log_policy is None or samples.log_reference is None:
        return None, "log-probabilities of the policy or the reference unknown", None, None
    q = samples.sample_weights
    with np.errstate(invalid="ignore", divide="ignore"):
        logw = np.where(q > 0, np.log(q) + samples.log_reference - samples.log_policy, -np.inf)
    top = logw.max(axis=1, keepdims=True)
    if not np.isfinite(top).all():
        return None, "a prompt has no sample inside the reference support", None, None
    w = np.exp(logw - top)
    w /= w.sum(axis=1, keepdims=True)  # self-normalized per prompt, size = (X, K)
    ess = 1.0 / (w * w).sum(axis=1)  # size = (X,)
    med, lo = float(np.median(ess)), float(ess.min())
    if med < MIN_ESS:
        return None, f"effective sample size {med:.3g} per prompt < {MIN_ESS}", med, lo
    from .feasibility import InfeasibleError
    from .solver import solve
    try:
        inst = AlignmentProblem(samples.reward, samples.utilities, samples.offsets + margin,
                                samples.beta, w, samples.prompt_weights, relative=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sol = solve(inst, check_slater=False, lam0=lam)
    except InfeasibleError:
        return None, "the reweighted samples cannot meet the thresholds", med, lo
    if not sol.converged or sol.multiplier_unbounded:
        return None, "the empirical dual did not converge to a finite lam", med, lo
    return np.asarray(sol.lam, dtype=np.float64), None, med, lo


def dual_step(samples: OnPolicySamples, lam: object, rule: str = "auto",
              secant: SecantPair | None = None, confidence: object = "auto",
              averaged: int = 1) -> tuple[np.ndarray, DualStepRecord]:
    """The next multiplier from ``lam`` and the current policy's ``samples``.

    ``rule``: one of :data:`DUAL_STEP_RULES`, or ``"auto"`` (:data:`DEFAULT_RULE`).  Returns
    ``(lam+, record)``; see the module docstring for each rule and its fallback.  ``secant``:
    the change of the slack since the previous samples, which corrects the Newton rule's
    Hessian (:func:`dualgap.dual_secant.secant_hessian`; the trust region keeps the sampled
    Hessian); :class:`DualStepper` supplies it.  ``confidence``: the one-sided level of the
    margin (module docstring; ``"auto"``: :data:`DEFAULT_CONFIDENCE`, 0 or None: none);
    ``averaged``: the sample sets the iterate averages (the margin is ``z SE / sqrt(averaged)``;
    :class:`DualStepper` passes ``1 / gain``).
    """
    if rule == "auto":
        rule = DEFAULT_RULE
    if rule not in DUAL_STEP_RULES:
        raise ValueError(f"rule: must be 'auto' or one of {DUAL_STEP_RULES}, got {rule!r}")
    level = _confidence(confidence)
    if isinstance(averaged, bool) or not isinstance(averaged, int) or averaged < 1:
        raise ValueError(f"averaged: must be an int >= 1, got {averaged!r}")
    m = samples.num_constraints
    lam = np.asarray(lam, dtype=np.float64).reshape(-1)
    if lam.shape != (m,) or not np.isfinite(lam).all() or (lam < 0).any():
        raise ValueError(f"lam: expected {m} finite multipliers >= 0, got {lam.tolist()}")
    u_hat = samples.slack()
    margin = slack_margin(samples, level) / np.sqrt(averaged)
    u = u_hat - margin  # the lower confidence bound the step drives to >= 0
    info: dict = {}
    new, reason = None, None
    H = None
    if m == 0:
        new = lam.copy()
    elif samples.weights is None and samples.reward.shape[1] < 2:
        reason = "fewer than 2 samples per prompt: no covariance"
    else:
        H = sampled_hessian(samples)
        info["hessian_max_eig"] = float(np.linalg.eigvalsh(H)[-1])
        if rule == "newton":
            target, reason = _newton(lam, u, H, secant, info)
        elif rule == "curvature":
            if info["hessian_max_eig"] <= 0:
                target, reason = None, "zero sampled Hessian"
            else:
                info["eta"] = 1.0 / info["hessian_max_eig"]
                target = lam - info["eta"] * u
        else:
            target, reason, info["ess"], info["ess_min"] = _empirical(samples, lam, margin)
        if target is not None:
            (new, info["trust_scale"], info["predicted_kl"],
             info["sampled_kl"]) = _trust(lam, target, H, samples)
    used = rule
    if new is None:
        used = "damped"
        info["eta"] = damped_step_size(samples)
        new = np.maximum(lam - info["eta"] * u, 0.0)
    info = {k: v for k, v in info.items() if v is not None}
    rec = DualStepRecord(rule=rule, used=used, lam=new.tolist(), slack=u_hat.tolist(),
                         fallback=reason, confidence=level, margin=margin.tolist(), **info)
    return new, rec


class DualStepper:
    """A rule of :func:`dual_step` with a gain against the samples' noise (Kesten's rule).

    With ``lam_rule`` the rule's next multiplier and ``d_t = lam_rule - lam_t``::

        k_t       = number of s <= t with d_s^T d_{s-1} < 0   (the steps turned back)
        gamma_t   = 1 / (k_t + 1)                              (1 for exact expectations)
        lam_{t+1} = lam_t + gamma_t d_t                        (>= 0: a convex combination)

    Far from ``lam*`` successive steps point the same way and each is the rule's full step;
    once the samples' noise dominates the steps turn back and forth, the gain falls like
    ``1/k`` and the iterate becomes a running (Robbins-Monro) average of the rule's targets,
    whose error keeps shrinking instead of staying at the noise of one sample set (Kesten
    1958: a step that needs no number from the user).  With exact expectations (``weights``
    given) there is no noise to average and the gain stays 1.  ``noise_share`` in the record
    is ``tr(H^+ Sigma) / (u^T H^+ u)`` (:func:`slack_noise`), the noise's share of the Newton
    decrement, reported for reading (values above 1: the step is mostly noise).  A damped
    fallback step is taken as it is.  The stepper keeps the last ``lam``, ``u_hat`` and
    ``Sigma`` it saw and passes the change since then to :func:`dual_step` as a
    :class:`~dualgap.dual_secant.SecantPair` (the secant correction of the Newton rule).
    ``confidence`` is the margin's level (module docstring), applied as ``z SE / sqrt(k_t + 1)``:
    the iterate averages about ``k_t + 1`` sample sets.
    """

    def __init__(self, rule: str = "auto", confidence: object = "auto") -> None:
        if rule != "auto" and rule not in DUAL_STEP_RULES:
            raise ValueError(f"rule: must be 'auto' or one of {DUAL_STEP_RULES}, got {rule!r}")
        self.rule = rule
        self.confidence = _confidence(confidence)
        self.turns = 0
        self._previous: np.ndarray | None = None
        self.secant = SecantMemory()

    def state_dict(self) -> dict:
        """The gain's and the secant's state (JSON-ready): a resumed run rebuilds the stepper
        from it."""
        return {"rule": self.rule, "confidence": self.confidence, "turns": self.turns,
                "previous": None if self._previous is None else self._previous.tolist(),
                **self.secant.state_dict()}

    @classmethod
    def from_state(cls, state: dict) -> DualStepper:
        """The stepper :meth:`state_dict` describes (a state saved before the secant keys
        existed has none: its next step is taken without a secant pair; one saved before the
        margin existed keeps stepping without a margin)."""
        unknown = set(state) - {"rule", "confidence", "turns", "previous", *SecantMemory.KEYS}
        if unknown:
            raise ValueError(f"state: unknown key(s) {sorted(unknown)}")
        out = cls(state["rule"], state.get("confidence"))
        turns = state["turns"]
        if not isinstance(turns, int) or isinstance(turns, bool) or turns < 0:
            raise ValueError(f"state: turns must be an int >= 0, got {turns!r}")
        out.turns = turns
        prev = state["previous"]
        out._previous = None if prev is None else np.asarray(prev, dtype=np.float64)
        out.secant = SecantMemory.from_state({k: state.get(k) for k in SecantMemory.KEYS})
        return out

    def __call__(self, samples: OnPolicySamples, lam: object
                 ) -> tuple[np.ndarray, DualStepRecord]:
        lam = np.asarray(lam, dtype=np.float64).reshape(-1)
        pair = None
        if lam.shape == (samples.num_constraints,):  # dual_step names a bad lam
            no_cov = samples.weights is None and samples.reward.shape[1] < 2
            pair = self.secant(samples, lam, None if no_cov else sampled_hessian(samples))
        new, rec = dual_step(samples, lam, self.rule, secant=pair, confidence=self.confidence,
                             averaged=self.turns + 1)
        if rec.used == "damped" or samples.num_constraints == 0:
            return new, rec
        d = new - lam
        noisy = samples.weights is None
        if noisy and self._previous is not None and float(d @ self._previous) < 0:
            self.turns += 1
        self._previous = d
        gamma = 1.0 / (self.turns + 1) if noisy else 1.0
        new = np.maximum(lam + gamma * d, 0.0)
        u = np.asarray(rec.slack)
        Hp = np.linalg.pinv(sampled_hessian(samples))
        signal, noise = float(u @ Hp @ u), float(np.trace(Hp @ self.secant.noise))
        out = rec.to_dict()
        out.update(lam=new.tolist(), gain=gamma,
                   noise_share=noise / signal if signal > 0 else None)
        return new, DualStepRecord(**out)

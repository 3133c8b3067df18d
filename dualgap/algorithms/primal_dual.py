"""Primal-dual gradient methods: the Safe RLHF family.

One gradient step on the policy parameters and one on the multiplier per iteration::

    theta_{t+1} = theta_t + alpha grad_theta L(pi_theta_t, lam_t)          (plain gradient
                                                                            ascent, or Adam)
    simultaneous:  lam_{t+1} = update(lam_t, u(theta_t),     eta)
    alternating:   lam_{t+1} = update(lam_t, u(theta_{t+1}), eta)

with ``u(theta) = E_rho E_{pi_theta} h`` (exact, or from ``N`` samples per prompt) and
``update`` the linear (``[lam - eta u]_+``), log-parametrized (``lam exp(-eta lam u)``) or PID
multiplier of :mod:`dualgap.algorithms.multipliers`.  Unlike CAID the policy never approaches
the Lagrangian maximizer before the multiplier moves, and the last iterate can cycle around the
saddle point instead of converging (Safe RLHF reports the oscillations; the linearization
``theta' = theta + alpha(-a theta + b lam), lam' = lam - eta b theta`` has spectral radius
``sqrt(1 + alpha (eta b^2 - a)) > 1`` when ``eta b^2 > a``).

Record ``t`` is ``(lam_t, pi_theta_t)``; ``record_every`` thins the records of long runs
(the first and last records are always kept).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..problem import AlignmentProblem
from ..solver import DualSolution
from .dual_descent import check_lam0, check_positive_int, exact_summary, progress_range
from .estimators import estimate_slack
from .multipliers import MULTIPLIER_KINDS, make_multiplier
from .trajectory import Trajectory, TrajectoryRecorder

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["primal_dual", "PRIMAL_DUAL_MODES", "PRIMAL_OPTIMIZERS"]

PRIMAL_DUAL_MODES = ("simultaneous", "alternating")
PRIMAL_OPTIMIZERS = ("sgd", "adam")


def _positive(name: str, v: float) -> float:
    v = float(v)
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name}: must be a positive float, got {v!r}")
    return v


def primal_dual(
    problem: AlignmentProblem,
    policy_class,
    *,
    iterations: int = 1000,
    primal_lr: float = 0.5,
    dual_step: float = 0.5,
    mode: str = "simultaneous",
    multiplier: str = "linear",
    kp: float = 0.0,
    kd: float = 0.0,
    optimizer: str = "sgd",
    samples: int | None = None,
    lam0: object = None,
    theta0: torch.Tensor | None = None,
    seed: int | None = 0,
    record_every: int = 1,
    exact_solution: DualSolution | dict | None = None,
    feas_tol: float = 1e-6,
    progress: bool = False,
) -> Trajectory:
    """Gradient descent-ascent on ``L(pi_theta, lam)`` (see the module docstring).

    Args:
        problem: the instance.
        policy_class: a :class:`dualgap.policies.PolicyClass`.
        iterations: ``T`` joint steps.
        primal_lr: ``alpha``.
        dual_step: ``eta`` (the integral gain of the PID multiplier).
        mode: ``"simultaneous"`` or ``"alternating"``.
        multiplier: ``"linear"``, ``"log"`` or ``"pid"`` (gains ``kp``, ``kd`` in units of eta).
        optimizer: ``"sgd"`` (plain gradient ascent) or ``"adam"`` for theta.
        samples: ``N`` samples per prompt for ``u`` (None: exact).
        lam0: the starting multiplier (default 0 for linear/PID, 1 for log, whose 0 is
            absorbing).
        theta0: starting parameters (default ``policy_class.init_params()``, i.e. pi_ref).
        seed: for the samples.
        record_every: keep every k-th record.
    """
    import torch

    from ..gaps import policy_terms

    if mode not in PRIMAL_DUAL_MODES:
        raise ValueError(f"mode: must be one of {PRIMAL_DUAL_MODES}, got {mode!r}")
    if optimizer not in PRIMAL_OPTIMIZERS:
        raise ValueError(f"optimizer: must be one of {PRIMAL_OPTIMIZERS}, got {optimizer!r}")
    if multiplier not in MULTIPLIER_KINDS:
        raise ValueError(f"multiplier: must be one of {MULTIPLIER_KINDS}, got {multiplier!r}")
    T = check_positive_int("iterations", iterations, minimum=0)
    every = check_positive_int("record_every", record_every)
    samples = check_positive_int("samples", samples, allow_none=True)
    alpha, eta = _positive("primal_lr", primal_lr), _positive("dual_step", dual_step)
    if lam0 is None and multiplier == "log":
        lam0 = np.ones(problem.num_constraints)
    mult = make_multiplier(multiplier, check_lam0(problem, lam0), kp, kd)
    theta = (policy_class.init_params() if theta0 is None
             else policy_class.check_params(theta0)).detach().clone().requires_grad_(True)
    rng = np.random.default_rng(seed)
    config = {"iterations": T, "primal_lr": alpha, "dual_step": eta, "mode": mode,
              "multiplier": multiplier, "kp": kp, "kd": kd, "optimizer": optimizer,
              "samples": samples, "lam0": mult.lam.tolist(), "seed": seed,
              "record_every": every, "policy_class": repr(policy_class)}
    rec = TrajectoryRecorder(problem, "primal_dual", config, exact_summary(exact_solution),
                             feas_tol)

    fast = _tabular_numpy(problem, policy_class)
    if fast is not None:  # same iterates without torch's per-step overhead (tiny tables)
        theta_np = fast.run(theta.detach().numpy().copy(), mult, rec, T, every, alpha, eta,
                            mode, optimizer, samples, rng, progress)
        return rec.finish(theta=torch.as_tensor(theta_np, dtype=theta.dtype))
    # (after the fast path: the first torch.optim optimizer imports torch._dynamo, ~3 s)
    opt = (torch.optim.SGD([theta], lr=alpha) if optimizer == "sgd"
           else torch.optim.Adam([theta], lr=alpha))

    def slack_at(th: torch.Tensor, exact: torch.Tensor) -> np.ndarray:
        """``u`` at ``th``: the exact slack of the forward pass, or a sampled estimate."""
        if samples is None:
            return exact.detach().numpy().copy()
        return estimate_slack(problem, policy_class.policy(th.detach()), samples, rng)

    lam = mult.lam
    for t in progress_range(T, progress, f"primal-dual ({mode})"):
        lam_t = torch.as_tensor(lam, dtype=theta.dtype)
        opt.zero_grad()
        J, s = policy_terms(problem, policy_class, theta)  # at theta_t
        used = slack_at(theta, s) if mode == "simultaneous" else None
        keep = t % every == 0
        policy_t = policy_class.policy(theta.detach()) if keep else None
        (-(J + lam_t @ s)).backward()  # minimize -L: gradient ascent on theta
        opt.step()
        if used is None:  # alternating: u at theta_{t+1}
            with torch.no_grad():
                _, s_next = policy_terms(problem, policy_class, theta)
            used = slack_at(theta, s_next)
        if keep:
            rec.record(lam, policy_t, direction=used)
        lam = mult.update(used, eta)
    rec.record(lam, policy_class.policy(theta.detach()))
    return rec.finish(theta=theta.detach().clone())


def _fma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``a * b + c`` with one rounding (as a fused multiply-add; Dekker's exact product and
    Knuth's two-sum: within one unit in the last place of the exact result)."""
    p = a * b
    sa, sb = 134217729.0 * a, 134217729.0 * b  # Veltkamp split into 26-bit halves
    ah, bh = sa - (sa - a), sb - (sb - b)
    al, bl = a - ah, b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl  # p + e = a * b exactly
    s = p + c
    v = s - p
    return s + (e + ((p - (s - v)) + (c - v)))


def _tabular_numpy(problem: AlignmentProblem, policy_class) -> _TabularNumpy | None:
    """The numpy fast path when ``policy_class`` is exactly a
    :class:`~dualgap.policies.TabularPolicy` or :class:`~dualgap.policies.LogLinearPolicy` of
    ``problem`` (None otherwise: the torch loop)."""
    from ..policies import LogLinearPolicy, TabularPolicy

    if type(policy_class) is TabularPolicy and policy_class.problem is problem:
        return _TabularNumpy(problem)
    if type(policy_class) is LogLinearPolicy and policy_class.problem is problem:
        return _LogLinearNumpy(problem, policy_class.features)
    return None


class _TabularNumpy:
    """The torch loop of :func:`primal_dual` for the tabular class, in numpy.

    The scores are the parameters on the support (row-major), so with
    ``v = r + lam^T h - beta (log pi_theta - log pi_ref)`` on the support the ascent direction
    is ``dL / dtheta(x, y) = rho_x pi_theta(y|x) (v(x, y) - E_{pi_theta(.|x)} v)`` (the
    closed form of :func:`dualgap.policies.terms.lagrangian_value_grad`, evaluated by
    :meth:`loss_grad` in autograd's order of operations); SGD and Adam are
    torch's update equations (Adam: betas (0.9, 0.999), eps 1e-8, bias-corrected).
    """

    def __init__(self, problem: AlignmentProblem) -> None:
        sup = problem.support
        self.problem, self.sup, self.idx = problem, sup, np.flatnonzero(sup)
        self.log_ref = np.where(sup, problem.log_reference, 0.0)  # size = (X, Y)
        self.r = np.where(sup, problem.reward, 0.0)  # size = (X, Y)
        self.h = np.where(sup[None], problem.h, 0.0)  # size = (m, X, Y)
        self.rho, self.beta = problem.prompt_weights, problem.beta

    def scores(self, theta: np.ndarray) -> np.ndarray:
        """``f_theta``, ``(X, Y)``: the parameters on the support."""
        f = np.zeros(self.sup.size)
        f[self.idx] = theta
        return f.reshape(self.sup.shape)

    def pullback(self, gz: np.ndarray) -> np.ndarray:
        """``sum_{x,y} gz(x, y) d f_theta(x, y) / d theta``."""
        return gz.reshape(-1)[self.idx]

    def forward(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(log pi_theta (0 off the support), pi_theta, E_rho E_pi h)``."""
        z = np.where(self.sup, self.log_ref + self.scores(theta), -np.inf)
        z = z - z.max(1, keepdims=True)
        logp = np.where(self.sup, z - np.log(np.exp(z).sum(1, keepdims=True)), 0.0)
        p = np.where(self.sup, np.exp(logp), 0.0)
        return logp, p, np.einsum("x,xy,ixy->i", self.rho, p, self.h)

    def loss_grad(self, logp: np.ndarray, p: np.ndarray, lam: np.ndarray) -> np.ndarray:
        """``grad_theta -L(pi_theta, lam)``, in the order of operations of torch's autograd
        through :func:`~dualgap.policies.terms.lagrangian_terms` (so that the rounding of
        analytically zero components agrees too, which Adam's ``1 / (|g| + eps)`` magnifies)."""
        g1 = -self.rho[:, None]  # d(-J) / d(row sums)
        a = self.r - self.beta * (logp - self.log_ref)
        gp = g1 * a + np.einsum("i,ixy->xy", -lam, self.h) * self.rho[:, None]  # d / dp
        gl = np.where(self.sup, gp * p - (g1 * p) * self.beta, 0.0)  # d / dlog p
        gz = _fma(-p, gl.sum(1, keepdims=True), gl)  # through log_softmax (fused in torch)
        return self.pullback(gz)

    def run(self, theta: np.ndarray, mult, rec: TrajectoryRecorder, T: int, every: int,
            alpha: float, eta: float, mode: str, optimizer: str, samples: int | None,
            rng: np.random.Generator, progress: bool) -> np.ndarray:
        b1, b2, eps = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults
        m1 = np.zeros_like(theta)
        m2 = np.zeros_like(theta)

        def slack_at(p: np.ndarray, exact: np.ndarray) -> np.ndarray:
            return exact.copy() if samples is None else estimate_slack(self.problem, p,
                                                                       samples, rng)

        lam = mult.lam
        for t in progress_range(T, progress, f"primal-dual ({mode})"):
            logp, p, s = self.forward(theta)  # at theta_t
            used = slack_at(p, s) if mode == "simultaneous" else None
            keep = t % every == 0
            grad = self.loss_grad(logp, p, lam)  # of the loss -L
            if optimizer == "sgd":
                theta = theta - alpha * grad
            else:
                m1 = m1 + (1 - b1) * (grad - m1)
                m2 = m2 * b2 + (1 - b2) * grad * grad
                k = t + 1.0
                denom = np.sqrt(m2) / (1 - b2 ** k) ** 0.5 + eps
                theta = theta - (alpha / (1 - b1 ** k)) * (m1 / denom)
            if used is None:  # alternating: u at theta_{t+1}
                _, p_next, s_next = self.forward(theta)
                used = slack_at(p_next, s_next)
            if keep:
                rec.record(lam, p, direction=used)
            lam = mult.update(used, eta)
        rec.record(lam, self.forward(theta)[1])
        return theta


class _LogLinearNumpy(_TabularNumpy):
    """:class:`_TabularNumpy` for the log-linear class: ``f_theta = theta^T phi`` and the
    gradient's pullback ``sum_{x,y} gz phi`` (torch's einsum backward; the same iterates to
    rounding, tested)."""

    def __init__(self, problem: AlignmentProblem, features: np.ndarray) -> None:
        super().__init__(problem)
        d = features.shape[0]
        self.phi_flat = np.asarray(features, dtype=np.float64).reshape(d, -1)  # (d, X*Y)

    def scores(self, theta: np.ndarray) -> np.ndarray:
        return (theta @ self.phi_flat).reshape(self.sup.shape)

    def pullback(self, gz: np.ndarray) -> np.ndarray:
        return self.phi_flat @ gz.reshape(-1)

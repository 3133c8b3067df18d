"""Parametrized policy classes ``theta -> pi_theta`` on the reference support (torch, float64).

Every class writes its policy as a reference-tilted softmax over the support::

    log pi_theta(y|x) = log pi_ref(y|x) + f_theta(x, y) - log sum_{y' in supp(x)} pi_ref(y'|x)
                        exp(f_theta(x, y'))                       (y in supp(x))
    log pi_theta(y|x) = -inf                                       (y outside supp(x))

so ``KL(pi_theta || pi_ref)`` is always finite, and the classes differ in the score ``f_theta``:

* :class:`TabularPolicy`: ``f_theta(x, y) = theta[x, y]`` (one parameter per support entry);
  contains every policy with full support on ``supp(pi_ref)``, so ``nu = 0`` for those targets.
* :class:`LogLinearPolicy`: ``f_theta(x, y) = theta^T phi(x, y)`` for user features
  ``phi`` of shape ``(d, X, Y)``; with ``phi = [r, g_1..g_m]`` it contains every ``pi_lam``
  (:func:`problem_features`).
* :class:`MLPPolicy`: ``f_theta = `` a tanh multilayer perceptron of the (standardized) features,
  whose width and depth sweep the capacity.

``theta`` is always one flat float64 tensor of length ``num_params``; zeros give ``pi_ref`` for
the tabular and log-linear classes (and ``init_params()`` gives ``pi_ref`` for the MLP, whose
output layer starts at zero).  :meth:`PolicyClass.fit` returns the best approximation it finds of
a target policy together with the two parts of the parametrization gap of docs/theory.md.

This module imports torch; ``import dualgap`` does not import it.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
import torch

from .dual import check_policy, kl_divergence
from .problem import AlignmentProblem

__all__ = [
    "PolicyClass",
    "TabularPolicy",
    "LogLinearPolicy",
    "MLPPolicy",
    "FitResult",
    "FIT_OBJECTIVES",
    "problem_features",
    "approximation_gap",
    "small_problem_threads",
]

DTYPE = torch.float64

#: Criteria :meth:`PolicyClass.fit` can minimize.
FIT_OBJECTIVES = ("nu", "kl", "reverse_kl")


#: below this many table entries the optimizers run torch single-threaded (intra-op threads
#: cost far more than they save on tiny tensors, and badly so on a loaded machine)
SMALL_TABLE = 1 << 17


@contextlib.contextmanager
def small_problem_threads(problem: AlignmentProblem):
    """Run torch with one intra-op thread while the table is small; restore afterwards."""
    before = torch.get_num_threads()
    small = problem.reward.size * max(1, problem.num_constraints) < SMALL_TABLE
    if small and before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small and before != 1:
            torch.set_num_threads(before)


def _lbfgs(params: torch.Tensor, loss_fn, max_iter: int, gtol: float = 1e-10,
           ftol: float = 1e-15, history_size: int = 20, stall_window: int = 20,
           stall_tol: float = 1e-12) -> int:
    """Minimize ``loss_fn(params)`` by L-BFGS, in place; returns the iterations taken.

    The two-loop recursion (Nocedal and Wright, Alg. 7.4; ``H_0 = s^T y / y^T y``) with a
    backtracking line search that accepts the first step meeting Armijo
    (``f(x + t d) <= f(x) + 1e-4 t g^T d``); a pair is stored only when ``s^T y > 0``.
    Non-finite losses count as a failed trial step.  Stops when ``||g||_inf <= gtol``, when
    ``f_k - f_{k+1} <= ftol max(1, |f|)``, when ``f`` fell by at most ``stall_tol max(1, |f|)``
    over the last ``stall_window`` iterations, when no step decreases ``f``, or at ``max_iter``.
    Gradients come from torch autograd; the bookkeeping is numpy (far less per-iteration
    overhead than ``torch.optim.LBFGS`` on these small problems, and no BLAS threading).
    """
    x = params.detach().numpy().astype(np.float64, copy=True)

    def fun(z: np.ndarray) -> tuple[float, np.ndarray | None]:
        th = torch.from_numpy(z).requires_grad_(True)
        loss = loss_fn(th)
        if not torch.isfinite(loss):
            return math.inf, None
        (grad,) = torch.autograd.grad(loss, th)
        return float(loss.detach()), grad.numpy().astype(np.float64, copy=True)

    f, g = fun(x)
    if g is None:
        raise ValueError("theta: the objective is not finite at the starting point")
    S: list[np.ndarray] = []
    Yh: list[np.ndarray] = []
    trail: list[float] = [f]
    it = 0
    while it < max_iter and float(np.abs(g).max(initial=0.0)) > gtol:
        # two-loop recursion: d = -H g
        q = g.copy()
        alphas = []
        for s_k, y_k in zip(reversed(S), reversed(Yh), strict=True):
            a = float(s_k @ q) / float(s_k @ y_k)
            alphas.append(a)
            q -= a * y_k
        if S:
            q *= float(S[-1] @ Yh[-1]) / float(Yh[-1] @ Yh[-1])
        else:
            q *= min(1.0, 1.0 / max(float(np.abs(g).sum()), 1e-300))
        for (s_k, y_k), a in zip(zip(S, Yh, strict=True), reversed(alphas), strict=True):
            b = float(y_k @ q) / float(s_k @ y_k)
            q += (a - b) * s_k
        d = -q
        slope = float(g @ d)
        if slope >= 0:  # not a descent direction: restart from the gradient
            S.clear()
            Yh.clear()
            d = -g * min(1.0, 1.0 / max(float(np.abs(g).sum()), 1e-300))
            slope = float(g @ d)
        t, accepted = 1.0, False
        for _ in range(50):
            x_new = x + t * d
            f_new, g_new = fun(x_new)
            if g_new is not None and f_new <= f + 1e-4 * t * slope:
                accepted = True
                break
            t *= 0.5 if g_new is None else min(0.5, max(0.1, -0.5 * slope * t / max(
                f_new - f - slope * t, 1e-300)))
        if not accepted:
            break
        it += 1
        s_k, y_k = x_new - x, g_new - g
        if float(s_k @ y_k) > 1e-12 * float(np.sqrt((s_k @ s_k) * (y_k @ y_k))):
            S.append(s_k)
            Yh.append(y_k)
            if len(S) > history_size:
                S.pop(0)
                Yh.pop(0)
        decrease = f - f_new
        x, f, g = x_new, f_new, g_new
        trail.append(f)
        if decrease <= ftol * max(1.0, abs(f)):
            break
        if (len(trail) > stall_window
                and trail[-stall_window - 1] - f <= stall_tol * max(1.0, abs(f))):
            break  # stalled: less than stall_tol gained over the last stall_window iterations
    with torch.no_grad():
        params.copy_(torch.from_numpy(x))
    return it


@dataclass
class FitResult:
    """The best approximation :meth:`PolicyClass.fit` found of a target policy.

    Attributes:
        theta: the parameters, shape ``(num_params,)`` (float64 tensor, detached).
        policy: ``pi_theta``, shape ``(X, Y)``.
        l1: ``||pi_theta(.|x) - pi(.|x)||_1`` per prompt, shape ``(X,)``.
        kl_gap: ``|KL(pi_theta(.|x) || pi_ref) - KL(pi(.|x) || pi_ref)|`` per prompt, ``(X,)``.
        nu_1: ``max_x l1``.
        nu_kl: ``max_x kl_gap``.
        nu: ``max(nu_1, nu_kl)``: the parametrization gap of docs/theory.md for this target, an
            *upper* estimate of ``min_theta`` of the same quantity (any theta gives a valid one).
        objective: the criterion minimized (one of :data:`FIT_OBJECTIVES`).
        iterations: optimizer iterations over all starts.
    """

    theta: torch.Tensor = field(repr=False)
    policy: np.ndarray = field(repr=False)
    l1: np.ndarray = field(repr=False)
    kl_gap: np.ndarray = field(repr=False)
    nu_1: float
    nu_kl: float
    nu: float
    objective: str
    iterations: int


def approximation_gap(problem: AlignmentProblem, policy: np.ndarray,
                      target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt ``(||pi - target||_1, |KL(pi||pi_ref) - KL(target||pi_ref)|)``, each ``(X,)``."""
    l1 = np.abs(policy - target).sum(axis=1)
    kl_gap = np.abs(kl_divergence(problem, policy) - kl_divergence(problem, target))
    return l1, kl_gap


class PolicyClass(ABC):
    """Abstract base: ``theta`` (flat float64, ``(num_params,)``) ``-> pi_theta`` ``(X, Y)``.

    Subclasses implement :meth:`scores` (``f_theta``, shape ``(X, Y)``) and
    :meth:`init_params`; this base class turns scores into the tilted softmax of the module
    docstring, evaluates policies and fits targets.
    """

    problem: AlignmentProblem
    num_params: int
    name: str = "policy"
    #: whether :func:`~dualgap.gaps.lagrangian_max` uses natural steps by default
    #: (tabular, log-linear: the Lagrangian has no spurious local maxima along them)
    prefers_natural: bool = False

    def __init__(self, problem: AlignmentProblem) -> None:
        if not isinstance(problem, AlignmentProblem):
            raise ValueError(f"problem: expected an AlignmentProblem, got {type(problem).__name__}")
        self.problem = problem
        self._support = torch.as_tensor(problem.support)  # size = (X, Y), bool
        # log pi_ref with 0 instead of -inf outside the support (masked below)
        self._log_ref = torch.as_tensor(
            np.where(problem.support, problem.log_reference, 0.0), dtype=DTYPE)  # size = (X, Y)

    # ----------------------------------------------------------- to implement
    @abstractmethod
    def scores(self, theta: torch.Tensor) -> torch.Tensor:
        """``f_theta(x, y)``, shape ``(X, Y)``, finite (values outside the support are ignored)."""

    @abstractmethod
    def init_params(self, seed: int | None = None) -> torch.Tensor:
        """Initial parameters ``(num_params,)``.

        ``seed=None`` gives the class's default start (``pi_ref`` for every class here);
        an integer gives a random start drawn with that seed (for multi-start searches).
        """

    # ----------------------------------------------------------------- policy
    def check_params(self, theta: object) -> torch.Tensor:
        """``theta`` as a float64 tensor of shape ``(num_params,)``; ValueError otherwise."""
        t = theta if isinstance(theta, torch.Tensor) else torch.as_tensor(
            np.asarray(theta, dtype=np.float64))
        if t.dtype != DTYPE:
            t = t.to(DTYPE)
        if t.shape != (self.num_params,):
            raise ValueError(f"theta: shape {tuple(t.shape)} does not match num_params = "
                             f"{self.num_params} of {self!r}")
        return t

    def log_policy(self, theta: torch.Tensor) -> torch.Tensor:
        """``log pi_theta``, shape ``(X, Y)``: ``log_softmax_y(log pi_ref + f_theta)`` on the
        support, ``-inf`` outside it; differentiable in ``theta``."""
        theta = self.check_params(theta)
        z = self._log_ref + self.scores(theta)  # size = (X, Y)
        z = torch.where(self._support, z, torch.tensor(-math.inf, dtype=DTYPE))
        return torch.log_softmax(z, dim=1)

    def policy(self, theta: torch.Tensor) -> np.ndarray:
        """``pi_theta`` as a numpy float64 array ``(X, Y)`` (exact zeros outside the support)."""
        with torch.no_grad():
            return torch.exp(self.log_policy(theta)).numpy().copy()

    # ------------------------------------------------------ natural steps
    #: largest ``(support entries) x num_params`` Jacobian :meth:`score_step` will form
    JACOBIAN_LIMIT = 20_000_000

    @property
    def has_score_step(self) -> bool:
        """Whether :meth:`score_step` is available (the Jacobian fits :data:`JACOBIAN_LIMIT`)."""
        return int(self.problem.support.sum()) * self.num_params <= self.JACOBIAN_LIMIT

    def score_jacobian(self, theta: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """``d f_theta(x, y) / d theta`` on the support, shape ``(n_support, num_params)``."""
        theta = self.check_params(theta).detach()
        sup = self._support

        def f(th: torch.Tensor) -> torch.Tensor:
            return self.scores(th)[sup]

        rows = []
        eye = torch.eye(self.num_params, dtype=DTYPE)
        jvp = torch.func.vmap(lambda v: torch.func.jvp(f, (theta,), (v,))[1])
        for k in range(0, self.num_params, chunk):
            rows.append(jvp(eye[k:k + chunk]))  # size = (c, n_support)
        return torch.cat(rows, 0).T

    def score_step(self, theta: torch.Tensor, delta: torch.Tensor, weights: torch.Tensor,
                   damping: float = 0.0) -> torch.Tensor:
        """The parameter change whose (linearized) score change best matches ``delta``.

        Solves ``min_{d, c} sum_{x, y in supp} w(x, y) ((J d)(x, y) - c_x - delta(x, y))^2
        + damping ||d||^2`` with ``J = d f_theta / d theta``; the free per-prompt constants
        ``c_x`` remove what the softmax ignores.  With ``w = rho pi_theta`` and
        ``delta = (r + lam^T h) / beta - f_theta`` this is the natural-gradient (Fisher
        scoring / Gauss-Newton) direction of ``L(pi_theta, lam)``.  ``delta`` and ``weights``
        have shape ``(X, Y)``.
        """
        if not self.has_score_step:
            raise ValueError(f"policy_class: {self!r} is too large for score_step "
                             f"(n_support x num_params > {self.JACOBIAN_LIMIT})")
        sup = self._support
        J = self.score_jacobian(theta)  # size = (n, P)
        w = weights[sup]  # size = (n,)
        dl = delta[sup]
        rows = torch.nonzero(sup)[:, 0]
        X = sup.shape[0]
        wsum = torch.zeros(X, dtype=DTYPE).index_add(0, rows, w).clamp_min(1e-300)
        # center J and delta per prompt with the weights w
        Jm = torch.zeros(X, J.shape[1], dtype=DTYPE).index_add(0, rows, w[:, None] * J)
        Jc = J - (Jm / wsum[:, None])[rows]
        dm = torch.zeros(X, dtype=DTYPE).index_add(0, rows, w * dl)
        dc = dl - (dm / wsum)[rows]
        A = Jc.T @ (w[:, None] * Jc)  # size = (P, P)
        b = Jc.T @ (w * dc)
        scale = float(torch.diagonal(A).mean()) if A.numel() else 1.0
        eye = torch.eye(A.shape[0], dtype=DTYPE)
        tau = max(float(damping), 1e-12) * max(scale, 1e-300)
        for _ in range(20):
            try:
                L = torch.linalg.cholesky(A + tau * eye)
                return torch.cholesky_solve(b[:, None], L)[:, 0]
            except RuntimeError:  # pragma: no cover - A is PSD; only numerically singular
                tau *= 100.0
        return torch.linalg.lstsq(A + tau * eye, b[:, None]).solution[:, 0]  # pragma: no cover

    # -------------------------------------------------------------------- fit
    def _check_target(self, target: object) -> np.ndarray:
        t = check_policy(target, self.problem.reward.shape, name="target")
        off = (t > 0) & ~self.problem.support
        if off.any():
            x, y = (int(i) for i in np.argwhere(off)[0])
            raise ValueError(f"target: puts mass {t[x, y]!r} at (x, y) = ({x}, {y}) outside "
                             "the reference support (no pi_theta can approximate it)")
        return t

    def _fit_loss(self, target: torch.Tensor, objective: str, kl_target: torch.Tensor):
        rho = torch.as_tensor(self.problem.prompt_weights, dtype=DTYPE)
        pos = target > 0
        log_t = torch.where(pos, torch.log(torch.where(pos, target, 1.0)), 0.0)
        sup = self._support

        def loss(theta: torch.Tensor) -> torch.Tensor:
            logp = self.log_policy(theta)
            if objective == "kl":  # E_rho KL(target || pi_theta)
                return rho @ torch.where(pos, target * (log_t - logp), 0.0).sum(1)
            logp_s = torch.where(sup, logp, 0.0)
            p = torch.where(sup, torch.exp(logp_s), 0.0)
            if objective == "reverse_kl":  # E_rho KL(pi_theta || target), target > 0 on supp
                return rho @ (p * (logp_s - torch.where(sup, log_t, 0.0))).sum(1)
            # "nu": a smooth surrogate of max_x max(||p - t||_1, |KL_p - KL_t|)
            kl_p = (p * (logp_s - self._log_ref)).sum(1)  # size = (X,)
            l1 = torch.sqrt((p - target) ** 2 + 1e-16).sum(1)
            klg = torch.sqrt((kl_p - kl_target) ** 2 + 1e-16)
            both = torch.cat([l1, klg])
            return torch.logsumexp(both * 200.0, 0) / 200.0
        return loss

    def fit(self, target: np.ndarray, theta0: torch.Tensor | None = None, *,
            objective: str = "nu", steps: int = 300, starts: int = 1,
            seed: int = 0) -> FitResult:
        """The best approximation found of ``target`` (an ``(X, Y)`` policy on the support).

        Minimizes, by L-BFGS from ``theta0`` (default ``init_params()``) and ``starts - 1``
        random starts, first ``E_rho KL(target || pi_theta)`` and then (``objective="nu"``,
        the default) a smooth surrogate of the gap itself,
        ``max_x max(||pi_theta - pi||_1, |KL(pi_theta||pi_ref) - KL(pi||pi_ref)|)``
        (a log-sum-exp of the per-prompt terms, temperature 1/200).  Returns the candidate with
        the smallest measured ``nu``; ``objective="kl"`` / ``"reverse_kl"`` minimize only that
        divergence (reverse needs ``target > 0`` on the support).
        """
        if objective not in FIT_OBJECTIVES:
            raise ValueError(f"objective: must be one of {FIT_OBJECTIVES}, got {objective!r}")
        if int(steps) < 1:
            raise ValueError(f"steps: must be >= 1, got {steps!r}")
        if int(starts) < 1:
            raise ValueError(f"starts: must be >= 1, got {starts!r}")
        with small_problem_threads(self.problem):
            return self._fit(target, theta0, objective, int(steps), int(starts), int(seed))

    def _fit_setup(self, target: object, theta0: torch.Tensor | None, objective: str,
                   starts: int, seed: int):
        """What every ``fit`` starts from: the validated target (numpy and torch), its
        ``KL(target || pi_ref)`` per prompt, the starting points and the loss stages."""
        t_np = self._check_target(target)
        if objective == "reverse_kl" and (t_np[self.problem.support] <= 0).any():
            raise ValueError("target: reverse_kl needs target > 0 on the whole support")
        tgt = torch.as_tensor(t_np, dtype=DTYPE)
        kl_t = torch.as_tensor(kl_divergence(self.problem, t_np), dtype=DTYPE)
        firsts = [self.init_params() if theta0 is None else self.check_params(theta0)]
        firsts += [self.init_params(seed + k) for k in range(1, int(starts))]
        stages = ["kl", "nu"] if objective == "nu" else [objective]
        return t_np, tgt, kl_t, firsts, stages

    def _fit(self, target: np.ndarray, theta0: torch.Tensor | None, objective: str, steps: int,
             starts: int, seed: int) -> FitResult:
        t_np, tgt, kl_t, firsts, stages = self._fit_setup(target, theta0, objective, starts,
                                                          seed)
        best: FitResult | None = None
        total = 0
        for th0 in firsts:
            theta = th0.detach().clone().requires_grad_(True)
            candidates = []
            for stage in stages:
                total += _lbfgs(theta, self._fit_loss(tgt, stage, kl_t), int(steps))
                candidates.append(theta.detach().clone())
            best = self._best_fit(best, candidates, t_np, objective, total)
        assert best is not None
        best.iterations = total
        return best

    def _best_fit(self, best: FitResult | None, candidates: list[torch.Tensor],
                  target: np.ndarray, objective: str, total: int) -> FitResult | None:
        """The smallest-``nu`` fit among ``best`` and the measured ``candidates``."""
        for cand in candidates:
            res = self._measure(cand, target, objective, total)
            if best is None or res.nu < best.nu:
                best = res
        return best

    def _measure(self, theta: torch.Tensor, target: np.ndarray, objective: str,
                 iterations: int) -> FitResult:
        pi = self.policy(theta)
        l1, klg = approximation_gap(self.problem, pi, target)
        nu_1, nu_kl = float(l1.max()), float(klg.max())
        return FitResult(theta=theta.detach().clone(), policy=pi, l1=l1, kl_gap=klg, nu_1=nu_1,
                         nu_kl=nu_kl, nu=max(nu_1, nu_kl), objective=objective,
                         iterations=iterations)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_params={self.num_params})"


class TabularPolicy(PolicyClass):
    """``pi_theta(y|x) ∝ pi_ref(y|x) exp(theta[x, y])``: one parameter per support entry.

    ``theta`` lists the support entries in row-major order (``np.nonzero(problem.support)``).
    Contains every policy that is positive on the whole support; :meth:`fit` is exact
    (``theta = log pi - log pi_ref``, with zeros of the target floored at ``1e-300``).
    """

    name = "tabular"
    prefers_natural = True

    def __init__(self, problem: AlignmentProblem) -> None:
        super().__init__(problem)
        xs, ys = np.nonzero(problem.support)
        self._flat_index = torch.as_tensor(xs * problem.num_responses + ys)
        self.num_params = int(xs.size)

    def scores(self, theta: torch.Tensor) -> torch.Tensor:
        X, Y = self.problem.reward.shape
        flat = torch.zeros(X * Y, dtype=DTYPE).scatter(0, self._flat_index, theta)
        return flat.view(X, Y)

    def init_params(self, seed: int | None = None) -> torch.Tensor:
        if seed is None:
            return torch.zeros(self.num_params, dtype=DTYPE)
        g = torch.Generator().manual_seed(int(seed))
        return torch.randn(self.num_params, generator=g, dtype=DTYPE)

    @property
    def has_score_step(self) -> bool:
        return True

    def score_step(self, theta: torch.Tensor, delta: torch.Tensor, weights: torch.Tensor,
                   damping: float = 0.0) -> torch.Tensor:
        """Exact: ``J`` selects the support entries, so ``d = delta / (1 + damping)`` there."""
        return delta[self._support] / (1.0 + max(float(damping), 0.0))

    def fit(self, target: np.ndarray, theta0: torch.Tensor | None = None, *,
            objective: str = "nu", steps: int = 300, starts: int = 1,
            seed: int = 0) -> FitResult:
        """Closed form: ``theta = log max(pi, 1e-300) - log pi_ref`` on the support (exact when
        the target is positive on the support; the optimizer arguments are validated, unused)."""
        if objective not in FIT_OBJECTIVES:
            raise ValueError(f"objective: must be one of {FIT_OBJECTIVES}, got {objective!r}")
        t = self._check_target(target)
        sup = self.problem.support
        theta = np.log(np.maximum(t[sup], 1e-300)) - self.problem.log_reference[sup]
        theta -= theta.mean()  # the softmax is shift invariant; keep the numbers small
        return self._measure(torch.as_tensor(theta, dtype=DTYPE), t, objective, 0)


class LogLinearPolicy(PolicyClass):
    """``pi_theta(y|x) ∝ pi_ref(y|x) exp(theta^T phi(x, y))`` for features ``phi``, ``(d, X, Y)``.

    With ``phi = [r, g_1, .., g_m]`` (:func:`problem_features`) the class contains every
    Lagrangian maximizer ``pi_lam`` (``theta = (1, lam) / beta``).
    """

    name = "loglinear"
    prefers_natural = True

    def __init__(self, problem: AlignmentProblem, features: np.ndarray) -> None:
        super().__init__(problem)
        phi = np.asarray(features, dtype=np.float64)
        X, Y = problem.reward.shape
        if phi.ndim != 3 or phi.shape[1:] != (X, Y):
            raise ValueError(f"features: expected shape (d, {X}, {Y}), got {phi.shape}")
        if phi.shape[0] == 0:
            raise ValueError("features: need at least one feature (d >= 1)")
        bad = ~np.isfinite(phi) & problem.support[None]
        if bad.any():
            raise ValueError(f"features: non-finite value at (k, x, y) = "
                             f"{tuple(int(i) for i in np.argwhere(bad)[0])}")
        phi = np.where(problem.support[None], phi, 0.0)
        self.features = phi
        self._phi = torch.as_tensor(phi, dtype=DTYPE)  # size = (d, X, Y)
        self.num_params = int(phi.shape[0])

    def scores(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.einsum("d,dxy->xy", theta, self._phi)

    def score_jacobian(self, theta: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """``phi`` on the support, ``(n_support, d)`` (the scores are linear in theta)."""
        return self._phi[:, self._support].T

    def init_params(self, seed: int | None = None) -> torch.Tensor:
        if seed is None:
            return torch.zeros(self.num_params, dtype=DTYPE)
        g = torch.Generator().manual_seed(int(seed))
        scale = 1.0 / max(float(np.abs(self.features).max()), 1e-12)
        return scale * torch.randn(self.num_params, generator=g, dtype=DTYPE)


class MLPPolicy(PolicyClass):
    """``pi_theta(y|x) ∝ pi_ref(y|x) exp(f_theta(phi(x, y)))`` with ``f_theta`` a tanh MLP.

    ``f_theta(u) = w_out^T a_depth + b_out``, ``a_k = tanh(W_k a_{k-1} + b_k)``,
    ``a_0 = (phi(x, y) - mean) / std`` (feature standardization over the support).  ``depth``
    hidden layers of width ``hidden``; ``num_params = sum of layer sizes``.  The default start
    (``init_params()``) draws the hidden layers with ``seed`` (scaled normal) and sets the output
    layer to zero, so it gives ``pi_ref``.
    """

    name = "mlp"

    def __init__(self, problem: AlignmentProblem, features: np.ndarray, hidden: int = 16,
                 depth: int = 1, seed: int = 0) -> None:
        super().__init__(problem)
        phi = np.asarray(features, dtype=np.float64)
        X, Y = problem.reward.shape
        if phi.ndim != 3 or phi.shape[1:] != (X, Y) or phi.shape[0] == 0:
            raise ValueError(f"features: expected shape (d >= 1, {X}, {Y}), got {phi.shape}")
        if int(hidden) < 1 or int(hidden) != hidden:
            raise ValueError(f"hidden: must be a positive integer, got {hidden!r}")
        if int(depth) < 1 or int(depth) != depth:
            raise ValueError(f"depth: must be a positive integer, got {depth!r}")
        sup = problem.support
        bad = ~np.isfinite(phi) & sup[None]
        if bad.any():
            raise ValueError(f"features: non-finite value at (k, x, y) = "
                             f"{tuple(int(i) for i in np.argwhere(bad)[0])}")
        vals = phi[:, sup]  # size = (d, n)
        mean, std = vals.mean(axis=1), vals.std(axis=1)
        std = np.where(std > 0, std, 1.0)
        u = (np.where(sup[None], phi, 0.0) - mean[:, None, None]) / std[:, None, None]
        self.features = phi
        self.hidden, self.depth, self.seed = int(hidden), int(depth), int(seed)
        d = phi.shape[0]
        self._inputs = torch.as_tensor(u.reshape(d, X * Y).T.copy(), dtype=DTYPE)  # (X*Y, d)
        self._shapes: list[tuple[int, int]] = []
        fan_in = d
        for _ in range(self.depth):
            self._shapes.append((self.hidden, fan_in))
            fan_in = self.hidden
        self._shapes.append((1, fan_in))
        self.num_params = sum(o * i + o for o, i in self._shapes)

    def _layers(self, theta: torch.Tensor):
        k = 0
        for o, i in self._shapes:
            W = theta[k:k + o * i].view(o, i)
            k += o * i
            b = theta[k:k + o]
            k += o
            yield W, b

    def scores(self, theta: torch.Tensor) -> torch.Tensor:
        X, Y = self.problem.reward.shape
        a = self._inputs  # size = (X*Y, d)
        layers = list(self._layers(theta))
        for W, b in layers[:-1]:
            a = torch.tanh(a @ W.T + b)  # size = (X*Y, hidden)
        W, b = layers[-1]
        return (a @ W.T + b).view(X, Y)

    def init_params(self, seed: int | None = None) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed if seed is None else int(seed))
        parts = []
        for j, (o, i) in enumerate(self._shapes):
            last = j == len(self._shapes) - 1
            if last and seed is None:
                parts += [torch.zeros(o * i, dtype=DTYPE), torch.zeros(o, dtype=DTYPE)]
            else:
                std = (1.0 if not last else 0.1) / math.sqrt(i)
                parts += [std * torch.randn(o * i, generator=g, dtype=DTYPE),
                          0.1 * torch.randn(o, generator=g, dtype=DTYPE)]
        return torch.cat(parts)

    def __repr__(self) -> str:
        return (f"MLPPolicy(d={self.features.shape[0]}, hidden={self.hidden}, depth={self.depth},"
                f" num_params={self.num_params})")


def problem_features(problem: AlignmentProblem, noise: float = 0.0, seed: int = 0,
                     include: tuple[str, ...] | None = None) -> np.ndarray:
    """Features ``phi = [r, g_1, .., g_m] + noise * s * N(0, 1)``, shape ``(1 + m, X, Y)``.

    ``s`` is each feature's standard deviation over the support, so ``noise`` is relative.
    With ``noise = 0`` a :class:`LogLinearPolicy` on these features contains every ``pi_lam``;
    growing ``noise`` moves the class away from them (the gap ``nu`` grows), which gives a
    one-parameter family of classes for the gap-vs-``nu`` experiments.  ``include`` keeps a
    subset by name (``"reward"`` and the constraint names).
    """
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise: must be a finite float >= 0, got {noise!r}")
    names = ("reward",) + tuple(problem.names)
    phi = np.concatenate([problem.reward[None], problem.utilities], axis=0)
    if include is not None:
        unknown = [n for n in include if n not in names]
        if unknown:
            raise ValueError(f"include: unknown feature name(s) {unknown}; known: {names}")
        phi = phi[[names.index(n) for n in include]]
    if noise > 0:
        sup = problem.support
        s = phi[:, sup].std(axis=1)
        s = np.where(s > 0, s, 1.0)
        eps = np.random.default_rng(seed).normal(size=phi.shape)
        phi = phi + noise * s[:, None, None] * eps
    return np.where(problem.support[None], phi, 0.0)

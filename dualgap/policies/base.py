"""The base of every policy class ``theta -> pi_theta`` on the reference support, and its hooks.

Every class writes its policy as a reference-tilted softmax over the support::

    log pi_theta(y|x) = log pi_ref(y|x) + f_theta(x, y) - log sum_{y' in supp(x)} pi_ref(y'|x)
                        exp(f_theta(x, y'))                       (y in supp(x))
    log pi_theta(y|x) = -inf                                       (y outside supp(x))

so ``KL(pi_theta || pi_ref)`` is always finite; a subclass gives the score ``f_theta``
(:meth:`PolicyClass.scores`) and its start (:meth:`PolicyClass.init_params`).  ``theta`` is
always one flat float64 tensor of length ``num_params``.

Two hooks let a class bring its own optimizer (the defaults are the house's L-BFGS and
natural-gradient steps, :mod:`.optim`; the synthetic language's transformer overrides both
with float32 Adam):

* :meth:`PolicyClass.minimize` ``(theta, loss_fn, steps) -> iterations``: the optimizer step of
  every :meth:`PolicyClass.fit` stage (and of the augmented-Lagrangian polish of
  :func:`dualgap.gaps.parametrized_primal`);
* :meth:`PolicyClass.maximize_lagrangian` ``(lam, theta0=None, budget=None) -> (theta,
  iterations)``: one local search for ``max_theta L(pi_theta, lam)``, and
  :meth:`PolicyClass.maximize_lagrangian_batch` ``(lams, theta0s, budget=None) -> [(theta,
  iterations)]``: many at once (default: one tensor program, :mod:`.batch`; a class that
  overrides only the first gets a loop over it); every Lagrangian maximization of
  :mod:`dualgap.gaps` (hence of the report and the algorithms) goes through them.

:meth:`PolicyClass.fit` returns the best approximation found of a target policy together with the
two parts of the parametrization gap of docs/theory.md (:class:`FitResult`).

This module imports torch; ``import dualgap`` does not import it.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..dual import check_policy, kl_divergence
from ..problem import AlignmentProblem
from .batch import search_batch
from .optim import lbfgs
from .terms import DTYPE

__all__ = [
    "PolicyClass",
    "FitResult",
    "FIT_OBJECTIVES",
    "LAGRANGIAN_METHODS",
    "approximation_gap",
    "damped_solve",
    "small_problem_threads",
]

#: Criteria :meth:`PolicyClass.fit` can minimize.
FIT_OBJECTIVES = ("nu", "kl", "reverse_kl")

#: optimizers the default :meth:`PolicyClass.maximize_lagrangian` knows
LAGRANGIAN_METHODS = ("auto", "natural", "lbfgs")


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


def damped_solve(A: torch.Tensor, b: torch.Tensor, damping: float) -> torch.Tensor:
    """``(A + tau I)^{-1} b`` for PSD ``A`` ``(P, P)``, ``tau = max(damping, 1e-12) mean(diag
    A)`` (grown 100x while the Cholesky factorization fails); the solve of every score step."""
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
    #: whether the default :meth:`maximize_lagrangian` uses natural steps (``method="auto"``)
    #: (tabular, log-linear: the Lagrangian has no spurious local maxima along them)
    prefers_natural: bool = False

    def __init__(self, problem: AlignmentProblem) -> None:
        if not isinstance(problem, AlignmentProblem):
            raise ValueError(f"problem: expected an AlignmentProblem, got {type(problem).__name__}")
        self.problem = problem
        #: the reference support as a bool tensor, ``(X, Y)`` (public: subclasses use it)
        self.support = torch.as_tensor(problem.support)  # size = (X, Y), bool
        #: ``log pi_ref`` with 0 instead of ``-inf`` outside the support (masked where used)
        self.log_ref = torch.as_tensor(
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
        z = self.log_ref + self.scores(theta)  # size = (X, Y)
        z = torch.where(self.support, z, torch.tensor(-math.inf, dtype=DTYPE))
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
        sup = self.support

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
        sup = self.support
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
        return damped_solve(A, b, damping)

    def ascent_step(self, theta: torch.Tensor, delta: torch.Tensor, weights: torch.Tensor,
                    damping: float = 0.0) -> torch.Tensor:
        """The direction of each step of :func:`~.optim.natural_ascent` in a search run to
        convergence (same arguments as :meth:`score_step`): by default the natural-gradient step
        :meth:`score_step`; a class whose Hessian of ``L`` is cheap may return a Newton step
        (the line search on ``L`` is the same).  Searches with a step budget (the algorithms'
        finite policy steps) always take :meth:`score_step`."""
        return self.score_step(theta, delta, weights, damping)

    # -------------------------------------------------------------------- hooks
    def minimize(self, theta: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor],
                 steps: int) -> int:
        """Hook: minimize ``loss_fn(theta)`` in place, at most ``steps`` iterations; returns the
        iterations taken.  The optimizer step of every :meth:`fit` stage (and of
        :func:`dualgap.gaps.parametrized_primal`'s penalty polish).

        ``theta``: a float64 leaf tensor ``(num_params,)`` (``requires_grad`` set); ``loss_fn``:
        a differentiable torch scalar of a ``(num_params,)`` tensor.  Default: L-BFGS
        (:func:`~.optim.lbfgs`: two-loop recursion, Armijo backtracking, autograd gradients).
        """
        return lbfgs(theta, loss_fn, int(steps))

    def maximize_lagrangian(self, lam: torch.Tensor, theta0: torch.Tensor | None = None,
                            budget: int | None = None, *, method: str = "auto",
                            problem: AlignmentProblem | None = None
                            ) -> tuple[torch.Tensor, int]:
        """Hook: one local search for ``max_theta L(pi_theta, lam)``; returns ``(theta,
        iterations)`` (theta detached, ``(num_params,)``).

        ``L(pi_theta, lam) = E_rho [E_{pi_theta}(r + lam^T h)] - beta E_rho KL(pi_theta ||
        pi_ref)`` on ``problem`` (default ``self.problem``; a tightened copy has the same
        maximizers).  ``lam``: validated multipliers, float64 ``(m,)``; ``theta0``: the start
        (``None``: :meth:`init_params`); ``budget``: at most this many iterations (``None``: the
        class's default, here "run to convergence").  :func:`dualgap.gaps.lagrangian_max`
        validates the arguments, runs the starts and measures the result.

        Default ``method``: ``"natural"``: damped natural-gradient steps with a line search
        (:func:`~.optim.natural_ascent`; without a ``budget`` each step's direction comes from
        :meth:`ascent_step`, Newton steps for the log-linear class, and with one from
        :meth:`score_step`; needs :attr:`has_score_step`; at most 200);
        ``"lbfgs"``: L-BFGS (at most 500); ``"auto"``: for classes that prefer them
        (:attr:`prefers_natural`) 30 natural steps, then an L-BFGS polish unless they converged
        (the polish would only drift along directions flat at float precision); L-BFGS alone
        otherwise (on MLPs natural steps were seen to stall in worse local maxima).
        """
        pb = self.problem if problem is None else problem
        self._check_method(method)
        return search_batch(self, pb, lam.reshape(1, -1), [theta0], budget, method)[0]

    def maximize_lagrangian_batch(self, lams: torch.Tensor, theta0s: list,
                                  budget: int | None = None, *, method: str = "auto",
                                  problem: AlignmentProblem | None = None
                                  ) -> list[tuple[torch.Tensor, int]]:
        """Hook: ``K`` local searches at once, ``[(theta_k, iterations_k)]``: search ``k`` is
        :meth:`maximize_lagrangian` ``(lams[k], theta0s[k], budget, method, problem)``.

        ``lams``: validated multipliers ``(K, m)``; ``theta0s``: ``K`` starts (``None``: the
        class's start).  Default: one tensor program for all ``K`` (:mod:`.batch`: batched
        scores, closed-form softmax gradient, batched L-BFGS with each search's own line
        search and stopping rules); a class that overrides :meth:`maximize_lagrangian` and not
        this hook gets a loop over its own :meth:`maximize_lagrangian`.
        """
        pb = self.problem if problem is None else problem
        self._check_method(method)
        if len(theta0s) != lams.shape[0]:
            raise ValueError(f"theta0s: {len(theta0s)} starts for {lams.shape[0]} multipliers")
        if type(self).maximize_lagrangian is not PolicyClass.maximize_lagrangian:
            return [self.maximize_lagrangian(lam, th0, budget, method=method, problem=pb)
                    for lam, th0 in zip(lams, theta0s, strict=True)]
        return search_batch(self, pb, lams, list(theta0s), budget, method)

    def _check_method(self, method: str) -> None:
        if method not in LAGRANGIAN_METHODS:
            raise ValueError(f"method: must be one of {LAGRANGIAN_METHODS}, got {method!r}")
        if method == "natural" and not self.has_score_step:
            raise ValueError(f"method: 'natural' is not available for {self!r}")

    def scores_batch(self, thetas: torch.Tensor) -> torch.Tensor:
        """``f_theta`` for a batch of parameters ``(K, num_params)``: ``(K, X, Y)``,
        differentiable (default: ``torch.func.vmap`` of :meth:`scores`; the classes here write
        it as one batched forward pass)."""
        return torch.func.vmap(self.scores)(thetas)

    def scores_pullback(self, thetas: torch.Tensor):
        """``(f, pullback)``: the batched scores ``(K, X, Y)`` of ``thetas`` ``(K, P)`` (no
        graph kept) and ``G (K, X, Y) -> sum_{x,y} G(x, y) d f_theta_k(x, y) / d theta_k``,
        ``(K, P)``.  Default: autograd through :meth:`scores_batch`; the classes here write it by
        hand."""
        th = thetas.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            f = self.scores_batch(th)

        def pullback(G: torch.Tensor) -> torch.Tensor:
            (grad,) = torch.autograd.grad(f, th, grad_outputs=G)
            return grad

        return f.detach(), pullback

    # -------------------------------------------------------------------- fit
    def check_target(self, target: object) -> np.ndarray:
        """``target`` as an ``(X, Y)`` policy with no mass outside the support; ValueError
        otherwise."""
        t = check_policy(target, self.problem.reward.shape, name="target")
        off = (t > 0) & ~self.problem.support
        if off.any():
            x, y = (int(i) for i in np.argwhere(off)[0])
            raise ValueError(f"target: puts mass {t[x, y]!r} at (x, y) = ({x}, {y}) outside "
                             "the reference support (no pi_theta can approximate it)")
        return t

    def fit_loss(self, target: np.ndarray | torch.Tensor,
                 objective: str) -> Callable[[torch.Tensor], torch.Tensor]:
        """The loss of one :meth:`fit` stage, a differentiable function of ``theta``:

        * ``"kl"``: ``E_rho KL(target || pi_theta)`` (distillation);
        * ``"reverse_kl"``: ``E_rho KL(pi_theta || target)`` (needs ``target > 0`` on the
          support; for ``target = pi_lam`` it is ``(D(lam) - L(pi_theta, lam)) / beta``);
        * ``"nu"``: a smooth surrogate of ``max_x max(||pi_theta - target||_1,
          |KL(pi_theta||pi_ref) - KL(target||pi_ref)|)`` (log-sum-exp, temperature 1/200).
        """
        if objective not in FIT_OBJECTIVES:
            raise ValueError(f"objective: must be one of {FIT_OBJECTIVES}, got {objective!r}")
        t_np = target.detach().numpy() if isinstance(target, torch.Tensor) else target
        target = torch.as_tensor(np.asarray(t_np, dtype=np.float64), dtype=DTYPE)
        kl_target = torch.as_tensor(kl_divergence(self.problem, target.numpy()), dtype=DTYPE)
        rho = torch.as_tensor(self.problem.prompt_weights, dtype=DTYPE)
        pos = target > 0
        log_t = torch.where(pos, torch.log(torch.where(pos, target, 1.0)), 0.0)
        sup = self.support

        def loss(theta: torch.Tensor) -> torch.Tensor:
            logp = self.log_policy(theta)
            if objective == "kl":  # E_rho KL(target || pi_theta)
                return rho @ torch.where(pos, target * (log_t - logp), 0.0).sum(1)
            logp_s = torch.where(sup, logp, 0.0)
            p = torch.where(sup, torch.exp(logp_s), 0.0)
            if objective == "reverse_kl":  # E_rho KL(pi_theta || target), target > 0 on supp
                return rho @ (p * (logp_s - torch.where(sup, log_t, 0.0))).sum(1)
            # "nu": a smooth surrogate of max_x max(||p - t||_1, |KL_p - KL_t|)
            kl_p = (p * (logp_s - self.log_ref)).sum(1)  # size = (X,)
            l1 = torch.sqrt((p - target) ** 2 + 1e-16).sum(1)
            klg = torch.sqrt((kl_p - kl_target) ** 2 + 1e-16)
            both = torch.cat([l1, klg])
            return torch.logsumexp(both * 200.0, 0) / 200.0
        return loss

    def fit(self, target: np.ndarray, theta0: torch.Tensor | None = None, *,
            objective: str = "nu", steps: int = 300, starts: int = 1,
            seed: int = 0) -> FitResult:
        """The best approximation found of ``target`` (an ``(X, Y)`` policy on the support).

        Minimizes, with :meth:`minimize` (default L-BFGS) from ``theta0`` (default
        ``init_params()``) and ``starts - 1`` random starts, first ``E_rho KL(target ||
        pi_theta)`` and then (``objective="nu"``, the default) a smooth surrogate of the gap
        itself, ``max_x max(||pi_theta - pi||_1, |KL(pi_theta||pi_ref) - KL(pi||pi_ref)|)``
        (:meth:`fit_loss`), ``steps`` iterations per stage.  Returns the candidate with the
        smallest measured ``nu``; ``objective="kl"`` / ``"reverse_kl"`` minimize only that
        divergence (reverse needs ``target > 0`` on the support).
        """
        if objective not in FIT_OBJECTIVES:
            raise ValueError(f"objective: must be one of {FIT_OBJECTIVES}, got {objective!r}")
        if int(steps) != steps or int(steps) < 1:
            raise ValueError(f"steps: must be a positive integer, got {steps!r}")
        if int(starts) != starts or int(starts) < 1:
            raise ValueError(f"starts: must be a positive integer, got {starts!r}")
        t_np = self.check_target(target)
        if objective == "reverse_kl" and (t_np[self.problem.support] <= 0).any():
            raise ValueError("target: reverse_kl needs target > 0 on the whole support")
        firsts = [self.init_params() if theta0 is None else self.check_params(theta0)]
        firsts += [self.init_params(int(seed) + k) for k in range(1, int(starts))]
        stages = ["kl", "nu"] if objective == "nu" else [objective]
        losses = {stage: self.fit_loss(t_np, stage) for stage in stages}
        best: FitResult | None = None
        total = 0
        with small_problem_threads(self.problem):
            for th0 in firsts:
                theta = th0.detach().clone().requires_grad_(True)
                for stage in stages:
                    total += self.minimize(theta, losses[stage], int(steps))
                    res = self.measure(theta.detach(), t_np, objective, total)
                    if best is None or res.nu < best.nu:
                        best = res
        assert best is not None
        best.iterations = total
        return best

    def measure(self, theta: torch.Tensor, target: np.ndarray, objective: str = "nu",
                iterations: int = 0) -> FitResult:
        """The :class:`FitResult` of ``theta`` against ``target``, measured exactly (float64):
        any theta is a valid witness of its ``nu``."""
        theta = self.check_params(theta)
        pi = self.policy(theta)
        l1, klg = approximation_gap(self.problem, pi, target)
        nu_1, nu_kl = float(l1.max()), float(klg.max())
        return FitResult(theta=theta.detach().clone(), policy=pi, l1=l1, kl_gap=klg, nu_1=nu_1,
                         nu_kl=nu_kl, nu=max(nu_1, nu_kl), objective=objective,
                         iterations=iterations)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_params={self.num_params})"



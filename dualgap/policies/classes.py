"""The policy classes: tabular, log-linear on features, and a tanh MLP (torch, float64).

See :mod:`.base` for the tilted softmax every class writes its policy as; the classes differ in
the score ``f_theta``:

* :class:`TabularPolicy`: ``f_theta(x, y) = theta[x, y]`` (one parameter per support entry);
  contains every policy with full support on ``supp(pi_ref)``, so ``nu = 0`` for those targets.
* :class:`LogLinearPolicy`: ``f_theta(x, y) = theta^T phi(x, y)`` for user features
  ``phi`` of shape ``(d, X, Y)``; with ``phi = [r, g_1..g_m]`` it contains every ``pi_lam``
  (:func:`problem_features`).
* :class:`MLPPolicy`: ``f_theta = `` a tanh multilayer perceptron of the (standardized) features,
  whose width and depth sweep the capacity.

Imports torch.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..problem import AlignmentProblem
from .base import FIT_OBJECTIVES, FitResult, PolicyClass, damped_solve
from .loglinear_np import LogLinearFitLoss, newton_ascent
from .optim import lbfgs_numpy
from .terms import DTYPE

__all__ = ["TabularPolicy", "LogLinearPolicy", "MLPPolicy", "problem_features"]


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

    def scores_batch(self, thetas: torch.Tensor) -> torch.Tensor:
        X, Y = self.problem.reward.shape
        K = thetas.shape[0]
        flat = torch.zeros(K, X * Y, dtype=DTYPE).index_copy(1, self._flat_index, thetas)
        return flat.view(K, X, Y)

    def scores_pullback(self, thetas: torch.Tensor):
        """The scores are the parameters: the pullback of ``G`` is ``G`` on the support."""
        return (self.scores_batch(thetas.detach()),
                lambda G: G.reshape(G.shape[0], -1)[:, self._flat_index])

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
        return delta[self.support] / (1.0 + max(float(damping), 0.0))

    def fit(self, target: np.ndarray, theta0: torch.Tensor | None = None, *,
            objective: str = "nu", steps: int = 300, starts: int = 1,
            seed: int = 0) -> FitResult:
        """Closed form: ``theta = log max(pi, 1e-300) - log pi_ref`` on the support (exact when
        the target is positive on the support; the optimizer arguments are validated, unused)."""
        if objective not in FIT_OBJECTIVES:
            raise ValueError(f"objective: must be one of {FIT_OBJECTIVES}, got {objective!r}")
        t = self.check_target(target)
        sup = self.problem.support
        theta = np.log(np.maximum(t[sup], 1e-300)) - self.problem.log_reference[sup]
        theta -= theta.mean()  # the softmax is shift invariant; keep the numbers small
        return self.measure(torch.as_tensor(theta, dtype=DTYPE), t, objective, 0)


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

    def scores_batch(self, thetas: torch.Tensor) -> torch.Tensor:
        d, X, Y = self._phi.shape
        return (thetas @ self._phi.reshape(d, X * Y)).view(-1, X, Y)

    def scores_pullback(self, thetas: torch.Tensor):
        """Linear scores: the pullback of ``G`` is ``sum_{x,y} G phi``."""
        d, X, Y = self._phi.shape
        flat = self._phi.reshape(d, X * Y)
        return (thetas.detach() @ flat).view(-1, X, Y), lambda G: G.reshape(G.shape[0], -1) @ flat.T

    def score_jacobian(self, theta: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """``phi`` on the support, ``(n_support, d)`` (the scores are linear in theta)."""
        return self._phi[:, self.support].T

    def _normal_equations(self, delta: torch.Tensor, weights: torch.Tensor,
                          third_moment: bool = False
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(A, b, M)`` of :meth:`score_step` and :meth:`ascent_step` (``M`` only with
        ``third_moment``, else None)."""
        sup = self.support
        w = torch.where(sup, weights, 0.0)  # size = (X, Y)
        dl = torch.where(sup, delta, 0.0)
        wsum = w.sum(1).clamp_min(1e-300)  # size = (X,)
        phi_m = torch.einsum("xy,dxy->dx", w, self._phi) / wsum  # size = (d, X)
        phi_c = self._phi - phi_m[:, :, None]  # size = (d, X, Y)
        dc = dl - ((w * dl).sum(1) / wsum)[:, None]  # size = (X, Y)
        wphi = phi_c * w  # size = (d, X, Y)
        A = torch.einsum("dxy,exy->de", wphi, phi_c)  # size = (d, d)
        b = torch.einsum("dxy,xy->d", wphi, dc)
        third = torch.einsum("dxy,exy->de", wphi * dc, phi_c) if third_moment else None
        return A, b, third

    def score_step(self, theta: torch.Tensor, delta: torch.Tensor, weights: torch.Tensor,
                   damping: float = 0.0) -> torch.Tensor:
        """:meth:`PolicyClass.score_step` in closed form on the dense ``(d, X, Y)`` features.

        ``J = phi`` (the scores are linear), so with ``w`` the weights (0 outside the support),
        ``phi_c = phi - E_w[phi | x]`` and ``delta_c = delta - E_w[delta | x]``::

            (A + tau I) d = b,   A = sum_{x,y} w phi_c phi_c^T  (d, d),
                                 b = sum_{x,y} w phi_c delta_c  (d,)

        the same normal equations as the generic method, without the support gather and the
        Jacobian (``tau`` as there).
        """
        A, b, _ = self._normal_equations(delta, weights)
        return damped_solve(A, b, damping)

    def ascent_step(self, theta: torch.Tensor, delta: torch.Tensor, weights: torch.Tensor,
                    damping: float = 0.0) -> torch.Tensor:
        """The Newton step of ``L(pi_theta, lam)`` in closed form, when ``-hess L`` is positive
        definite; :meth:`score_step` (the natural step) otherwise.

        With ``delta = (r + lam^T h) / beta - f_theta`` and ``w = rho pi_theta`` (as in
        :func:`~.optim.natural_ascent`), ``grad L = beta b`` and ``-hess L = beta (A - M)`` with
        :meth:`score_step`'s ``A``, ``b`` and the third-moment term
        ``M = sum_{x,y} w phi_c phi_c^T delta_c``, so the step solves ``(A - M + tau I) d = b``
        (``tau`` as there).  The natural step drops ``M`` (which vanishes where
        ``pi_theta = pi_lam``); with ``M`` the steps converge quadratically (6-9 steps instead of
        21-44 on the default instance, to the same maximizer).
        """
        A, b, third = self._normal_equations(delta, weights, third_moment=True)
        H = A - third  # -hess L / beta
        if not bool(torch.isfinite(H).all()) or torch.linalg.cholesky_ex(H).info != 0:
            return damped_solve(A, b, damping)  # not concave here: the natural step
        return damped_solve(H, b, damping)

    def newton_ascent(self, problem: AlignmentProblem, lam: np.ndarray, theta: np.ndarray,
                      max_iter: int) -> tuple[np.ndarray, int, bool]:
        """:func:`~.optim.natural_ascent` ``newton=True`` (searches run to convergence) in
        numpy (:func:`~.loglinear_np.newton_ascent`: the same steps as :meth:`ascent_step`, the
        same line search); natural_ascent takes it when the class has it."""
        return newton_ascent(problem, self, lam, theta, max_iter)

    def fit_loss(self, target: np.ndarray | torch.Tensor, objective: str) -> LogLinearFitLoss:
        """:meth:`PolicyClass.fit_loss` (the same torch loss, callable on a torch ``theta``)
        with its closed-form numpy value and gradient attached
        (:class:`~.loglinear_np.LogLinearFitLoss`), which :meth:`minimize` runs on."""
        from ..dual import kl_divergence

        torch_loss = super().fit_loss(target, objective)
        t_np = target.detach().numpy() if isinstance(target, torch.Tensor) else target
        t_np = np.asarray(t_np, dtype=np.float64)
        return LogLinearFitLoss(self, t_np, objective, kl_divergence(self.problem, t_np),
                                torch_loss)

    def minimize(self, theta: torch.Tensor, loss_fn, steps: int) -> int:
        """:meth:`PolicyClass.minimize` (the same L-BFGS, :func:`~.optim.lbfgs_numpy`) on the
        closed-form numpy value and gradient when ``loss_fn`` is one of this class's
        :meth:`fit_loss` losses; autograd (the default) for any other loss."""
        value_grad = getattr(loss_fn, "value_grad", None)
        if value_grad is None:
            return super().minimize(theta, loss_fn, steps)
        x0 = theta.detach().numpy().astype(np.float64, copy=True)
        x, it = lbfgs_numpy(x0, value_grad, int(steps))
        with torch.no_grad():
            theta.copy_(torch.from_numpy(x))
        return it

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

    def scores_batch(self, thetas: torch.Tensor) -> torch.Tensor:
        """One batched forward pass for ``(K, num_params)`` parameters: ``(K, X, Y)``
        (differentiable; the searches use :meth:`scores_pullback`)."""
        X, Y = self.problem.reward.shape
        K = thetas.shape[0]
        a = self._inputs[None]  # size = (1, X*Y, d)
        k = 0
        for j, (o, i) in enumerate(self._shapes):
            W = thetas[:, k:k + o * i].reshape(K, o, i)
            k += o * i
            b = thetas[:, k:k + o]
            k += o
            a = b[:, None, :] + a @ W.transpose(1, 2)  # size = (K, X*Y, o)
            if j < len(self._shapes) - 1:
                a = torch.tanh(a)
        return a.view(K, X, Y)

    def scores_pullback(self, thetas: torch.Tensor):
        """The scores and their pullback written out in numpy, one parameter vector at a time
        (2x faster than autograd through :meth:`scores_batch` here, measured; the same numbers
        to rounding): ``a_k = tanh(W_k a_{k-1} + b_k)``, and backwards ``delta <- (delta W_k)
        (1 - a_{k-1}^2)`` with ``dW_k = delta^T a_{k-1}``, ``db_k = sum delta``."""
        X, Y = self.problem.reward.shape
        T = thetas.detach().numpy()
        U = self._inputs.numpy()  # size = (X*Y, d)
        acts, fs = [], []
        for th in T:
            layers = list(self._layers(torch.from_numpy(th)))
            a_list = [U]
            for j, (W, b) in enumerate(layers):
                z = a_list[-1] @ W.numpy().T
                z += b.numpy()
                if j < len(layers) - 1:
                    np.tanh(z, out=z)
                    a_list.append(z)
                else:
                    fs.append(z[:, 0])
            acts.append((layers, a_list))

        def pullback(G: torch.Tensor) -> torch.Tensor:
            Gn = G.detach().numpy().reshape(len(T), X * Y)
            out = []
            for (layers, a_list), g in zip(acts, Gn, strict=True):
                delta = g[:, None]  # size = (X*Y, 1)
                parts = []
                for j in range(len(layers) - 1, -1, -1):
                    W = layers[j][0].numpy()
                    a_in = a_list[j]
                    parts.append(delta.sum(0))
                    parts.append((delta.T @ a_in).ravel())
                    if j > 0:  # delta <- (delta W) (1 - a_in^2), in place
                        z = np.multiply(a_in, a_in)
                        np.subtract(1.0, z, out=z)
                        if delta.shape[1] == 1:  # the output layer: an outer product
                            z *= W
                            z *= delta
                        else:
                            z *= delta @ W
                        delta = z
                out.append(np.concatenate(parts[::-1]))
            return torch.as_tensor(np.stack(out), dtype=DTYPE)

        return torch.as_tensor(np.stack(fs), dtype=DTYPE).view(len(T), X, Y), pullback

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

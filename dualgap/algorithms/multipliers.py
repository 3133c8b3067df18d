"""Multipliers and their update rules (numpy only).

Every multiplier holds ``lam >= 0`` (shape ``(m,)``) and moves it with the observed constraint
slack ``u_t`` (exact ``E_rho E_pi h`` or a sampled estimate; ``u < 0`` means violated) and a step
size ``eta`` (:meth:`Multiplier.update`).  The projected dual step is written once, in
:func:`projected_step`::

      lam_{t+1} = [lam_t - eta u_t]_+

and used everywhere a multiplier takes it: :class:`LinearMultiplier`, the integral of
:class:`PIDMultiplier`, :func:`~dualgap.algorithms.dual_descent` and CAID, and the
language-model pipeline's dual step (outside the core).  The multipliers:

* :class:`LinearMultiplier` (projected dual subgradient, CAID's and dual descent's step)::

      lam_{t+1} = [lam_t - eta u_t]_+

* :class:`LogMultiplier` (Safe RLHF: gradient descent on ``s = log lam`` of the loss
  ``lam^T u``, whose gradient in ``s`` is ``lam * u``)::

      s_{t+1} = s_t - eta lam_t * u_t,   lam_{t+1} = exp(s_{t+1}) = lam_t exp(-eta lam_t u_t)

  (``lam_i = 0`` is absorbing; start it positive);

* :class:`PIDMultiplier` (Stooke, Achiam & Abbeel 2020, "PID Lagrangian", Alg. 2), with the
  violation ``e_t = -u_t``, integral gain ``eta`` and gains ``k_p eta``, ``k_d eta``::

      I_{t+1}   = [I_t + eta e_t]_+                                  (I_0 = lam_0)
      lam_{t+1} = [I_{t+1} + k_p eta e_t + k_d eta [e_t - e_{t-1}]_+]_+   (e_{-1} = e_0)

  ``k_p = k_d = 0`` is the linear multiplier.

:func:`dual_update_rule` wraps any of them, with the exact Lagrangian maximizer ``pi_lam`` as the
policy step, into the rule signature of :mod:`dualgap.testing`'s checkers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..dual import lagrangian_policy
from ..problem import AlignmentProblem
from .estimators import estimate_slack

__all__ = ["projected_step","Multiplier", "LinearMultiplier", "LogMultiplier", "PIDMultiplier",
           "make_multiplier", "MULTIPLIER_KINDS", "dual_update_rule"]

MULTIPLIER_KINDS = ("linear", "log", "pid")


class Multiplier:
    """A non-negative multiplier ``lam`` (shape ``(m,)``) updated from the slack ``u``."""

    def __init__(self, lam0: np.ndarray) -> None:
        lam0 = np.asarray(lam0, dtype=np.float64).reshape(-1)
        if not np.isfinite(lam0).all() or (lam0 < 0).any():
            raise ValueError(f"lam0: expected finite non-negative values, got {lam0!r}")
        self._lam = lam0.copy()

    @property
    def lam(self) -> np.ndarray:
        """The current ``lam`` (a copy)."""
        return self._lam.copy()

    def update(self, u: np.ndarray, eta: float) -> np.ndarray:
        """One step with slack ``u`` and step ``eta``; returns the new ``lam``."""
        raise NotImplementedError


def projected_step(lam: np.ndarray, direction: np.ndarray, eta: float) -> np.ndarray:
    """The projected dual (sub)gradient step ``[lam - eta u]_+`` (a new array).

    ``lam >= 0`` the multipliers ``(m,)``, ``u = direction`` the constraint slack (a
    subgradient of the dual at ``lam``: a violated constraint, ``u_i < 0``, raises ``lam_i``),
    ``eta >= 0`` the step size; ``[.]_+`` projects onto ``lam >= 0``.
    """
    return np.maximum(np.asarray(lam, dtype=np.float64)
                      - eta * np.asarray(direction, dtype=np.float64), 0.0)


class LinearMultiplier(Multiplier):
    """``lam <- [lam - eta u]_+``."""

    def update(self, u: np.ndarray, eta: float) -> np.ndarray:
        self._lam = projected_step(self._lam, u, eta)
        return self.lam


class LogMultiplier(Multiplier):
    """``lam <- lam exp(-eta lam u)`` (gradient step on ``log lam``; Safe RLHF)."""

    def update(self, u: np.ndarray, eta: float) -> np.ndarray:
        # a diverging run overflows to inf (numpy warns); nothing is clipped
        self._lam = self._lam * np.exp(-eta * self._lam * np.asarray(u, dtype=np.float64))
        return self.lam


class PIDMultiplier(Multiplier):
    """PID Lagrangian multiplier (see the module docstring for the equations)."""

    def __init__(self, lam0: np.ndarray, kp: float = 0.0, kd: float = 0.0) -> None:
        super().__init__(lam0)
        for name, v in (("kp", kp), ("kd", kd)):
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{name}: must be a finite float >= 0, got {v!r}")
        self.kp, self.kd = float(kp), float(kd)
        self.integral = self._lam.copy()
        self.prev_error: np.ndarray | None = None

    def update(self, u: np.ndarray, eta: float) -> np.ndarray:
        e = -np.asarray(u, dtype=np.float64)
        prev = e if self.prev_error is None else self.prev_error
        self.integral = projected_step(self.integral, -e, eta)  # [I + eta e]_+
        raw = self.integral + self.kp * eta * e + self.kd * eta * np.maximum(e - prev, 0.0)
        self._lam = np.maximum(raw, 0.0)
        self.prev_error = e
        return self.lam


def make_multiplier(kind: str, lam0: np.ndarray, kp: float = 0.0, kd: float = 0.0) -> Multiplier:
    """``"linear"``, ``"log"`` or ``"pid"`` (gains ``kp``, ``kd`` only for ``"pid"``)."""
    if kind not in MULTIPLIER_KINDS:
        raise ValueError(f"multiplier: must be one of {MULTIPLIER_KINDS}, got {kind!r}")
    if kind != "pid" and (kp or kd):
        raise ValueError(f"kp/kd: only the 'pid' multiplier has gains (got kp={kp}, kd={kd} "
                         f"for {kind!r})")
    if kind == "linear":
        return LinearMultiplier(lam0)
    if kind == "log":
        return LogMultiplier(lam0)
    return PIDMultiplier(lam0, kp, kd)


def dual_update_rule(kind: str = "linear", *, kp: float = 0.0, kd: float = 0.0,
                     samples: int | None = None, seed: int = 0
                     ) -> Callable[[AlignmentProblem, float], Callable[[np.ndarray], np.ndarray]]:
    """A dual update rule ``rule(problem, eta) -> step`` for :mod:`dualgap.testing`.

    ``step(lam)`` takes the exact policy step ``pi_lam``, observes ``u = E_rho E_{pi_lam} h``
    (or its estimate from ``samples`` responses per prompt) and returns the multiplier's next
    ``lam``.  The multiplier's state (PID integral, previous error) starts from the first
    ``lam`` the step sees; call ``rule`` again for a fresh state.
    """
    make_multiplier(kind, np.zeros(0), kp, kd)  # validate now

    def rule(problem: AlignmentProblem, eta: float) -> Callable[[np.ndarray], np.ndarray]:
        rng = np.random.default_rng(seed)
        state: dict[str, Multiplier] = {}

        def step(lam: np.ndarray) -> np.ndarray:
            lam = np.asarray(lam, dtype=np.float64)
            if "mult" not in state:
                state["mult"] = make_multiplier(kind, lam, kp, kd)
            mult = state["mult"]
            if not np.array_equal(mult.lam, lam):  # the caller moved lam: restart the state
                mult = state["mult"] = make_multiplier(kind, lam, kp, kd)
            u = estimate_slack(problem, lagrangian_policy(problem, lam), samples, rng)
            return mult.update(u, eta)

        return step

    rule.__name__ = f"dual_update_rule_{kind}"
    return rule

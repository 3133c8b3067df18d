"""The parametrized primal ``P*_p = max_theta J(pi_theta) s.t. E_rho E_{pi_theta} h >= 0``
from below: any feasible theta gives a *lower estimate*.  Imports torch.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..policies import DTYPE, PolicyClass
from ..problem import AlignmentProblem
from .dual import ParametrizedDual, active_set, newton_polish, parametrized_dual, slack_jacobian
from .lagrangian import check_compatible, cut, lagrangian_max, policy_terms, with_small_threads

__all__ = ["ParametrizedPrimal", "parametrized_primal", "with_candidate"]


@dataclass
class ParametrizedPrimal:
    """A feasible ``theta`` for ``max_theta J(pi_theta) s.t. E_rho E_{pi_theta} h >= 0``.

    Attributes:
        value: ``J(pi_theta)``, a *lower estimate* of ``P*_p`` (``-inf`` if none was found).
        theta, policy, slack: the feasible point (``slack >= 0`` exactly, as computed).
        found: whether any feasible theta was found.
        margin: the largest ``min_i s_i(theta)`` among the thetas seen (the Slater margin found,
            for the feasibility assumption of Theorem 1).
        evaluations: Lagrangian maximizations and penalty runs spent.
    """

    value: float
    theta: torch.Tensor | None = field(repr=False)
    policy: np.ndarray | None = field(repr=False)
    slack: np.ndarray | None
    found: bool
    margin: float
    evaluations: int
    seconds: float


@with_small_threads
def parametrized_primal(problem: AlignmentProblem, policy_class: PolicyClass,
                        dual: ParametrizedDual | None = None, *, bisections: int = 20,
                        newton_steps: int = 6, penalty_rounds: int = 5,
                        penalty_steps: int = 150, starts: int = 1,
                        seed: int = 0, method: str = "auto") -> ParametrizedPrimal:
    """``P*_p`` from below: the best feasible theta found.

    Candidates, each kept only if ``min_i E_rho E_{pi_theta} h_i >= 0`` as computed:

    1. every theta of the parametrized dual's cuts (``dual``, computed if not given);
    2. a Newton polish of ``lam*_p`` on the active set ``A`` (``lam_i > 0`` or ``s_i < 0``):
       ``lam_A <- [lam_A - J^{-1} s_A]_+`` with ``J = d s_A(theta(lam)) / d lam_A`` by forward
       differences (``newton_steps`` at most, kept while ``max |s_A|`` shrinks);
    3. Lagrangian maximizers along ``lam(t) = [lam*_p + t w]_+`` with ``w = J^{-1} 1`` on the
       active set (the direction that raises every active slack at unit rate; ``w`` = 1 on it
       when no Jacobian is available): ``t`` grown 4x until feasible, then bisected towards
       the smallest feasible ``t`` (``bisections`` steps);
    4. an augmented-Lagrangian polish from the best candidate (Powell-Hestenes-Rockafellar:
       ``max_theta J + sum_i -(1/(2c)) ([mu_i - c s_i]_+^2 - mu_i^2)``,
       ``mu <- [mu - c s]_+``, ``c <- 4c``; ``penalty_rounds`` rounds of ``penalty_steps``
       iterations of the class's :meth:`~dualgap.policies.PolicyClass.minimize` hook,
       L-BFGS by default).

    Zero ``newton_steps``, ``bisections`` (then stage 3 as a whole) or ``penalty_rounds`` skip
    that stage.
    """
    check_compatible(problem, policy_class)
    t0 = time.perf_counter()
    if dual is None:
        dual = parametrized_dual(problem, policy_class, starts=starts, seed=seed, method=method)
    m = problem.num_constraints
    best: list = [-math.inf, None, None]
    margin = -math.inf
    evals = 0

    def consider(theta: torch.Tensor) -> np.ndarray:
        nonlocal margin
        with torch.no_grad():
            J, s = policy_terms(problem, policy_class, theta)
        s_np = s.numpy().copy()
        smin = float(s_np.min()) if m else math.inf
        margin = max(margin, smin)
        if smin >= 0.0 and float(J) > best[0]:
            best[:] = [float(J), theta.detach().clone(), s_np]
        return s_np

    for th in dual.thetas:
        consider(th)
    if m:
        lam_p = dual.lam.copy()
        s_p = consider(dual.theta)
        warm = dual.theta
        lam_p, warm, s_p, jac_last, n_ev, visited = newton_polish(
            problem, policy_class, lam_p, warm, s_p, int(newton_steps), method)
        evals += n_ev
        for th in visited:
            consider(th)
        act = active_set(lam_p, s_p)
        w = act.astype(float)
        has_jac = jac_last is not None and jac_last.shape[0] == int(act.sum())
        if not has_jac and s_p.min() < 0 and bisections > 0 and act.any():
            # no Jacobian from the polish (it stopped at its tolerance, a hair infeasible):
            # without one, w = 1 can lower a slack where the constraints are correlated
            jac_last, thetas = slack_jacobian(problem, policy_class, lam_p, warm, s_p,
                                              np.nonzero(act)[0], method)
            evals += len(thetas)
            for th in thetas:
                consider(th)
            has_jac = True
        if has_jac:
            # the direction that raises every active slack at unit rate (to first order)
            try:
                u = np.linalg.solve(jac_last, np.ones(int(act.sum())))
                if np.isfinite(u).all() and u.max() > 0:
                    w = np.zeros(m)
                    w[act] = u / np.abs(u).max()
            except np.linalg.LinAlgError:
                pass
        if not w.any():
            w[:] = 1.0
        scale = 1.0 + float(lam_p.sum())

        warm_p = warm

        def at(t: float) -> tuple[np.ndarray, torch.Tensor]:
            nonlocal evals
            evals += 1
            res = lagrangian_max(problem, policy_class, np.maximum(lam_p + t * w, 0.0),
                                 theta0=warm_p,
                                 starts=starts, seed=seed, method=method)
            return consider(res.theta), res.theta

        if s_p.min() < 0 and bisections > 0:
            lo, hi, t = 0.0, None, 1e-6 * scale
            while t < 1e3 * scale:
                s, th = at(t)
                if s.min() >= 0:
                    hi = t
                    break
                lo, t = t, 4.0 * t
            if hi is not None:
                for _ in range(bisections):
                    mid = 0.5 * (lo + hi)
                    s, th = at(mid)
                    if s.min() >= 0:
                        hi = mid
                    else:
                        lo = mid
        # augmented-Lagrangian polish from the best point so far (or the dual's theta)
        theta = (best[1] if best[1] is not None else dual.theta).clone().requires_grad_(True)
        mu = torch.as_tensor(np.maximum(lam_p, 0.0), dtype=DTYPE)
        c = 10.0 / max(problem.score_bound, 1e-12)
        for _ in range(int(penalty_rounds)):
            mu_now = mu.clone()

            def neg_alm(th: torch.Tensor, mu_k: torch.Tensor = mu_now,
                        c_k: float = c) -> torch.Tensor:
                J, s = policy_terms(problem, policy_class, th)
                pen = (torch.clamp(mu_k - c_k * s, min=0.0) ** 2 - mu_k ** 2).sum() / (2 * c_k)
                return -(J - pen)

            policy_class.minimize(theta, neg_alm, int(penalty_steps))
            evals += 1
            s = torch.as_tensor(consider(theta.detach()), dtype=DTYPE)
            mu = torch.clamp(mu - c * s, min=0.0)
            c *= 4.0
    else:
        consider(dual.theta)
    found = best[1] is not None
    return ParametrizedPrimal(
        value=best[0], theta=best[1], policy=policy_class.policy(best[1]) if found else None,
        slack=best[2], found=found, margin=margin, evaluations=evals,
        seconds=time.perf_counter() - t0)


def with_candidate(problem: AlignmentProblem, policy_class: PolicyClass,
                   primal: ParametrizedPrimal, theta: torch.Tensor) -> ParametrizedPrimal:
    """``primal`` improved by ``theta`` if it is feasible with a larger ``J`` (its margin
    updated either way)."""
    J, s = cut(problem, policy_class, theta)
    smin = float(s.min()) if s.size else math.inf
    margin = max(primal.margin, smin)
    if smin >= 0 and J > primal.value:
        return dataclasses.replace(primal, value=J, theta=theta.detach().clone(),
                                   policy=policy_class.policy(theta), slack=s, found=True,
                                   margin=margin)
    return dataclasses.replace(primal, margin=margin)

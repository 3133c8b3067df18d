"""An independent solver for checks: the primal problem in cvxpy (exponential cone).

    max_{pi >= 0 on supp}  sum_{x,y} rho(x) [pi (r + beta log pi_ref) + beta * entr(pi)]
                           (= E_rho [E_pi r - beta KL(pi || pi_ref)])
    s.t.  sum_y pi(x, y) = 1                        for every x
          sum_{x,y} rho(x) pi(x, y) h_i(x, y) >= 0   for every i      (dual value -> lam_i)

Only entries on the reference support are variables, so zeros of ``pi_ref`` are respected
exactly.  Nothing here shares code with the dual solver beyond the problem definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .feasibility import InfeasibleError, attainable_maxima
from .problem import AlignmentProblem

__all__ = ["PrimalSolution", "solve_primal_cvxpy"]


@dataclass
class PrimalSolution:
    """Result of :func:`solve_primal_cvxpy`."""

    primal_value: float
    policy: np.ndarray = field(repr=False)
    lam: np.ndarray
    slack: np.ndarray
    status: str
    solver: str
    seconds: float


def solve_primal_cvxpy(
    problem: AlignmentProblem, solver: str = "CLARABEL", **solver_kw: object
) -> PrimalSolution:
    """Solve the primal with cvxpy (``solver`` in ``{"CLARABEL", "SCS", "ECOS", ...}``)."""
    import time

    if not isinstance(problem, AlignmentProblem):
        raise ValueError(f"problem: expected an AlignmentProblem, got {type(problem).__name__}")
    import cvxpy as cp
    import scipy.sparse as sp

    t0 = time.perf_counter()
    xs, ys = np.nonzero(problem.support)
    n = xs.size
    X = problem.num_prompts
    w = problem.prompt_weights[xs]
    ref = problem.reference[xs, ys]  # > 0 on the support
    p = cp.Variable(n, nonneg=True)
    rows = sp.csr_matrix((np.ones(n), (xs, np.arange(n))), shape=(X, n))
    # rel_entr(p, ref) = -entr(p) - p log ref: the entropy form is the better-conditioned cone
    linear = w * (problem.reward[xs, ys] + problem.beta * np.log(ref))
    objective = cp.Maximize(linear @ p + problem.beta * (w @ cp.entr(p)))
    cons = [rows @ p == 1]
    m = problem.num_constraints
    if m:
        G = w[None, :] * problem.utilities[:, xs, ys]  # size = (m, n)
        cons.append(G @ p >= problem.offsets)
    prob = cp.Problem(objective, cons)
    prob.solve(solver=solver, **solver_kw)
    if prob.status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        maxima = attainable_maxima(problem)
        i = int(np.argmin(maxima))
        raise InfeasibleError(problem, np.eye(m)[i], maxima[i], maxima)
    if p.value is None or prob.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise RuntimeError(f"cvxpy ({solver}) returned status {prob.status!r}")
    values = [p.value, prob.value] + ([cons[1].dual_value] if m else [])
    if not all(np.isfinite(np.asarray(v, dtype=float)).all() for v in values):
        raise RuntimeError(f"cvxpy ({solver}) returned non-finite values (status "
                           f"{prob.status!r}); the instance's scale may be beyond the solver")
    pi = np.zeros_like(problem.reward)
    pi[xs, ys] = np.maximum(p.value, 0.0)
    pi /= pi.sum(axis=1, keepdims=True)
    lam = np.asarray(cons[1].dual_value, dtype=float).reshape(m) if m else np.zeros(0)
    slack = (
        np.einsum("x,xy,ixy->i", problem.prompt_weights, pi, problem.utilities) - problem.offsets
    )
    return PrimalSolution(
        primal_value=float(prob.value),
        policy=pi,
        lam=np.maximum(lam, 0.0),
        slack=slack,
        status=str(prob.status),
        solver=solver,
        seconds=time.perf_counter() - t0,
    )

"""The stochastic best-iterate theorem on a class with nu > 0 (eps_app measured).

Statement (docs/theory.md): with unbiased sampled subgradients of second moment ``<= S^2`` and
an ``eps_app``-inexact policy step, constant-step dual descent has a best iterate with

    min_t D_p(lam_t) - D*_p <= eta S^2 / 2 + eps_app                              (T -> inf)
    min_t D_p(lam_t) - D*_p <= ||lam_0 - lam*_p||^2 / (2 eta T) + eta S^2 / 2 + eps_app (T)

in expectation.  Run: CAID (:func:`dualgap.algorithms.caid`, ``lam_0 = 0``, sampled dual steps
from ``N`` on-policy samples per prompt, ``inner_steps`` L-BFGS iterations per policy step) on a
log-linear class on noisy features (``nu > 0``, so ``D_p < D``).  Estimates and their sides:

* ``D_p(lam_t)``: the best of the run's own ``L(pi_t, lam_t)`` and a fresh local search (2
  starts): a lower estimate, so the left side errs low (easier);
* ``D*_p``: the bundle's certified lower bound (:func:`dualgap.gaps.parametrized_dual`):
  the left side errs high (harder);
* ``eps_app = max_t [D_p(lam_t) - L(pi_t, lam_t)]`` with that lower ``D_p``: errs low (harder);
* ``S^2``: the largest exact conditional second moment at the visited iterates (the smallest
  constant the proof can use); ``lam*_p``: the bundle's estimate.

The expectation is the mean over seeds; per setting (``eta``, ``N``) the finite-``T`` form is
counted ``holds`` or ``failed``; the ``T -> inf`` form is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .result import ClaimResult, mean_ci

__all__ = ["StochasticConfig", "stochastic_best_iterate"]


@dataclass(frozen=True)
class StochasticConfig:
    """Sizes (``quick()``: the suite's reduced size)."""

    prompts: int = 6
    responses: int = 8
    constraints: int = 2
    beta: float = 0.5
    noise: float = 1.0
    iterations: int = 100
    steps: tuple[float, ...] = (0.3, 0.03)  # eta in units of 1 / L_D
    samples: tuple[int, ...] = (1, 16)
    seeds: int = 4
    inner_steps: int = 2

    @classmethod
    def quick(cls) -> StochasticConfig:
        return cls(iterations=40, steps=(0.3,), samples=(1, 16), seeds=2)


def stochastic_best_iterate(cfg: StochasticConfig | None = None, *,
                            progress: bool = False) -> ClaimResult:
    """Run the check (module docstring); ``details["settings"]`` has, per ``(eta, N)``, the
    mean gap, both bounds, ``S^2`` and ``eps_app`` per seed."""
    import dualgap.algorithms as A

    from ..gaps import lagrangian_max, parametrization_gap, parametrized_dual
    from ..instances import random_problem
    from ..policies import LogLinearPolicy, problem_features
    from ..solver import solve
    from ..theory import smoothness_bound

    cfg = cfg or StochasticConfig()
    p = random_problem(7, cfg.prompts, cfg.responses, cfg.constraints, beta=cfg.beta,
                       tightness=0.9)
    pc = LogLinearPolicy(p, problem_features(p, noise=cfg.noise, seed=7))
    sol = solve(p)
    dual = parametrized_dual(p, pc)
    nu = float(parametrization_gap(p, pc, [sol.lam, dual.lam]).nu)
    L = smoothness_bound(p)
    res = ClaimResult("Stochastic theorem", "best iterate of sampled CAID vs ||lam0 - lam*_p||^2"
                      "/(2 eta T) + eta S^2/2 + eps_app (mean over seeds), nu > 0",
                      len(cfg.steps) * len(cfg.samples), notebook="10-multi-constraint.ipynb")
    settings = []
    cells = [(f, N) for f in cfg.steps for N in cfg.samples]
    it = cells
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(cells, total=len(cells), desc="stochastic theorem")
    dist2 = float(dual.lam @ dual.lam)  # ||lam_0 - lam*_p||^2 with lam_0 = 0
    for frac, N in it:
        eta = frac / L
        per_seed = []
        for seed in range(cfg.seeds):
            tr = A.caid(p, pc, iterations=cfg.iterations, step_size=eta, samples=N,
                        inner_steps=cfg.inner_steps, inner_method="lbfgs",
                        lam0=np.zeros(cfg.constraints), seed=seed)
            dp = np.array([max(float(tr.lagrangian[t]),
                               lagrangian_max(p, pc, tr.lam[t], starts=2, seed=seed).value)
                           for t in range(tr.num_records)])
            eps = float(np.max(dp[:-1] - tr.lagrangian[:-1]))
            S2 = float(np.nanmax(tr.second_moment))
            per_seed.append({"gap": float(dp.min() - dual.lower_bound), "eps_app": eps,
                             "S2": S2, "asymptotic": eta * S2 / 2 + eps,
                             "finite": dist2 / (2 * eta * cfg.iterations) + eta * S2 / 2 + eps})
        gap = float(np.mean([s["gap"] for s in per_seed]))
        fin = float(np.mean([s["finite"] for s in per_seed]))
        asym = float(np.mean([s["asymptotic"] for s in per_seed]))
        res.add("holds" if gap <= fin else "failed")
        settings.append({"eta x L_D": frac, "N": N, "mean gap": gap,
                         "gap 95% CI": mean_ci([s["gap"] for s in per_seed]),
                         "finite-T bound": fin, "T->inf bound": asym,
                         "T->inf form holds": gap <= asym, "seeds": per_seed})
    res.details = {"nu": nu, "D*_p certified lower": float(dual.lower_bound),
                   "box certified": bool(dual.box_certified), "settings": settings,
                   "T": cfg.iterations}
    return res

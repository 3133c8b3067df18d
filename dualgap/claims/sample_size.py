"""The one-shot multiplier's sample size: prompts N and samples K against the exact lam*.

The one-shot ``lam_hat`` (docs/theory.md, :mod:`dualgap.empirical`) is the exact solver applied to
``N`` prompts drawn uniformly from a population and ``K`` reference samples per prompt (the
relative constraint's ``E_ref g`` estimated from the same samples, as in the LLM pipeline).
Against the population's exact ``lam*``:

* ``|lam_hat - lam*| / lam*`` (relative multiplier error), and
* the violation ``max(0, -E_rho E_{pi_lam_hat} h)`` of the exact Lagrangian maximizer at
  ``lam_hat`` on the whole population (the constraint miss the sampling alone causes), and
  the signed threshold error ``E_rho E_{pi_lam_hat} h`` (positive: overshoot),

over a grid of ``N`` and ``K`` with ``reps`` draws each, beside the ``1/sqrt(N K)``
reference.  "Is 600 x 64 enough?" is answered for two uses: ``lam`` within 10% of ``lam*``
and a violation below 5% of ``b``, each by the upper end of a 95% interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .result import ClaimResult, mean_ci

__all__ = ["SampleSizeConfig", "one_shot_sample_size"]


@dataclass(frozen=True)
class SampleSizeConfig:
    """Sizes (``quick()``: the suite's reduced size).  The paper's point is ``N = 600``,
    ``K = 64``; it must be on the grid."""

    population: int = 4000
    responses: int = 32
    beta: float = 0.1
    prompts: tuple[int, ...] = (50, 150, 300, 600, 1200, 2400)
    samples: tuple[int, ...] = (8, 16, 32, 64, 128)
    reps: int = 10
    seed: int = 0

    @classmethod
    def quick(cls) -> SampleSizeConfig:
        return cls(population=1500, prompts=(50, 150, 600, 1200), samples=(8, 16, 64, 128),
                   reps=6)


def _population(cfg: SampleSizeConfig):
    from ..instances import random_problem

    return random_problem(cfg.seed, cfg.population, cfg.responses, 1, beta=cfg.beta,
                          tightness=0.5, correlation=-0.6)


def one_shot_sample_size(cfg: SampleSizeConfig | None = None, *,
                         progress: bool = False) -> ClaimResult:
    """Run the grid (module docstring).  ``details["grid"]`` holds, per ``(N, K)``, the mean
    and 95% interval of the relative error and of the violation, and the draws whose sampled
    instance was infeasible (no ``lam_hat``: counted, not dropped silently)."""
    from ..dual import constraint_slack, lagrangian_policy
    from ..empirical import empirical_problem
    from ..feasibility import InfeasibleError
    from ..solver import solve

    cfg = cfg or SampleSizeConfig()
    if 600 not in cfg.prompts or 64 not in cfg.samples:
        raise ValueError(f"prompts, samples: must contain 600 and 64, got {cfg.prompts} and "
                         f"{cfg.samples}")
    pop = _population(cfg)
    lam_star = float(solve(pop).lam[0])
    b = float(pop.thresholds[0])
    rng = np.random.default_rng(cfg.seed + 1)
    grid = {}
    cells = [(N, K) for N in cfg.prompts for K in cfg.samples]
    it = cells
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(cells, total=len(cells), desc="one-shot N x K")
    for N, K in it:
        errs, viols, slacks, infeasible = [], [], [], 0
        for _ in range(cfg.reps):
            rows = rng.integers(0, cfg.population, N)
            sub = pop.replace(reward=pop.reward[rows], utilities=pop.utilities[:, rows],
                              reference=pop.reference[rows], prompt_weights=None)
            try:
                lam_hat = solve(empirical_problem(sub, K, rng)).lam
            except InfeasibleError:
                infeasible += 1
                continue
            errs.append(abs(float(lam_hat[0]) - lam_star) / lam_star)
            slack = constraint_slack(pop, lagrangian_policy(pop, lam_hat))
            viols.append(max(0.0, -float(slack[0])))
            slacks.append(float(slack[0]))
        grid[(N, K)] = {"N": N, "K": K, "draws": len(errs), "infeasible": infeasible,
                        "rel_error": mean_ci(errs) if errs else None,
                        "rms_rel_error": float(np.sqrt(np.mean(np.square(errs)))) if errs
                        else None,
                        "violation": mean_ci(viols) if viols else None,
                        "threshold_error": mean_ci(slacks) if slacks else None}
    res = ClaimResult("One-shot sample size", "lam_hat vs exact lam* and the violation it "
                      "causes over N x K; is 600 x 64 enough (95% upper CI)",
                      len(cells) * cfg.reps, notebook="09-one-shot-sample-size.ipynb")
    paper = grid[(600, 64)]
    enough = {}
    for name, key, limit in (("lam within 10% of lam*", "rel_error", 0.10),
                             ("violation below 5% of b", "violation", 0.05 * b)):
        ci = paper[key]
        if ci is None:
            res.add("undecided")
            enough[name] = "no feasible draw"
            continue
        ok = ci[2] < limit
        enough[name] = ok
        res.add("holds" if ok else "failed")

    def slope(points):
        x = np.array([p[0] for p in points], float)
        y = np.array([p[1] for p in points], float)
        return float(np.polyfit(np.log(x), np.log(y), 1)[0])

    K0 = 64
    along_n = [(N * K0, grid[(N, K0)]["rms_rel_error"]) for N in cfg.prompts
               if grid[(N, K0)]["rms_rel_error"]]
    along_k = [(600 * K, grid[(600, K)]["rms_rel_error"]) for K in cfg.samples
               if grid[(600, K)]["rms_rel_error"]]
    res.details = {"lam*": lam_star, "b": b, "population": cfg.population,
                   "responses": cfg.responses, "beta": cfg.beta, "reps": cfg.reps,
                   "grid": [v for v in grid.values()], "600 x 64 enough for": enough,
                   "slope vs NK along N (K = 64)": slope(along_n) if len(along_n) > 1 else None,
                   "slope vs NK along K (N = 600)": slope(along_k) if len(along_k) > 1 else None,
                   "reference slope (1/sqrt(NK))": -0.5}
    return res

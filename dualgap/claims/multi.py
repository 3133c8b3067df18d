"""Several constraints on a class with nu > 0: does CAID meet every threshold, and how close?

For ``m`` in ``{2, 3}`` and seeded instances (``random_problem`` with binding constraints, a
log-linear class on noisy features, so ``nu > 0``), three methods are run and their final
policy's constraint slacks ``E_rho E_pi h_i`` measured:

* CAID (practical start, exact dual steps ``eta_t = 1/sqrt(t+1)``, warm-started policy steps);
* one-shot (``lam`` from ``K`` reference samples per prompt, one full policy step);
* primal-dual (simultaneous gradient steps, linear multiplier), *tuned*: its dual step is
  picked from a small grid by the smallest final violation (ties: the larger objective).

"Meets every threshold" means ``max_i max(0, -slack_i) <= tol`` (``tol`` stated in the result).
Counts: per instance, ``holds`` when CAID meets every threshold, ``failed`` when not.
"""

from __future__ import annotations

from dataclasses import dataclass

from .result import ClaimResult, mean_ci

__all__ = ["MultiConfig", "multi_constraint"]


@dataclass(frozen=True)
class MultiConfig:
    """Sizes (``quick()``: the suite's reduced size)."""

    prompts: int = 12
    responses: int = 16
    beta: float = 0.1
    noise: float = 0.5
    constraints: tuple[int, ...] = (2, 3)
    seeds: int = 10
    iterations: int = 150
    inner_steps: int = 10
    one_shot_samples: int = 64
    pd_iterations: int = 2000
    pd_steps: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
    tol: float = 1e-3

    @classmethod
    def quick(cls) -> MultiConfig:
        return cls(prompts=8, responses=10, seeds=3, iterations=60, inner_steps=5,
                   pd_iterations=400, pd_steps=(0.1, 1.0))


def multi_constraint(cfg: MultiConfig | None = None, *, progress: bool = False) -> ClaimResult:
    """Run the comparison (module docstring).  ``details["runs"]`` lists, per instance, each
    method's slacks, max violation and objective, ``nu`` of the class at ``pi*`` (an upper
    estimate from one fit) and the primal-dual step picked; ``details["summary"]`` the 95%
    intervals of each method's max violation per ``m``."""
    import dualgap.algorithms as A

    from ..instances import random_problem
    from ..policies import LogLinearPolicy, problem_features
    from ..solver import solve
    from ..theory import smoothness_bound

    cfg = cfg or MultiConfig()
    res = ClaimResult("Multi-constraint", f"m in {list(cfg.constraints)}, nu > 0: CAID meets "
                      f"every threshold (violation <= {cfg.tol:g}); vs one-shot, tuned "
                      "primal-dual", len(cfg.constraints) * cfg.seeds,
                      notebook="10-multi-constraint.ipynb")
    runs = []
    cells = [(m, s) for m in cfg.constraints for s in range(cfg.seeds)]
    it = cells
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(cells, total=len(cells), desc="multi-constraint")
    for m, seed in it:
        p = random_problem(seed, cfg.prompts, cfg.responses, m, beta=cfg.beta, tightness=0.8)
        pc = LogLinearPolicy(p, problem_features(p, noise=cfg.noise, seed=seed))
        sol = solve(p)
        nu = float(pc.fit(sol.policy).nu)
        L = smoothness_bound(p)
        out = {"m": m, "seed": seed, "nu": nu}
        ca = A.caid(p, pc, iterations=cfg.iterations, step_rule="sqrt", step_size=1.0,
                    inner_steps=cfg.inner_steps, one_shot_samples=cfg.one_shot_samples,
                    seed=seed)
        os_ = A.one_shot(p, pc, samples=cfg.one_shot_samples, seed=seed)
        best = None
        for frac in cfg.pd_steps:
            tr = A.primal_dual(p, pc, iterations=cfg.pd_iterations, primal_lr=0.5,
                               dual_step=frac / L, record_every=max(1, cfg.pd_iterations // 50),
                               seed=seed)
            key = (float(tr.violation[-1]), -float(tr.objective[-1]))
            if best is None or key < best[0]:
                best = (key, frac, tr)
        for name, tr in (("CAID", ca), ("one-shot", os_), ("primal-dual (tuned)", best[2])):
            out[name] = {"slack": tr.slack[-1].tolist(), "violation": float(tr.violation[-1]),
                         "objective": float(tr.objective[-1])}
        out["primal-dual step (x 1/L_D)"] = best[1]
        out["P*"] = float(sol.primal_value)
        runs.append(out)
        res.add("holds" if out["CAID"]["violation"] <= cfg.tol else "failed")
    summary = {}
    for m in cfg.constraints:
        rs = [r for r in runs if r["m"] == m]
        summary[m] = {name: {"max violation (mean, 95% CI)": mean_ci([r[name]["violation"]
                                                                       for r in rs]),
                             "meets every threshold": sum(r[name]["violation"] <= cfg.tol
                                                          for r in rs),
                             "of": len(rs)}
                      for name in ("CAID", "one-shot", "primal-dual (tuned)")}
    res.details = {"runs": runs, "summary": summary, "tol": cfg.tol,
                   "nu range": [min(r["nu"] for r in runs), max(r["nu"] for r in runs)]}
    return res

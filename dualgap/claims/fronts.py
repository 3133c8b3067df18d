"""Fig 1a and Fig 1b of the paper, re-run over seeds with 95% confidence intervals.

Fig 1a (threshold tracking): for thresholds ``b`` (a safety improvement over ``pi_ref``) on a
class with ``nu > 0``, the threshold error ``E_pi g - E_ref g - b`` (the constraint slack) of

* one-shot with ``K`` reference samples per prompt (:func:`dualgap.algorithms.one_shot`),
* CAID with exact dual steps, and CAID with dual steps sampled from ``N = K`` on-policy
  samples per prompt (:func:`dualgap.algorithms.caid`, practical start from the one-shot
  ``lam`` with the same ``K``; the last iterate).

The paper's pattern: one-shot is *short for small b, over for large b*; per seed it appears
when the error is negative at the smallest ``b`` and positive at the largest.

Fig 1b (fronts): helpfulness ``E_pi r - E_ref r`` against safety ``E_pi g - E_ref g`` of
CAID and one-shot across thresholds, with a finite policy-step budget (``inner_steps``) on
log-linear and MLP classes.  One-shot's front is traced on a wider, denser grid of thresholds
(0%..80% of the largest gain).  At each threshold, CAID's helpfulness is compared with one-shot's
front interpolated at CAID's safety (per seed; no extrapolation): the 95% interval of the
difference says whether CAID's front lies above (``holds``), below (``failed``) or neither
(``undecided``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .result import ClaimResult, mean_ci

__all__ = ["FrontsConfig", "front_instance", "fig1a", "fig1b"]


@dataclass(frozen=True)
class FrontsConfig:
    """Sizes of the Fig 1 experiments (``quick()``: the suite's reduced size)."""

    prompts: int = 30
    responses: int = 40
    beta: float = 0.1
    noise: float = 0.3
    seeds: int = 10
    thresholds: int = 6
    samples: tuple[int, ...] = (16, 64, 256)
    iterations: int = 100
    inner_steps: int = 10
    front_inner_steps: int = 3

    @classmethod
    def quick(cls) -> FrontsConfig:
        return cls(prompts=10, responses=12, seeds=3, thresholds=4, iterations=40,
                   inner_steps=5)


def front_instance(seed: int, cfg: FrontsConfig):
    """``(base problem, thresholds b, largest attainable gain)``: one constraint in tension with
    the reward (the notebook-04 instance family), ``b`` over 5%..60% of the largest gain."""
    from ..instances import random_problem

    base = random_problem(seed, cfg.prompts, cfg.responses, 1, beta=cfg.beta, tightness=0.5,
                          correlation=-0.6)
    best = np.where(base.support, base.utilities[0], -np.inf).max(1)
    max_gain = float(base.prompt_weights @ best - base.reference_utilities[0])
    return base, np.linspace(0.05, 0.6, cfg.thresholds) * max_gain, max_gain


def _classes(problem, kind: str, cfg: FrontsConfig, seed: int):
    from ..policies import LogLinearPolicy, MLPPolicy, problem_features

    phi = problem_features(problem, noise=cfg.noise, seed=seed + 1)
    return LogLinearPolicy(problem, phi) if kind == "loglinear" else MLPPolicy(
        problem, phi, hidden=8, seed=seed)


def _pattern(err: np.ndarray) -> bool:
    """short for small b, over for large b: error < 0 at the smallest b and > 0 at the largest."""
    return bool(err[0] < 0 < err[-1])


def fig1a(cfg: FrontsConfig | None = None, *, progress: bool = False) -> ClaimResult:
    """Fig 1a over ``cfg.seeds`` seeds and ``K`` in ``cfg.samples`` (module docstring).

    ``details["errors"][method][K]`` is a ``(seeds, thresholds)`` list of threshold errors;
    ``details["ci"]`` their 95% intervals per threshold; ``details["pattern"][K]`` the seeds
    showing the pattern.  Counts: per ``K`` and seed, ``holds`` when one-shot shows the
    pattern, ``failed`` when it does not.  A seed whose ``K`` samples cannot meet some ``b``
    (no one-shot ``lam``) is listed in ``details["infeasible one-shot samples"]``, not counted.
    """
    import dualgap.algorithms as A

    cfg = cfg or FrontsConfig()
    methods = ["one-shot", "CAID exact dual steps", "CAID sampled dual steps"]
    err = {m: {K: [] for K in cfg.samples} for m in methods}
    from ..feasibility import InfeasibleError

    bs, infeasible = [], []
    seeds = range(cfg.seeds)
    it = seeds
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(seeds, total=cfg.seeds, desc="Fig 1a seeds")
    for seed in it:
        base, b, _ = front_instance(seed, cfg)
        bs.append(b.tolist())
        for K in cfg.samples:
            rows = {m: [] for m in methods}
            try:
                for bi in b:
                    p = base.replace(thresholds=[bi])
                    pc = _classes(p, "loglinear", cfg, seed)
                    rows["one-shot"].append(A.one_shot(p, pc, samples=K, seed=seed).slack[0, 0])
                    for m, n in (("CAID exact dual steps", None), ("CAID sampled dual steps", K)):
                        tr = A.caid(p, pc, iterations=cfg.iterations, step_rule="sqrt",
                                    step_size=1.0, inner_steps=cfg.inner_steps, samples=n,
                                    one_shot_samples=K, seed=seed)
                        rows[m].append(tr.slack[-1, 0])
            except InfeasibleError:  # the K samples cannot meet some b: no one-shot lam
                infeasible.append({"seed": seed, "K": K})
                continue
            for m in methods:
                err[m][K].append(rows[m])
    res = ClaimResult("Fig 1a", "one-shot short for small b, over for large b (per seed, "
                      "per K); CAID's threshold error with 95% CIs",
                      cfg.seeds * len(cfg.samples) - len(infeasible),
                      notebook="08-fronts-and-seeds.ipynb")
    pattern, ci = {}, {}
    for K in cfg.samples:
        e = np.asarray(err["one-shot"][K])  # size = (seeds, thresholds)
        hits = [bool(_pattern(row)) for row in e]
        pattern[K] = hits
        res.add("holds", sum(hits))
        res.add("failed", len(hits) - sum(hits))
        for m in methods:
            cols = np.asarray(err[m][K]).reshape(-1, len(bs[0])).T
            ci.setdefault(m, {})[K] = [mean_ci(col) if col.size else None for col in cols]
    res.details = {"thresholds": bs, "errors": {m: {K: np.asarray(v).tolist() for K, v in d.items()}
                                                for m, d in err.items()},
                   "ci": ci, "pattern": pattern, "infeasible one-shot samples": infeasible,
                   "pattern counts": {K: f"{sum(v)}/{len(v)}" for K, v in pattern.items()}}
    return res


def _help_safety(problem, policy) -> tuple[float, float]:
    w = problem.prompt_weights[:, None]
    gain_r = float((w * (policy - problem.reference) * problem.reward).sum())
    gain_g = float((w * (policy - problem.reference) * problem.utilities[0]).sum())
    return gain_r, gain_g


def fig1b(cfg: FrontsConfig | None = None, *, classes: tuple[str, ...] = ("loglinear", "mlp"),
          samples: int = 64, progress: bool = False) -> ClaimResult:
    """Fig 1b: CAID's front against one-shot's, per class and threshold (module docstring).

    Both methods use ``cfg.front_inner_steps`` policy-step iterations (a finite fitting
    budget); one-shot's ``lam`` from ``samples`` reference samples per prompt, CAID's practical
    start from the same ``lam`` with exact dual steps.  ``details["fronts"][cls][method]`` is a
    per-seed list of (safety, helpfulness) gains (CAID: one per threshold; one-shot: one per
    point of its wider grid whose sampled instance is feasible, the others listed as skipped).
    """
    import dualgap.algorithms as A

    cfg = cfg or FrontsConfig()
    for c in classes:
        if c not in ("loglinear", "mlp"):
            raise ValueError(f"classes: each must be 'loglinear' or 'mlp', got {c!r}")
    res = ClaimResult("Fig 1b", "CAID's helpfulness-safety front above one-shot's (95% CI of "
                      "the helpfulness difference at CAID's safety, per class and b)",
                      cfg.seeds, notebook="08-fronts-and-seeds.ipynb")
    from ..feasibility import InfeasibleError

    fronts: dict = {}
    verdicts: dict = {}
    skipped: list = []
    total = len(classes) * cfg.seeds
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="Fig 1b")
    for cls in classes:
        pts = {"CAID": [], "one-shot": []}
        for seed in range(cfg.seeds):
            base, b, gain = front_instance(seed, cfg)
            row = {"CAID": [], "one-shot": []}
            # one-shot's front on a wider, denser grid of b, so CAID's points fall inside it
            for bi in np.linspace(0.0, 0.8, 2 * cfg.thresholds + 1) * gain:
                p = base.replace(thresholds=[bi])
                try:
                    os_ = A.one_shot(p, _classes(p, cls, cfg, seed), samples=samples,
                                     seed=seed, inner_steps=cfg.front_inner_steps)
                except InfeasibleError:  # b out of the samples' reach: the front ends here
                    skipped.append({"class": cls, "seed": seed, "b": float(bi)})
                    continue
                row["one-shot"].append(_help_safety(p, os_.policy)[::-1])
            for bi in b:
                p = base.replace(thresholds=[bi])
                pc = _classes(p, cls, cfg, seed)
                try:
                    ca = A.caid(p, pc, iterations=cfg.iterations, step_rule="sqrt",
                                step_size=1.0, inner_steps=cfg.front_inner_steps,
                                one_shot_samples=samples, seed=seed)
                except InfeasibleError:  # no one-shot start: the point is missing (listed)
                    skipped.append({"class": cls, "seed": seed, "b": float(bi), "CAID": True})
                    row["CAID"].append((np.nan, np.nan))
                    continue
                row["CAID"].append(_help_safety(p, ca.policy)[::-1])
            for k in pts:
                pts[k].append(row[k])
            if bar is not None:
                bar.update(1)
        ca = np.asarray(pts["CAID"])  # size = (seeds, thresholds, 2)
        diffs = np.full(ca.shape[:2], np.nan)
        for s in range(cfg.seeds):
            front = np.asarray(pts["one-shot"][s]).reshape(-1, 2)  # size = (points, 2)
            if len(front) < 2:
                continue
            order = np.argsort(front[:, 0])
            xs, ys = front[order, 0], front[order, 1]
            inside = (ca[s, :, 0] >= xs[0]) & (ca[s, :, 0] <= xs[-1])
            diffs[s, inside] = ca[s, inside, 1] - np.interp(ca[s, inside, 0], xs, ys)
        per_b = []
        for j in range(ca.shape[1]):
            d = diffs[:, j][np.isfinite(diffs[:, j])]
            if d.size < 2:
                per_b.append({"verdict": "no overlap", "n": int(d.size)})
                res.add("undecided")
                continue
            mean, lo, hi = mean_ci(d)
            v = "above" if lo > 0 else "below" if hi < 0 else "CI contains 0"
            res.add({"above": "holds", "below": "failed"}.get(v, "undecided"))
            per_b.append({"verdict": v, "mean": mean, "ci": [lo, hi], "n": int(d.size)})
        fronts[cls] = {"CAID": ca.tolist(), "one-shot": pts["one-shot"]}
        verdicts[cls] = per_b
    if bar is not None:
        bar.close()
    res.details = {"fronts": fronts, "verdicts": verdicts, "samples": samples,
                   "one-shot points skipped (b out of the samples' reach)": skipped,
                   "inner_steps": cfg.front_inner_steps}
    return res

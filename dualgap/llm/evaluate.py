"""Evaluation of a finished run on the test split (docs/llm.md).

For each test prompt ``x`` (``n`` of them), ``S`` samples (paper: 2) from the final iterate and
from ``pi_ref``, scored by the reward and every utility.  Per prompt,
``d_x = (1/S) sum_s s(pi, x, s) - (1/S) sum_s s(ref, x, s)``; the improvement is ``mean_x d_x``
with the 95% confidence interval ``mean +- t_{0.975, n-1} sd(d) / sqrt(n)``.  A run satisfies
constraint ``i`` iff its improvement is ``>= b_i`` (``met``); ``met_with_confidence`` asks the
same of the lower end of the interval.

Where the test split has PKU-SafeRLHF's harm categories, the same improvement (and interval) of
every constraint is reported on the test prompts of each category (a prompt belongs to a
category when either response of one of its pairs is flagged with it), in
``summary["by_harm_category"]``.

Win rate of run A against run B (model-based, per score): the same test prompts, sample ``s``
of A against sample ``s`` of B, ``w = 1`` if A scores higher, ``1/2`` on a tie, ``0`` otherwise;
the per-prompt mean of ``w`` gets the same interval.

Outputs, in ``DIR/eval/``: ``summary.json``, ``histograms.png``, ``lam_trajectory.png``,
``improvement_vs_threshold.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["mean_ci", "win_rate", "evaluation_scores", "evaluate", "format_summary",
           "by_harm_category"]


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: Student-t interval of the mean of i.i.d. ``values`` (1-D)."""
    from scipy.special import stdtrit  # scipy.stats.t.ppf(q, df) is stdtrit(df, q): same bits,
    # without importing scipy.stats (about 0.5 s of a `dualgap llm evaluate`)

    x = np.asarray(values, dtype=np.float64).reshape(-1)
    n = x.shape[0]
    if n == 0:
        raise ValueError("values: empty")
    mean = float(x.mean())
    if n == 1:
        return mean, -np.inf, np.inf
    half = float(stdtrit(n - 1, 0.5 + level / 2) * x.std(ddof=1) / np.sqrt(n))
    return mean, mean - half, mean + half


def win_rate(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Win rate of scores ``a`` over ``b`` (both ``(n, S)``, matched), ties 1/2, with its CI."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"scores: shapes {a.shape} and {b.shape} must be equal (n, S)")
    w = (a > b) + 0.5 * (a == b)  # size = (n, S)
    return mean_ci(w.mean(axis=1))


def _test_pairs(run: Any):
    from .data import load_pairs

    d = run.config.data
    return load_pairs(d.source, d.test_split, name=d.name, revision=d.revision,
                      test_path=d.test_path, fmt=d.format, drop_invalid=d.drop_invalid)


def _test_prompts(run: Any, pairs: Any = None) -> list[str]:
    cfg = run.config
    prompts = (pairs or _test_pairs(run)).unique_prompts()
    n = cfg.evaluation.num_prompts or cfg.data.max_test_prompts
    return prompts[:n] if n else prompts


def by_harm_category(prompts: list[str], categories: dict[str, list[str]], ref: np.ndarray,
                     pol: np.ndarray, names: list[str]) -> dict[str, dict]:
    """``{category: {"num_prompts": n, name: {"improvement", "ci95"}}}`` for every harm
    category of the test prompts and every score in ``names`` (indices ``1..`` of the score
    arrays ``(1 + m, n, S)``); an interval needs two prompts (``None`` otherwise)."""
    out: dict[str, dict] = {}
    cats = sorted({c for p in prompts for c in categories.get(p, [])})
    for cat in cats:
        idx = np.array([i for i, p in enumerate(prompts) if cat in categories.get(p, [])])
        entry: dict[str, Any] = {"num_prompts": int(idx.shape[0])}
        for i, name in enumerate(names, start=1):
            d = pol[i][idx].mean(axis=1) - ref[i][idx].mean(axis=1)  # size = (n_c,)
            mean, lo, hi = mean_ci(d)
            entry[name] = {"improvement": mean,
                           "ci95": [lo, hi] if np.isfinite([lo, hi]).all() else None}
        out[cat] = entry
    return out


def evaluation_scores(directory: str | Path, progress: bool = True, configured: bool = False
                      ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(prompts, reference scores, policy scores)``, scores of shape ``(1 + m, n, S)``;
    generated and scored once (kept in the run directory).

    In a PeCAID run the scores are the implicit rewards the run trained with; ``configured``
    scores the same samples with the config's scorers instead (stages ``eval_*_models``), the
    units a model-based run is evaluated in.  Elsewhere ``configured`` changes nothing."""
    from .rundir import Run, load_run_config

    directory = Path(directory)
    run = Run(directory, load_run_config(directory)[0], progress, configured_scorers=configured)
    run.load_state()
    if not run.done("complete"):
        raise ValueError(f"directory: the run in {str(directory)!r} is not finished "
                         "(resume it first)")
    from .config import PECAID_METHODS

    models = configured and run.config.method in PECAID_METHODS
    if models:  # the samples of the implicit evaluation, scored by the config's scorers
        evaluation_scores(directory, progress)
    prompts = _test_prompts(run)
    S = run.config.evaluation.samples_per_prompt
    out = []
    for stage, t in (("eval_reference", -1), ("eval_policy", run.config.iterations - 1)):
        name = f"{stage}_models" if models else stage
        path = directory / "scores" / f"{name}.npz"
        scores = None
        if path.exists():
            arr = run.load_arrays(name)
            scores = np.concatenate([arr["reward"][None], arr["utilities"]])
            if scores.shape[1:] != (len(prompts), S):  # evaluation.* changed since: redo
                scores = None
        if scores is None and models:
            samples = json.loads((directory / "samples" / f"{stage}.json").read_text())
            flat_p = [p for p, ys in zip(samples["prompts"], samples["samples"], strict=True)
                      for _ in ys]
            flat_y = [y for ys in samples["samples"] for y in ys]
            scores = run.score(flat_p, flat_y).reshape(-1, len(prompts), S)
            run.save_arrays(name, reward=scores[0], utilities=scores[1:])
        elif scores is None:
            _, scores = run.sample_and_score(stage, t, prompts, "eval", {}, num_samples=S)
        out.append(scores)
    return prompts, out[0], out[1]


def evaluate(directory: str | Path, against: list[str | Path] | None = None,
             figures: bool = True, progress: bool = True) -> dict:
    """Improvements with 95% CIs, thresholds met, win rates against ``against`` runs, figures;
    the summary is also written to ``DIR/eval/summary.json``."""
    from .config import PECAID_METHODS
    from .distributed import is_main
    from .rundir import load_run_config, read_jsonl

    directory = Path(directory)
    cfg = load_run_config(directory)[0]
    names = [cfg.reward.name] + [c.scorer.name for c in cfg.constraints]
    thresholds = [None] + cfg.pecaid.training_thresholds(cfg)  # PeCAID: implicit units
    prompts, ref, pol = evaluation_scores(directory, progress)
    from .rundir import Run

    categories = _test_pairs(Run(directory, cfg)).harm_categories()
    summary: dict[str, Any] = {"run": str(directory), "method": cfg.method,
                               "num_prompts": len(prompts),
                               "samples_per_prompt": int(ref.shape[2]), "scores": {}}
    for i, name in enumerate(names):
        d = pol[i].mean(axis=1) - ref[i].mean(axis=1)  # size = (n,)
        mean, lo, hi = mean_ci(d)
        entry: dict[str, Any] = {"reference_mean": float(ref[i].mean()),
                                 "policy_mean": float(pol[i].mean()),
                                 "improvement": mean, "ci95": [lo, hi]}
        if thresholds[i] is not None:
            entry.update(threshold=thresholds[i], met=bool(mean >= thresholds[i]),
                         met_with_confidence=bool(lo >= thresholds[i]))
        summary["scores"][name] = entry
    if categories and len(names) > 1:
        summary["by_harm_category"] = by_harm_category(prompts, categories, ref, pol, names[1:])
    win_pol = pol
    if cfg.method in PECAID_METHODS:  # the same samples in the score models' units
        _, m_ref, win_pol = evaluation_scores(directory, progress, configured=True)
        summary["scores_are"] = ("implicit rewards beta log(pi_name / pi_ref) of the "
                                 "pre-aligned models (relative to pi_ref: per-prompt constants "
                                 "cancel); score_models: the config's scorers")
        summary["score_models"] = {}
        for i, name in enumerate(names):
            mean, lo, hi = mean_ci(win_pol[i].mean(axis=1) - m_ref[i].mean(axis=1))
            entry = {"reference_mean": float(m_ref[i].mean()),
                     "policy_mean": float(win_pol[i].mean()), "improvement": mean,
                     "ci95": [lo, hi]}
            if i > 0:  # constraints.N.threshold: the score models' units
                b = cfg.constraints[i - 1].threshold
                entry.update(threshold=b, met=bool(mean >= b), met_with_confidence=bool(lo >= b))
            summary["score_models"][name] = entry
    summary["win_rates"] = {}
    others = []
    for other in against or []:
        other = Path(other)
        o_prompts, _, o_pol = evaluation_scores(other, progress, configured=True)
        if o_prompts != prompts or o_pol.shape != pol.shape:
            raise ValueError(f"against: {str(other)!r} was evaluated on other test prompts")
        o_cfg = load_run_config(other)[0]
        o_names = [o_cfg.reward.name] + [c.scorer.name for c in o_cfg.constraints]
        rates = {}
        for i, name in enumerate(names):
            if name in o_names:
                w, lo, hi = win_rate(win_pol[i], o_pol[o_names.index(name)])
                rates[name] = {"win_rate": w, "ci95": [lo, hi]}
        summary["win_rates"][str(other)] = rates
        if o_cfg.method in PECAID_METHODS:  # its constraint point: in its own (implicit) units
            _, _, o_pol = evaluation_scores(other, progress)
        others.append((other, o_cfg, o_pol, _))
    if is_main():
        out = directory / "eval"
        out.mkdir(exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        if figures:
            import matplotlib.pyplot as plt

            from .plots.runs import (
                plot_improvement_vs_threshold,
                plot_lam_trajectory,
                plot_score_histograms,
            )

            plt.close(plot_score_histograms(ref, pol, names, out / "histograms.png"))
            history = read_jsonl(directory / "lam_history.jsonl")
            if history:
                plt.close(plot_lam_trajectory(history, names[1:], out / "lam_trajectory.png"))
            if len(names) > 1:
                points = [_point(directory.name, cfg, ref, pol)]
                for other, o_cfg, o_pol, _ in others:
                    _, o_ref, _ = evaluation_scores(other, progress)
                    if o_cfg.constraints:
                        points.append(_point(other.name, o_cfg, o_ref, o_pol))
                plt.close(plot_improvement_vs_threshold(points, names[1],
                                                        out / "improvement_vs_threshold.png"))
    return summary


def _point(label: str, cfg: Any, ref: np.ndarray, pol: np.ndarray) -> dict:
    d = pol[1].mean(axis=1) - ref[1].mean(axis=1)
    mean, lo, hi = mean_ci(d)
    return {"label": f"{label} ({cfg.method})",
            "threshold": cfg.pecaid.training_thresholds(cfg)[0],
            "improvement": mean, "ci": (lo, hi)}


def format_summary(summary: dict) -> str:
    """A plain-text table of :func:`evaluate`'s summary."""
    lines = [f"{summary['run']} ({summary['method']}): {summary['num_prompts']} test prompts x "
             f"{summary['samples_per_prompt']} samples"]
    lines.append(f"{'score':<16}{'ref mean':>10}{'policy':>10}{'improvement':>13}  95% CI"
                 f"{'':<14}threshold")
    for name, e in summary["scores"].items():
        lo, hi = e["ci95"]
        thr = ""
        if "threshold" in e:
            thr = f"b = {e['threshold']:g}: {'met' if e['met'] else 'NOT met'}" + (
                " (CI above b)" if e["met_with_confidence"] else "")
        lines.append(f"{name:<16}{e['reference_mean']:>10.4g}{e['policy_mean']:>10.4g}"
                     f"{e['improvement']:>13.4g}  [{lo:.4g}, {hi:.4g}]  {thr}")
    if summary.get("scores_are"):
        lines.append(f"(scores above: {summary['scores_are']})")
    for name, e in summary.get("score_models", {}).items():
        lo, hi = e["ci95"]
        thr = "" if "threshold" not in e else f"  b = {e['threshold']:g}: " + (
            "met" if e["met"] else "NOT met")
        lines.append(f"{name + ' (model)':<16}{e['reference_mean']:>10.4g}"
                     f"{e['policy_mean']:>10.4g}{e['improvement']:>13.4g}  [{lo:.4g}, {hi:.4g}]"
                     f"{thr}")
    if summary.get("by_harm_category"):
        lines.append("improvement by harm category of the test prompts:")
    for cat, entry in summary.get("by_harm_category", {}).items():
        parts = []
        for name, e in entry.items():
            if name == "num_prompts":
                continue
            ci = "" if e["ci95"] is None else f" [{e['ci95'][0]:.3g}, {e['ci95'][1]:.3g}]"
            parts.append(f"{name} {e['improvement']:+.3g}{ci}")
        lines.append(f"  {cat} ({entry['num_prompts']} prompts): {'; '.join(parts)}")
    for other, rates in summary["win_rates"].items():
        for name, r in rates.items():
            lines.append(f"win rate vs {other} ({name}): {r['win_rate']:.3f} "
                         f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]")
    return "\n".join(lines)

"""The few lines ``dualgap llm train`` / ``resume`` print at the end of a run, in the user's terms.

For CAID and one-shot runs, each constraint ``E_pi g_i - E_ref g_i >= b_i`` is judged on the
training run's own measurement of the final iterate (stage ``final`` of ``lam_history.jsonl``:
``K`` samples on the ``N`` dual prompts), with the margin ``E_pi g_i - E_ref g_i - b_i``::

    safety: improvement 0.23 over pi_ref, required >= 0.1: met (by 0.13)

In PeCAID runs (``pecaid``, ``pe-one-shot``) the utilities are the implicit ones,
``g_hat_i = beta log pi_gi / pi_ref`` of the pre-aligned models, and the improvement over
``pi_ref`` is ``E_pi g_hat_i + beta KL(pi_ref || pi_gi)`` (``E_ref g_hat_i = -beta KL``): the
true utility's improvement where ``pi_gi`` is the DPO optimum of its labels, in the units of the
implicit reward (those of ``pecaid.thresholds``), not of any score model.

The test-split verdict with confidence intervals is ``dualgap llm evaluate DIR``'s.
"""

from __future__ import annotations

from pathlib import Path

from .config import PECAID_METHODS, RunConfig
from .rundir import read_jsonl

__all__ = ["run_summary"]


def run_summary(directory: str | Path, config: RunConfig) -> str:
    """Whether each constraint was met and by how much, the multipliers, and where the files
    are (plain text)."""
    directory = Path(directory)
    cfg = config
    lines = [f"run finished: {directory} ({cfg.method}, {cfg.iterations} policy step(s))"]
    history = read_jsonl(directory / "lam_history.jsonl")
    final = [r for r in history if r["stage"] == "final"]
    if final:
        rec = final[-1]
        if cfg.method in PECAID_METHODS:
            lines.append("  constraint values are implicit utilities beta log(pi_g / pi_ref) of "
                         "the pre-aligned models, relative to pi_ref (E_ref g_hat = -beta "
                         "KL(pi_ref || pi_g)); not score-model units")
        names = [c.scorer.name for c in cfg.constraints]
        for i, name in enumerate(names):
            gain = rec["E_pi_g"][i] - rec["E_ref_g"][i]
            b, margin = rec["thresholds"][i], rec["slack"][i]
            verdict = f"met (by {margin:.4g})" if margin >= 0 else f"NOT met (short by " \
                                                                   f"{-margin:.4g})"
            kind = "implicit " if cfg.method in PECAID_METHODS else ""
            lines.append(f"  {kind}{name}: improvement {gain:.4g} over pi_ref, required >= "
                         f"{b:.4g}: {verdict}")
        lams = ["[" + ", ".join(f"{v:.4g}" for v in r["lam"]) + "]" for r in history
                if r["stage"].startswith("dual_")]
        lines.append(f"  measured on {cfg.dual.num_prompts} training prompts x "
                     f"{cfg.dual.samples_per_prompt} samples of the final policy")
        lines.append(f"  lam by policy step: {' -> '.join(lams)}")
    elif cfg.constraints:
        lines.append("  constraints not measured during training (method "
                     f"{cfg.method}): see `dualgap llm evaluate`")
    last = directory / "checkpoints" / f"iter_{cfg.iterations - 1}"
    lines.append(f"  final policy: {last}")
    files = [n for n in ("lam_history.jsonl", "metrics.jsonl", "run.log")
             if (directory / n).exists()]
    lines.append(f"  records: {', '.join(files)} in {directory}")
    lines.append(f"  next: dualgap llm evaluate {directory}  (test split, 95% CIs, figures)")
    return "\n".join(lines)

"""Figures of LLM runs: score histograms before/after, the ``lam`` trajectory, and the achieved
improvement against the threshold across runs.  Numpy and matplotlib only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...plots.figure import finish as _finish
from ...plots.figure import pyplot as _plt

__all__ = ["plot_score_histograms", "plot_lam_trajectory", "plot_improvement_vs_threshold"]


def plot_score_histograms(reference: np.ndarray, policy: np.ndarray, names: Sequence[str],
                          path: str | Path | None = None, labels: tuple[str, str] = (
                              "π_ref", "trained policy")):
    """One panel per score (``reference``/``policy`` of shape ``(1 + m, ...)``): histograms of
    the reference's and the trained policy's samples, with their means (dashed, same colour)."""
    plt = _plt(path)
    n = len(names)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.9), squeeze=False)
    for i, (ax, name) in enumerate(zip(axes[0], names, strict=True)):
        a, b = np.ravel(reference[i]), np.ravel(policy[i])
        lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
        bins = np.linspace(lo - 0.5, hi + 0.5, min(40, max(8, int(hi - lo) + 2)))
        ax.hist(a, bins=bins, alpha=0.55, color="C0", label=f"{labels[0]} samples")
        ax.hist(b, bins=bins, alpha=0.55, color="C1", label=f"{labels[1]} samples")
        ax.axvline(a.mean(), color="C0", ls="--", label=f"{labels[0]} mean {a.mean():.3g}")
        ax.axvline(b.mean(), color="C1", ls="--", label=f"{labels[1]} mean {b.mean():.3g}")
        ax.set_title(f"{name}: {a.size} vs {b.size} samples", fontsize=10)
        ax.set_xlabel(f"{name} score  [score-model units]")
        ax.set_ylabel("number of samples")
        ax.legend(fontsize=7)
    fig.suptitle(f"score distributions of {labels[0]} and {labels[1]}", fontsize=11)
    return _finish(fig, path)


def plot_lam_trajectory(history: Sequence[dict], names: Sequence[str],
                        path: str | Path | None = None):
    """``lam_t`` per policy step and the measured slack ``E_pi g - E_ref g - b`` of each iterate
    (records of ``lam_history.jsonl``); constraint ``i`` has the same colour in both panels,
    steps are integers.  An LLM run does not know ``lam*``: no reference line is drawn for it."""
    from dualgap.plots.figure import add_note, integer_ticks

    plt = _plt(path)
    steps = [r for r in history if r["stage"] != "final"]
    fig, (ax_l, ax_s) = plt.subplots(1, 2, figsize=(10, 3.9))
    lam = np.array([r["lam"] for r in steps], dtype=float).reshape(len(steps), -1)
    for i, name in enumerate(names):
        ax_l.plot(range(len(steps)), lam[:, i], "o-", color=f"C{i}", label=f"λ_t ({name})")
    ax_l.set_xlabel("policy step t")
    ax_l.set_ylabel("λ_t  [reward per unit of utility]")
    ax_l.set_title("multiplier before each policy step")
    ax_l.legend(fontsize=8)
    # dual_0 of a literal start has E_pi g = E_ref g by definition (no samples): not a measurement
    measured = [r for r in history if "E_pi_g" in r and r["stage"] != "dual_0"]
    if measured:
        xs = [r["iteration"] - 1 for r in measured]
        sl = np.array([r["slack"] for r in measured], dtype=float).reshape(len(measured), -1)
        for i, name in enumerate(names):
            ax_s.plot(xs, sl[:, i], "s-", color=f"C{i}", label=f"slack ({name})")
    else:
        add_note(ax_s, ["no measured iterate yet (the run stopped before its first dual step)"])
    ax_s.axhline(0.0, color="k", lw=0.8, label="slack = 0 (≥ 0: met)")
    ax_s.set_xlabel("iterate θ_t")
    ax_s.set_ylabel("E g − E_ref g − b  [utility units]")
    ax_s.set_title("constraint slack of each iterate (dual prompts)")
    ax_s.legend(fontsize=8)
    for ax in (ax_l, ax_s):
        integer_ticks(ax)
        ax.grid(alpha=0.3)
    fig.suptitle(f"CAID run: multipliers and constraint slacks over {len(steps)} policy steps "
                 f"({', '.join(names)})", fontsize=11)
    return _finish(fig, path)


def plot_improvement_vs_threshold(runs: Sequence[dict], name: str,
                                  path: str | Path | None = None):
    """Achieved improvement (with its 95% CI) against the threshold ``b``, one point per run
    (``runs``: dicts with ``label``, ``threshold``, ``improvement``, ``ci``); the diagonal is
    ``improvement = b``: points on or above it meet their constraint.  Runs that share a
    threshold are offset sideways (by 3% of the threshold range) so none hides another; a note
    says so."""
    from dualgap.plots.figure import add_note

    plt = _plt(path)
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    bs = [r["threshold"] for r in runs]
    span = np.array([min(bs + [0.0]), max(bs + [0.0])])
    width = max(1e-9, float(span[1] - span[0]))
    shared = {b: [k for k, r in enumerate(runs) if r["threshold"] == b] for b in bs}
    offset_any = False
    for k, r in enumerate(runs):
        lo, hi = r["ci"]
        same = shared[r["threshold"]]
        dx = 0.0
        if len(same) > 1:
            dx = 0.03 * (width if width > 1e-9 else 1.0) * (same.index(k) - (len(same) - 1) / 2)
            offset_any = True
        ax.errorbar([r["threshold"] + dx], [r["improvement"]],
                    yerr=[[r["improvement"] - lo], [hi - r["improvement"]]], fmt="o", capsize=4,
                    ms=6, color=f"C{k}", label=r["label"])
    pad = 0.2 * width + 0.5
    grid = np.linspace(span[0] - pad, span[1] + pad, 2)
    ax.plot(grid, grid, "k--", lw=1, label="improvement = b (met on or above)")
    ax.set_xlabel(f"threshold b ({name})  [score-model units]")
    ax.set_ylabel(f"improvement of E {name} over π_ref  [score-model units]")
    ax.set_title(f"achieved {name} improvement against its threshold ({len(runs)} runs, "
                 "95% CI)", fontsize=10)
    ax.legend(fontsize=8)
    if offset_any:
        add_note(ax, ["runs with the same threshold are offset sideways to stay visible"])
    return _finish(fig, path)

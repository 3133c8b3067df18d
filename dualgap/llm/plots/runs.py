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
    the reference's and the trained policy's samples, with their means."""
    plt = _plt(path)
    n = len(names)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.6), squeeze=False)
    for i, (ax, name) in enumerate(zip(axes[0], names, strict=True)):
        a, b = np.ravel(reference[i]), np.ravel(policy[i])
        lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
        bins = np.linspace(lo - 0.5, hi + 0.5, min(40, max(8, int(hi - lo) + 2)))
        ax.hist(a, bins=bins, alpha=0.55, label=f"{labels[0]} (mean {a.mean():.3g})")
        ax.hist(b, bins=bins, alpha=0.55, label=f"{labels[1]} (mean {b.mean():.3g})")
        ax.axvline(a.mean(), color="C0", ls="--")
        ax.axvline(b.mean(), color="C1", ls="--")
        ax.set_title(name)
        ax.set_xlabel("score")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("samples")
    return _finish(fig, path)


def plot_lam_trajectory(history: Sequence[dict], names: Sequence[str],
                        path: str | Path | None = None):
    """``lam_t`` per policy step and the measured slack ``E_pi g - E_ref g - b`` of each iterate
    (records of ``lam_history.jsonl``)."""
    plt = _plt(path)
    steps = [r for r in history if r["stage"] != "final"]
    fig, (ax_l, ax_s) = plt.subplots(1, 2, figsize=(10, 3.6))
    lam = np.array([r["lam"] for r in steps], dtype=float).reshape(len(steps), -1)
    for i, name in enumerate(names):
        ax_l.plot(range(len(steps)), lam[:, i], "o-", label=f"λ ({name})")
    ax_l.set_xlabel("policy step t")
    ax_l.set_ylabel("λ_t")
    ax_l.set_title("multiplier trajectory")
    ax_l.legend()
    # dual_0 of a literal start has E_pi g = E_ref g by definition (no samples): not a measurement
    measured = [r for r in history if "E_pi_g" in r and r["stage"] != "dual_0"]
    if measured:
        xs = [r["iteration"] - 1 for r in measured]
        sl = np.array([r["slack"] for r in measured], dtype=float).reshape(len(measured), -1)
        for i, name in enumerate(names):
            ax_s.plot(xs, sl[:, i], "s-", label=name)
    ax_s.axhline(0.0, color="k", lw=0.8)
    ax_s.set_xlabel("iterate θ_t")
    ax_s.set_ylabel("E g − E_ref g − b")
    ax_s.set_title("constraint slack of each iterate (dual prompts)")
    ax_s.legend()
    return _finish(fig, path)


def plot_improvement_vs_threshold(runs: Sequence[dict], name: str,
                                  path: str | Path | None = None):
    """Achieved improvement (with its 95% CI) against the threshold ``b``, one point per run
    (``runs``: dicts with ``label``, ``threshold``, ``improvement``, ``ci``); the diagonal is
    ``improvement = b``: points on or above it meet their constraint."""
    plt = _plt(path)
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    bs = [r["threshold"] for r in runs]
    for k, r in enumerate(runs):
        lo, hi = r["ci"]
        ax.errorbar([r["threshold"]], [r["improvement"]],
                    yerr=[[r["improvement"] - lo], [hi - r["improvement"]]], fmt="o", capsize=4,
                    color=f"C{k}", label=r["label"])
    span = np.array([min(bs + [0.0]), max(bs + [0.0])])
    pad = 0.2 * max(1e-9, float(span[1] - span[0])) + 0.5
    grid = np.linspace(span[0] - pad, span[1] + pad, 2)
    ax.plot(grid, grid, "k--", lw=1, label="improvement = b")
    ax.set_xlabel(f"threshold b ({name})")
    ax.set_ylabel(f"improvement of E {name} over π_ref")
    ax.set_title("achieved improvement vs threshold")
    ax.legend(fontsize=8)
    return _finish(fig, path)

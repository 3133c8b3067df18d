"""Algorithm trajectories: multipliers, slacks, objective and dual gap per iteration; the
threshold sweep (achieved constraint value against the threshold); the stochastic
best-iterate gap against its bound."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..algorithms.trajectory import Trajectory
from .figure import finish as _finish
from .figure import pyplot as _plt

__all__ = ["plot_trajectories", "plot_threshold_sweep", "plot_gap_vs_bound"]


def plot_trajectories(trajectories: Trajectory | Sequence[Trajectory],
                      labels: Sequence[str] | None = None, path: str | Path | None = None,
                      x: str = "iteration", log_x: bool = False):
    """Four panels per run, overlaid: ``lam_t`` (``lam*`` dotted), the slacks
    ``E_rho E_{pi_t} h`` (0 dotted), ``J(pi_t)`` (``P*`` dotted) and ``D(lam_t) - D*`` with the
    best-so-far ``min_{s<=t} D(lam_s) - D*`` (log scale; ``D(lam_t)`` itself when no exact
    answer is stored).  ``x`` is ``"iteration"`` (the record's iteration index) or ``"time"``.
    Saved to ``path`` if given; returns the Figure.
    """
    if isinstance(trajectories, Trajectory):
        trajectories = [trajectories]
    if labels is None:
        labels = [t.algorithm for t in trajectories]
    if len(labels) != len(trajectories):
        raise ValueError(f"labels: {len(labels)} labels for {len(trajectories)} trajectories")
    if x not in ("iteration", "time"):
        raise ValueError(f"x: must be 'iteration' or 'time', got {x!r}")
    plt = _plt(path)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.2))
    ax_l, ax_s, ax_j, ax_d = axes.ravel()
    exact_drawn = False
    styles = ["-", "--", "-.", ":"]
    for k, (tr, label) in enumerate(zip(trajectories, labels, strict=True)):
        every = int(tr.config.get("record_every", 1) or 1)
        idx = np.arange(tr.num_records) * every
        if tr.config.get("record_every") and tr.num_records > 1:  # last record = iteration T
            idx[-1] = int(tr.config.get("iterations", idx[-1]))
        xs = tr.time if x == "time" else idx
        color = f"C{k % 10}"
        m = tr.lam.shape[1]
        for i in range(m):
            ls = styles[i % len(styles)]
            ax_l.plot(xs, tr.lam[:, i], color=color, ls=ls, lw=1.2,
                      label=f"{label}: λ_{i + 1}" if m > 1 else label)
            ax_s.plot(xs, tr.slack[:, i], color=color, ls=ls, lw=1.2,
                      label=f"{label}: E h_{i + 1}" if m > 1 else label)
        ax_j.plot(xs, tr.objective, color=color, lw=1.2, label=label)
        if tr.exact:
            gap = tr.dual_value - float(tr.exact["dual_value"])
            best = np.minimum.accumulate(gap)
            ax_d.plot(xs, np.maximum(np.abs(gap), 1e-16), color=color, lw=1.0, alpha=0.6,
                      label=f"{label}: |D(λ_t) - D*|")
            ax_d.plot(xs, np.maximum(best, 1e-16), color=color, lw=1.6, ls="--",
                      label=f"{label}: best so far")
            ax_d.set_yscale("log")
            if not exact_drawn:
                for v in np.atleast_1d(tr.exact["lam"]):
                    ax_l.axhline(float(v), color="k", ls=":", lw=1)
                ax_j.axhline(float(tr.exact["primal_value"]), color="k", ls=":", lw=1,
                             label="P* (exact)")
                exact_drawn = True
        else:
            ax_d.plot(xs, tr.dual_value, color=color, lw=1.2, label=f"{label}: D(λ_t)")
    ax_s.axhline(0.0, color="k", ls=":", lw=1)
    xlabel = "seconds" if x == "time" else "iteration"
    for ax, title in ((ax_l, "multipliers λ_t (exact λ* dotted)"),
                      (ax_s, "constraint slack E h at π_t (≥ 0: met)"),
                      (ax_j, "objective J(π_t)"), (ax_d, "dual gap D(λ_t) − D*")):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        if log_x:
            ax.set_xscale("symlog" if x == "iteration" else "log")
        ax.legend(fontsize=7, loc="best")
    return _finish(fig, path)


def plot_threshold_sweep(thresholds: np.ndarray, achieved: Mapping[str, np.ndarray],
                         path: str | Path | None = None, ax=None,
                         ylabel: str = "achieved improvement E_π g − E_ref g"):
    """Achieved constraint value against the threshold ``b``, one line per method, with the
    diagonal ``achieved = b`` (the target: the exact optimum meets a binding constraint with
    equality)."""
    b = np.asarray(thresholds, dtype=float)
    plt = _plt(path)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.2, 4.6))
    else:
        fig = ax.figure
    lo, hi = float(b.min()), float(b.max())
    ax.plot([lo, hi], [lo, hi], color="k", ls=":", lw=1, label="achieved = b")
    markers = ["o", "s", "^", "D", "v"]
    for k, (label, vals) in enumerate(achieved.items()):
        v = np.asarray(vals, dtype=float)
        if v.shape != b.shape:
            raise ValueError(f"achieved[{label!r}]: shape {v.shape} does not match thresholds "
                             f"{b.shape}")
        ax.plot(b, v, marker=markers[k % len(markers)], ms=4, lw=1.2, label=label)
    ax.set_xlabel("threshold b")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_gap_vs_bound(bound: np.ndarray, gap: np.ndarray, groups: Sequence[str] | None = None,
                      path: str | Path | None = None, ax=None,
                      xlabel: str = "bound η S²/2 + ε_app", ylabel: str = "measured gap"):
    """Measured gaps against their bounds (log-log), with the line ``gap = bound``: every point
    must lie below it."""
    bound, gap = np.asarray(bound, float), np.asarray(gap, float)
    if bound.shape != gap.shape:
        raise ValueError(f"gap: shape {gap.shape} does not match bound {bound.shape}")
    plt = _plt(path)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.2, 4.6))
    else:
        fig = ax.figure
    groups = ["runs"] * bound.size if groups is None else list(groups)
    for k, g in enumerate(dict.fromkeys(groups)):
        sel = np.array([gg == g for gg in groups])
        ax.scatter(bound[sel], np.maximum(gap[sel], 1e-16), s=22, color=f"C{k % 10}", label=g)
    pos = bound[bound > 0]
    if pos.size:
        lo, hi = float(pos.min()) / 2, float(pos.max()) * 2
        ax.plot([lo, hi], [lo, hi], color="k", ls=":", lw=1, label="gap = bound")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return _finish(fig, path)

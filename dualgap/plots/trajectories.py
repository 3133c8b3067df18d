"""Algorithm trajectories: multipliers, slacks, objective and dual gap per iteration; the
threshold sweep (achieved constraint value against the threshold); the stochastic
best-iterate gap against its bound."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..algorithms.trajectory import Trajectory
from .figure import add_note
from .figure import finish as _finish
from .figure import pyplot as _plt

__all__ = ["plot_trajectories", "run_title", "plot_threshold_sweep", "plot_gap_vs_bound"]


def run_title(tr: Trajectory, algorithm: str, instance: str,
              names: Sequence[str] | None = None) -> str:
    """``"caid, tabular class, on the demo instance (harmlessness, privacy)"``: what a figure of
    one run shows, from its stored config."""
    cls = str(tr.config.get("policy_class") or "exact π_λ")
    cls = cls.split("(")[0].replace("Policy", " class").replace("LogLinear", "log-linear")
    cls = cls.replace("Tabular", "tabular").replace("MLP", "MLP")
    what = f"{algorithm}, {cls}, on {instance}"
    if names:
        what += f" ({', '.join(names)})"
    return what


def plot_trajectories(trajectories: Trajectory | Sequence[Trajectory],
                      labels: Sequence[str] | None = None, path: str | Path | None = None,
                      x: str = "iteration", log_x: bool = False, title: str | None = None):
    """Four panels per run, overlaid: ``lam_t`` (``lam*`` dotted, in the colour of its
    multiplier), the slacks ``E_rho E_{pi_t} h`` (0 dotted), ``J(pi_t)`` (``P*`` dotted) and
    ``|D(lam_t) - D*|`` with the best-so-far ``min_{s<=t} D(lam_s) - D*`` (log scale;
    ``D(lam_t)`` itself when no exact answer is stored).  Colour = multiplier/constraint ``i``
    in the first two panels and run in the last two; line style = run.  ``x`` is
    ``"iteration"`` (the record's iteration index, integer ticks) or ``"time"`` (seconds).
    ``title`` (default: the runs' labels) goes above the four panels.  Saved to ``path`` if
    given; returns the Figure.
    """
    from matplotlib.ticker import MaxNLocator

    if isinstance(trajectories, Trajectory):
        trajectories = [trajectories]
    if labels is None:
        labels = [t.algorithm for t in trajectories]
    if len(labels) != len(trajectories):
        raise ValueError(f"labels: {len(labels)} labels for {len(trajectories)} trajectories")
    if x not in ("iteration", "time"):
        raise ValueError(f"x: must be 'iteration' or 'time', got {x!r}")
    plt = _plt(path)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.6))
    ax_l, ax_s, ax_j, ax_d = axes.ravel()
    exact_drawn = False
    styles = ["-", "--", "-.", ":"]
    names = _constraint_names(trajectories[0])
    notes = []
    for k, (tr, label) in enumerate(zip(trajectories, labels, strict=True)):
        every = int(tr.config.get("record_every", 1) or 1)
        idx = np.arange(tr.num_records) * every
        if tr.config.get("record_every") and tr.num_records > 1:  # last record = iteration T
            idx[-1] = int(tr.config.get("iterations", idx[-1]))
        xs = tr.time if x == "time" else idx
        ls = styles[k % len(styles)]
        m = tr.lam.shape[1]
        many = len(trajectories) > 1
        for i in range(m):
            name = names[i] if i < len(names) else f"g{i + 1}"
            run = f"{label}: " if many else ""
            ax_l.plot(xs, tr.lam[:, i], color=f"C{i % 10}", ls=ls, lw=1.3, marker=".", ms=3,
                      label=f"{run}λ_{i + 1} ({name})")
            ax_s.plot(xs, tr.slack[:, i], color=f"C{i % 10}", ls=ls, lw=1.3, marker=".", ms=3,
                      label=f"{run}E h_{i + 1} ({name})")
        color = f"C{k % 10}"
        ax_j.plot(xs, tr.objective, color=color, ls=ls, lw=1.3, label=f"{label}: J(π_t)")
        if tr.exact:
            gap = tr.dual_value - float(tr.exact["dual_value"])
            best = np.minimum.accumulate(gap)
            ax_d.plot(xs, np.maximum(np.abs(gap), 1e-16), color=color, lw=1.0, alpha=0.6,
                      label=f"{label}: |D(λ_t) − D*|")
            ax_d.plot(xs, np.maximum(best, 1e-16), color=color, lw=1.6, ls="--",
                      label=f"{label}: best so far")
            ax_d.set_yscale("log")
            ax_d.set_ylabel("|D(λ_t) − D*|  [reward units, log scale]")
            if not exact_drawn:
                for i, v in enumerate(np.atleast_1d(tr.exact["lam"])):
                    name = names[i] if i < len(names) else f"g{i + 1}"
                    ax_l.axhline(float(v), color=f"C{i % 10}", ls=":", lw=1.2,
                                 label=f"exact λ*_{i + 1} = {float(v):.3g} ({name})")
                ax_j.axhline(float(tr.exact["primal_value"]), color="k", ls=":", lw=1,
                             label=f"exact P* = {float(tr.exact['primal_value']):.4g}")
                exact_drawn = True
        else:
            ax_d.plot(xs, tr.dual_value, color=color, lw=1.2, label=f"{label}: D(λ_t)")
            ax_d.set_ylabel("D(λ_t)  [reward units]")
            notes.append(f"{label}: no exact answer stored, D(λ_t) itself is drawn")
    ax_s.axhline(0.0, color="k", ls=":", lw=1, label="E h = 0 (≥ 0: met)")
    xlabel = "time [s]" if x == "time" else "iteration t"
    panels = ((ax_l, "multipliers λ_t (dotted: exact λ*)", "λ_t  [reward per unit of utility]"),
              (ax_s, "constraint slack E h at π_t", "E h  [utility units]  (≥ 0: met)"),
              (ax_j, "objective J(π_t) = E r − β KL", "J(π_t)  [reward units]"),
              (ax_d, "dual gap: distance to D* = P*", None))
    for ax, text, ylabel in panels:
        ax.set_title(text, fontsize=10)
        ax.set_xlabel(xlabel)
        if ylabel:
            ax.set_ylabel(ylabel)
        if log_x:
            ax.set_xscale("symlog" if x == "iteration" else "log")
        elif x == "iteration":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    add_note(ax_d, notes)
    fig.suptitle(title if title else ", ".join(labels))
    return _finish(fig, path)


def _constraint_names(tr: Trajectory) -> tuple[str, ...]:
    names = (tr.problem or {}).get("names") if isinstance(tr.problem, dict) else None
    m = tr.lam.shape[1]
    if names and len(names) == m:
        return tuple(str(n) for n in names)
    return tuple(f"g{i + 1}" for i in range(m))


def plot_threshold_sweep(thresholds: np.ndarray, achieved: Mapping[str, np.ndarray],
                         path: str | Path | None = None, ax=None,
                         ylabel: str = "achieved improvement E_π g − E_ref g",
                         title: str | None = None):
    """Achieved constraint value against the threshold ``b``, one line per method, with the
    diagonal ``achieved = b`` (the target: the exact optimum meets a binding constraint with
    equality).  Methods are told apart by colour and marker, and drawn with decreasing marker
    sizes so coinciding points stay visible; a NaN (a method that found nothing) is counted in
    a note.  ``title`` defaults to ``"achieved constraint value against the threshold b"``."""
    b = np.asarray(thresholds, dtype=float)
    plt = _plt(path)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.2, 4.6))
    else:
        fig = ax.figure
    lo, hi = float(b.min()), float(b.max())
    ax.plot([lo, hi], [lo, hi], color="k", ls=":", lw=1, label="achieved = b (target)")
    markers = ["o", "s", "^", "D", "v"]
    notes = []
    n = len(achieved)
    for k, (label, vals) in enumerate(achieved.items()):
        v = np.asarray(vals, dtype=float)
        if v.shape != b.shape:
            raise ValueError(f"achieved[{label!r}]: shape {v.shape} does not match thresholds "
                             f"{b.shape}")
        if np.any(~np.isfinite(v)):
            notes.append(f"{label}: {int(np.sum(~np.isfinite(v)))} threshold(s) without a value")
        ax.plot(b, v, marker=markers[k % len(markers)], ms=4 + 2.5 * (n - 1 - k), lw=1.2,
                mfc="none" if k < n - 1 else None, label=label, zorder=2 + k)
    ax.set_xlabel("threshold b  [units of the utility]")
    ax.set_ylabel(f"{ylabel}  [units of the utility]")
    ax.set_title(title or "achieved constraint value against the threshold b")
    ax.legend(fontsize=8)
    add_note(ax, notes)
    return _finish(fig, path)


def plot_gap_vs_bound(bound: np.ndarray, gap: np.ndarray, groups: Sequence[str] | None = None,
                      path: str | Path | None = None, ax=None,
                      xlabel: str = "bound η S²/2 + ε_app", ylabel: str = "measured gap",
                      title: str | None = None):
    """Measured gaps against their bounds (log-log), with the line ``gap = bound``: every point
    must lie below it.  Gaps ``<= 1e-16`` are drawn at ``1e-16`` and non-positive or infinite
    bounds cannot be drawn: both are counted in a note.  ``title`` defaults to
    ``"<ylabel> against its bound (below the line: the bound holds)"``."""
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
        ax.scatter(bound[sel], np.maximum(gap[sel], 1e-16), s=22, color=f"C{k % 10}", label=g,
                   alpha=0.8)
    notes = []
    bad = ~(np.isfinite(bound) & (bound > 0))
    if bad.any():
        notes.append(f"{int(bad.sum())} point(s) with an infinite or non-positive bound not "
                     "drawn")
    if np.any(gap <= 1e-16):
        notes.append(f"{int(np.sum(gap <= 1e-16))} gap(s) ≤ 1e-16 drawn at 1e-16")
    pos = bound[np.isfinite(bound) & (bound > 0)]
    if pos.size:
        lo, hi = float(pos.min()) / 2, float(pos.max()) * 2
        ax.plot([lo, hi], [lo, hi], color="k", ls=":", lw=1, label="gap = bound")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"{xlabel}  (log scale)")
    ax.set_ylabel(f"{ylabel}  (log scale)")
    ax.set_title(title or f"{ylabel} against its bound (below the line: the bound holds)")
    ax.legend(fontsize=8)
    add_note(ax, notes)
    return _finish(fig, path)

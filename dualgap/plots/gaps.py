"""Parametrization and optimality gaps against ``nu`` (log-log), with the theory's bounds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .figure import add_note, log_ticks
from .figure import finish as _finish
from .figure import pyplot as _plt

__all__ = ["plot_gaps_vs_nu", "plot_report_bounds"]


def plot_gaps_vs_nu(nu: Sequence[float], measured: Mapping[str, Sequence[float]],
                    bounds: Mapping[str, Sequence[float]] | None = None,
                    reference_slopes: Sequence[float] = (0.5, 1.0, 2.0), ax=None,
                    path: str | Path | None = None, title: str = "",
                    ylabel: str = "gap", floor: float = 1e-16):
    """Log-log: each measured gap (markers, with its fitted slope in the legend) and each
    bound (dashed) against ``nu``; faint guide lines of the ``reference_slopes``.

    ``measured`` and ``bounds`` map labels to arrays of the same length as ``nu``; values are
    plotted as ``max(|v|, floor)`` (a measured gap of exactly 0 sits on the floor).  A value
    that cannot be drawn (an infinite or NaN bound, a ``nu <= 0``) is left out of its line and
    counted in a note on the axes, so no series disappears silently.  ``title`` defaults to
    ``"<ylabel> against the parametrization gap ν"``.
    """
    from ..theory import fit_slope

    x = np.asarray(nu, dtype=np.float64)
    plt = _plt(path)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
    else:
        fig = ax.figure
    ys = []
    notes = []
    if np.any(~(x > 0)):
        notes.append(f"{int(np.sum(~(x > 0)))} point(s) with ν ≤ 0 or NaN cannot be drawn on "
                     "a log axis")
    for k, (label, vals) in enumerate(measured.items()):
        y = np.abs(np.asarray(vals, dtype=np.float64))
        if y.shape != x.shape:
            raise ValueError(f"measured[{label!r}]: shape {y.shape} does not match nu {x.shape}")
        slope, _ = fit_slope(x, y)
        ax.loglog(x, np.maximum(y, floor), "o-", color=f"C{k}", ms=4, lw=1,
                  label=f"{label} (slope {slope:.2f})")
        if np.any(y <= floor):
            notes.append(f"{label}: {int(np.sum(y <= floor))} value(s) ≤ {floor:g} drawn at "
                         f"{floor:g}")
        ys.append(y)
    for k, (label, vals) in enumerate((bounds or {}).items()):
        y = np.asarray(vals, dtype=np.float64)
        if y.shape != x.shape:
            raise ValueError(f"bounds[{label!r}]: shape {y.shape} does not match nu {x.shape}")
        bad = ~np.isfinite(y)
        if bad.all():
            notes.append(f"{label}: infinite or undefined at every ν (not drawn)")
            ax.plot([], [], "--", color=f"C{k}", lw=1.2, label=f"{label} (∞: not drawn)")
            continue
        if bad.any():
            notes.append(f"{label}: infinite or undefined at {int(bad.sum())} of {y.size} ν "
                         "(gaps in the line)")
        ax.loglog(x, np.where(bad, np.nan, np.maximum(y, floor)), "--", color=f"C{k}", lw=1.2,
                  label=label)
    pos = x[x > 0]
    if pos.size and ys:
        y_all = np.concatenate([y[y > floor] for y in ys] or [np.ones(1)])
        anchor = float(np.median(y_all)) if y_all.size else 1.0
        xm = float(np.exp(np.mean(np.log(pos))))
        for j, s in enumerate(reference_slopes):
            ax.loglog(pos, anchor * (pos / xm) ** s, color="0.75", lw=0.8, zorder=0,
                      label="guides ∝ ν^s (grey)" if j == 0 else None)
            ax.annotate(f"ν^{s:g}", (pos[-1], anchor * (pos[-1] / xm) ** s), fontsize=7,
                        color="0.5")
    ax.set_xlabel("parametrization gap ν  (max of ν_1, ν_KL; log scale)")
    ax.set_ylabel(f"{ylabel}  (log scale)")
    log_ticks(ax.xaxis)
    ax.set_title(title or f"{ylabel} against the parametrization gap ν")
    ax.legend(fontsize=7)
    add_note(ax, notes)
    return _finish(fig, path)


def plot_report_bounds(report, ax=None, path: str | Path | None = None):
    """One :class:`~dualgap.report.GapReport`: each checked row as ``measured / bound``
    (bars; below 1 means the bound holds), with the failing rows in red.  Rows whose bound is
    infinite, undefined or not positive have no ratio: they are listed in a note."""
    from matplotlib.patches import Patch

    rows = [r for r in report.rows if r.bound is not None and np.isfinite(r.bound)
            and r.bound > 0]
    left_out = [r.statement for r in report.rows
                if r.bound is not None and not any(r is q for q in rows)]
    plt = _plt(path)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.4, 0.32 * max(len(rows), 3) + 1.8))
    else:
        fig = ax.figure
    ratio = np.array([max(abs(r.measured), 1e-18) / r.bound for r in rows])
    colors = ["C3" if r.holds is False else "C0" for r in rows]
    ax.barh(np.arange(len(rows)), ratio, color=colors)
    ax.set_yticks(np.arange(len(rows)), [r.statement for r in rows], fontsize=7)
    ax.set_xscale("log")
    one = ax.axvline(1.0, color="k", lw=1, label="ratio = 1 (the bound itself)")
    ax.invert_yaxis()
    ax.set_xlabel("|measured| / bound  (< 1: the bound holds; log scale)")
    ax.set_ylabel("statement")
    ax.legend(handles=[Patch(color="C0", label="holds (or not checked)"),
                       Patch(color="C3", label="fails"), one], fontsize=7, loc="lower right")
    ax.set_title(f"bounds of the theory for {report.policy_class}\non {report.problem}",
                 fontsize=9)
    add_note(ax, [f"{len(left_out)} row(s) with an infinite or undefined bound left out: "
                  + ", ".join(dict.fromkeys(left_out))] if left_out else [])
    return _finish(fig, path)

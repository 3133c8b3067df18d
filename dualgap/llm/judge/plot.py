"""The figure of judge win rates across thresholds: one point per judged run, at its threshold
``b`` (run A's first constraint), with its 95% interval; one series per aspect and opponent,
the opponent named by its method (``pi_ref`` for a ``DIR@reference`` side), so that the runs at
several thresholds against their matching baselines form one line."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...plots.figure import finish, pyplot
from .templates import ASPECTS

__all__ = ["plot_win_rates_vs_threshold"]


def _opponent(result: dict) -> str:
    if result.get("side_b") == "reference":
        return "π_ref"
    return result.get("method_b") or result["label_b"]


def plot_win_rates_vs_threshold(results: Sequence[dict | str | Path],
                                path: str | Path | None = None,
                                aspects: Sequence[str] = ASPECTS,
                                title: str = "Judge win rates across thresholds (95% intervals)"):
    """Win rate of each run A against its opponent B (strictly higher judge score), against
    A's threshold ``b``; ``results`` are :func:`~dualgap.llm.judge.report.judge_runs` results or
    paths of their ``results.json``; ``title`` names what was judged, and by what."""
    rows = [json.loads(Path(r).read_text()) if isinstance(r, (str, Path)) else r for r in results]
    if not rows:
        raise ValueError("results: empty")
    for r in rows:
        if r.get("threshold_a") is None:
            raise ValueError(f"results: run {r.get('label_a')!r} has no constraint threshold to "
                             "place it on the axis")
    plt = pyplot(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    opponents = sorted({_opponent(r) for r in rows})
    markers = "os^Dv<>"
    for i, aspect in enumerate(aspects):
        for j, opp in enumerate(opponents):
            pts = sorted((r["threshold_a"], r["aspects"][aspect]["win"]) for r in rows
                         if _opponent(r) == opp and aspect in r["aspects"]
                         and r["aspects"][aspect]["win"]["rate"] is not None)
            if not pts:
                continue
            x = np.array([p[0] for p in pts], dtype=float)
            y = np.array([p[1]["rate"] for p in pts], dtype=float)
            lo = np.array([p[1]["ci95"][0] for p in pts], dtype=float)
            hi = np.array([p[1]["ci95"][1] for p in pts], dtype=float)
            ax.errorbar(x, y, yerr=np.vstack([y - lo, hi - y]), color=f"C{i}",
                        marker=markers[j % len(markers)], capsize=3,
                        label=f"{aspect} vs {opp}")
    ax.axhline(0.5, color="grey", ls=":", lw=1, label="one half")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("threshold b of the run (safety improvement over π_ref)")
    ax.set_ylabel("judge win rate (strictly higher score)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return finish(fig, path)

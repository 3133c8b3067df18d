"""The steps every figure function shares: get pyplot, mark integer axes, write a note where a
series is missing or infinite, then lay out and save (public: the figures outside this package,
in ``dualgap.llm.plots``, use them too)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def pyplot(path: str | Path | None):
    """``matplotlib.pyplot``, on the non-interactive Agg backend when the figure goes to a file
    (unless a backend was already chosen)."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def integer_ticks(ax, axis: str = "x") -> None:
    """Ticks at integers only on ``axis`` (``"x"`` or ``"y"``): for steps and iterations."""
    from matplotlib.ticker import MaxNLocator

    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def log_ticks(axis) -> None:
    """On a log ``axis`` (``ax.xaxis``/``ax.yaxis``): major ticks at 1, 2, 5 x 10^k (matplotlib
    falls back to linear ticks inside one decade) with short ``%g`` labels and no minor labels,
    so the labels never overlap."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0), numticks=12))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def add_note(ax, lines: Sequence[str]) -> None:
    """A small boxed note in the lower left of ``ax`` (one line per entry), for what the figure
    cannot draw: an infinite bound, a missing value, a series left out.  Nothing when empty."""
    if not lines:
        return
    ax.text(0.01, 0.01, "\n".join(lines), transform=ax.transAxes, fontsize=7, ha="left",
            va="bottom", color="0.25", zorder=10,
            bbox={"boxstyle": "round", "fc": "white", "ec": "0.7", "alpha": 0.9})


def note_texts(ax) -> list[str]:
    """The notes :func:`add_note` put on ``ax`` (what the tests read)."""
    return [t.get_text() for t in ax.texts if t.get_bbox_patch() is not None]


def finish(fig, path: str | Path | None):
    """``tight_layout``, save to ``path`` (110 dpi) when given, and return ``fig``."""
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig

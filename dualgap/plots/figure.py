"""The two steps every figure function shares: get pyplot, then lay out and save (public: the
figures outside this package use them too)."""

from __future__ import annotations

from pathlib import Path


def pyplot(path: str | Path | None):
    """``matplotlib.pyplot``, on the non-interactive Agg backend when the figure goes to a file
    (unless a backend was already chosen)."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def finish(fig, path: str | Path | None):
    """``tight_layout``, save to ``path`` (110 dpi) when given, and return ``fig``."""
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig

"""Plain-text tables for the command line (no dependencies)."""

from __future__ import annotations


def format_table(rows: list[tuple[str, ...]]) -> str:
    """Rows of strings (the first is the header) as an aligned text table."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for k, row in enumerate(rows):
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)

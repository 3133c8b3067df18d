"""What every figure test checks through matplotlib's API: a title, labelled axes, and a legend
entry for every drawn line and marker (reference lines included)."""

import matplotlib

matplotlib.use("Agg")


def legend_texts(ax) -> list[str]:
    leg = ax.get_legend()
    return [] if leg is None else [t.get_text() for t in leg.get_texts()]


def unlabelled_lines(ax) -> list:
    """Lines drawn with data but with no legend label (matplotlib's ``_child``/``_nolegend_``
    names); the parts of a labelled errorbar are covered by its label."""
    in_labelled_container = set()
    for c in ax.containers:  # an errorbar's data line and caps carry its container's label
        if not c.get_label().startswith("_"):
            for child in c.get_children():
                in_labelled_container.add(id(child))
    out = []
    for line in ax.get_lines():
        if id(line) in in_labelled_container:
            continue
        if line.get_label().startswith("_") and len(line.get_xdata()) > 0:
            if line.get_marker() in ("_", "|") and line.get_linestyle() == "None":
                continue  # errorbar caps belong to a labelled errorbar
            out.append(line)
    return out


def check_labelled(fig, axes=None, allow_unlabelled: int = 0) -> None:
    """Each axis in ``axes`` (default: every axis with a legend or lines, colorbars excluded)
    has a title (its own or the figure's), x and y labels, a legend, and no unlabelled line
    beyond ``allow_unlabelled``."""
    axes = axes if axes is not None else [a for a in fig.axes if a.get_lines() or a.patches
                                          or a.collections]
    assert fig._suptitle is not None or all(a.get_title() for a in axes), "no title"
    for ax in axes:
        assert ax.get_title(), f"axis without title: {ax}"
        assert ax.get_xlabel(), f"{ax.get_title()!r}: no x label"
        assert ax.get_ylabel(), f"{ax.get_title()!r}: no y label"
        assert legend_texts(ax), f"{ax.get_title()!r}: no legend"
        bad = unlabelled_lines(ax)
        assert len(bad) <= allow_unlabelled, (
            f"{ax.get_title()!r}: lines without legend entry: {[b.get_label() for b in bad]}")

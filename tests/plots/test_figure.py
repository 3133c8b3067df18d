"""Tests of dualgap/plots/figure.py, the steps every figure shares, read back through
matplotlib: integer ticks, 1-2-5 log ticks with short labels, notes, and saving."""

import matplotlib
import pytest

matplotlib.use("Agg")

from dualgap.plots.figure import (  # noqa: E402
    add_note,
    finish,
    integer_ticks,
    log_ticks,
    note_texts,
    pyplot,
)


@pytest.fixture
def ax():
    plt = pyplot("unused.png")
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def test_pyplot_for_a_file_is_non_interactive():
    assert pyplot("x.png").get_backend().lower() == "agg"


@pytest.mark.parametrize("axis", ["x", "y"])
def test_integer_ticks_only_on_the_axis_asked(ax, axis):
    ax.plot([0, 2.6], [0, 2.6])
    ax.set_xlim(0, 2.6)
    ax.set_ylim(0, 2.6)
    integer_ticks(ax, axis)
    ticks = {"x": ax.get_xticks(), "y": ax.get_yticks()}
    other = ticks["y" if axis == "x" else "x"]
    assert all(float(t).is_integer() for t in ticks[axis])
    assert not all(float(t).is_integer() for t in other)  # matplotlib's default: 0.5 steps


def test_log_ticks_are_1_2_5_per_decade_with_short_labels(ax):
    ax.set_xscale("log")
    ax.set_xlim(1e-3, 10)
    log_ticks(ax.xaxis)
    ax.figure.canvas.draw()
    shown = [t for t in ax.get_xticks() if 1e-3 <= t <= 10]
    assert [f"{t:g}" for t in shown] == ["0.001", "0.002", "0.005", "0.01", "0.02", "0.05",
                                         "0.1", "0.2", "0.5", "1", "2", "5", "10"]
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert "0.005" in labels and "10" in labels and not any("times" in s for s in labels)
    assert all(not t.get_text() for t in ax.get_xticklabels(minor=True))


def test_notes_are_boxed_and_read_back_and_nothing_is_written_when_empty(ax):
    ax.text(0.5, 0.5, "a label, not a note")
    add_note(ax, [])
    assert note_texts(ax) == []
    add_note(ax, ["bound: inf (not drawn)", "lam*_p: missing"])
    assert note_texts(ax) == ["bound: inf (not drawn)\nlam*_p: missing"]


def test_finish_saves_a_png_when_given_a_path(ax, tmp_path):
    ax.plot([0, 1], [1, 0])
    path = tmp_path / "f.png"
    assert finish(ax.figure, path) is ax.figure
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert finish(ax.figure, None) is ax.figure
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]

"""plot_gaps_vs_nu and plot_report_bounds: titled, labelled, infinite bounds noted not dropped,
non-overlapping log ticks."""

import numpy as np
from figure_checks import check_labelled, legend_texts

from dualgap.plots import plot_gaps_vs_nu, plot_report_bounds
from dualgap.plots.figure import note_texts
from dualgap.theory import GapReport, GapRow


def test_gaps_vs_nu_notes_an_infinite_bound():
    nu = np.array([0.2, 0.3, 0.45])
    fig = plot_gaps_vs_nu(nu, {"D - D_p": nu**2, "|lam_p - lam|": [0.0, 0.01, 0.02]},
                          {"K nu": 3 * nu, "Theorem 1": [np.inf, np.inf, np.inf],
                           "Lemma 4": [1.0, np.nan, 2.0]}, ylabel="dual gap")
    ax = fig.axes[0]
    check_labelled(fig, [ax], allow_unlabelled=2)  # the 2nd and 3rd grey slope guides
    texts = legend_texts(ax)
    assert texts[0].startswith("D - D_p (slope 2.00")
    assert "Theorem 1 (∞: not drawn)" in texts and "guides ∝ ν^s (grey)" in texts
    note = "\n".join(note_texts(ax))
    assert "Theorem 1: infinite or undefined at every ν" in note
    assert "Lemma 4: infinite or undefined at 1 of 3" in note
    assert "|lam_p - lam|: 1 value(s)" in note  # the exact 0 sits on the floor
    assert ax.get_title() == "dual gap against the parametrization gap ν"
    # a range under a decade still has labelled major ticks (1, 2, 5 x 10^k), none minor
    for width in (6.4, 3.5):  # the tick labels never overlap, even on a narrow figure
        fig.set_size_inches(width, 4.6)
        fig.canvas.draw()
        boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()
                 and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]]
        assert len(boxes) >= 2
        boxes.sort(key=lambda b: b.x0)
        assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:], strict=False)), width
    assert not any(t.get_text() for t in ax.xaxis.get_minorticklabels())


def test_report_bounds_lists_rows_left_out():
    rows = [GapRow("Lemma 3 at lam*", "D - D_p", 0.1, bound=1.0, lower=0.0, holds=True),
            GapRow("Lemma 4", "||lam_p - lam||", 2.0, bound=1.0, holds=False),
            GapRow("Theorem 1 (upper)", "D*_p - P*_p", 0.01, bound=float("inf"), holds=None)]
    rep = GapReport(problem="AlignmentProblem(X=2)", policy_class="LogLinearPolicy(3)",
                    quantities={}, rows=rows, seconds=0.0)
    fig = plot_report_bounds(rep)
    ax = fig.axes[0]
    check_labelled(fig, [ax])
    assert "LogLinearPolicy(3)" in ax.get_title() and "AlignmentProblem(X=2)" in ax.get_title()
    assert legend_texts(ax) == ["holds (or not checked)", "fails",
                                "ratio = 1 (the bound itself)"]
    assert [p.get_width() for p in ax.patches] == [0.1, 2.0]
    assert "Theorem 1 (upper)" in note_texts(ax)[0]

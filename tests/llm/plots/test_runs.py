"""Figures of LLM runs on tiny hand-made records: titles, labels, legend entries, integer steps,
points sharing a threshold offset so none hides another."""

import numpy as np
from figure_checks import check_labelled, legend_texts

from dualgap.llm.plots.runs import (
    plot_improvement_vs_threshold,
    plot_lam_trajectory,
    plot_score_histograms,
)
from dualgap.plots.figure import note_texts


def test_score_histograms():
    rng = np.random.default_rng(0)
    ref, pol = rng.normal(size=(2, 30)), rng.normal(1.0, size=(2, 30))
    fig = plot_score_histograms(ref, pol, ["helpfulness", "safety"])
    check_labelled(fig, fig.axes)
    assert fig._suptitle.get_text() == "score distributions of π_ref and trained policy"
    texts = legend_texts(fig.axes[1])
    assert sorted(texts) == sorted(["π_ref mean " + f"{ref[1].mean():.3g}",
                                    "trained policy mean " + f"{pol[1].mean():.3g}",
                                    "π_ref samples", "trained policy samples"])
    assert fig.axes[1].get_xlabel() == "safety score  [score-model units]"


def _history():
    return [{"iteration": 0, "stage": "dual_0", "lam": [0.5], "source": "one-shot"},
            {"iteration": 1, "stage": "dual_1", "lam": [0.7], "E_pi_g": [0.1], "slack": [-0.2]},
            {"iteration": 2, "stage": "dual_2", "lam": [0.8], "E_pi_g": [0.3], "slack": [0.05]},
            {"iteration": 2, "stage": "final", "lam": [0.8], "E_pi_g": [0.3], "slack": [0.05]}]


def test_lam_trajectory_integer_steps_and_colours():
    fig = plot_lam_trajectory(_history(), ["safety"])
    ax_l, ax_s = fig.axes
    check_labelled(fig, [ax_l, ax_s])
    assert "3 policy steps" in fig._suptitle.get_text()
    assert legend_texts(ax_l) == ["λ_t (safety)"]
    assert legend_texts(ax_s) == ["slack (safety)", "slack = 0 (≥ 0: met)"]
    assert ax_l.get_lines()[0].get_color() == ax_s.get_lines()[0].get_color()
    fig.canvas.draw()
    for ax in (ax_l, ax_s):
        ticks = ax.get_xticks()
        assert np.allclose(ticks, np.round(ticks)), ticks
    fig = plot_lam_trajectory(_history()[:1], ["safety"])
    assert "no measured iterate" in note_texts(fig.axes[1])[0]


def test_improvement_vs_threshold_offsets_shared_thresholds():
    runs = [{"label": "one-shot", "threshold": 1.0, "improvement": 0.8, "ci": (0.7, 0.9)},
            {"label": "CAID", "threshold": 1.0, "improvement": 0.8, "ci": (0.7, 0.9)},
            {"label": "CAID b=2", "threshold": 2.0, "improvement": 2.1, "ci": (2.0, 2.2)}]
    fig = plot_improvement_vs_threshold(runs, "safety")
    ax = fig.axes[0]
    check_labelled(fig, [ax])
    assert ax.get_title() == "achieved safety improvement against its threshold (3 runs, 95% CI)"
    assert legend_texts(ax) == ["improvement = b (met on or above)", "one-shot", "CAID",
                                "CAID b=2"]
    points = [ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert points[0] != points[1] and points[2] == 2.0  # the pair at b = 1 is separated
    assert abs(points[0] - 1.0) == abs(points[1] - 1.0) > 0
    assert "offset sideways" in note_texts(ax)[0]

"""Tests of dualgap/llm/judge/plot.py: the win-rate-versus-threshold figure."""

from __future__ import annotations

import json

import pytest


def _result(threshold, label_b, win, lo, hi):
    entry = {"win": {"rate": win, "ci95": [lo, hi]}}
    return {"label_a": f"b{threshold}", "label_b": f"{label_b}-b{threshold}",
            "method_b": label_b, "side_b": "policy", "threshold_a": threshold,
            "aspects": {"helpfulness": entry, "safety": entry}}


def test_win_rate_figure_has_title_labels_and_legend(tmp_path):
    import matplotlib.pyplot as plt

    from dualgap.llm.judge.plot import plot_win_rates_vs_threshold

    rows = [_result(3, "one-shot", 0.6, 0.5, 0.7), _result(5, "one-shot", 0.7, 0.6, 0.8)]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_result(7, "one-shot", 0.4, 0.3, 0.5)))
    fig = plot_win_rates_vs_threshold([*rows, path], tmp_path / "w.png")
    ax = fig.axes[0]
    assert "win rates" in ax.get_title().lower()
    assert "threshold" in ax.get_xlabel() and "win rate" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "helpfulness vs one-shot" in labels and "safety vs one-shot" in labels
    line = ax.get_lines()[0]
    assert line.get_xdata().tolist() == [3, 5, 7]
    assert line.get_ydata().tolist() == [0.6, 0.7, 0.4]
    ref = {**rows[0], "side_b": "reference"}
    fig2 = plot_win_rates_vs_threshold([ref])
    assert "helpfulness vs π_ref" in [t.get_text() for t in fig2.axes[0].get_legend().get_texts()]
    plt.close(fig2)
    assert (tmp_path / "w.png").stat().st_size > 0
    plt.close(fig)
    with pytest.raises(ValueError, match="no constraint threshold"):
        plot_win_rates_vs_threshold([{**rows[0], "threshold_a": None}])

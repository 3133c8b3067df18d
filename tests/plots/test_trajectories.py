"""plot_trajectories, plot_threshold_sweep, plot_gap_vs_bound: they draw the data they are
given, with titles, labels, a legend entry per line (lam* lines in the colour of their
multiplier) and integer ticks on iterations."""

import matplotlib.colors as mcolors
import numpy as np
import pytest
from figure_checks import check_labelled, legend_texts

import dualgap as dg
from dualgap.algorithms import caid, dual_descent
from dualgap.instances import random_problem
from dualgap.plots import plot_gap_vs_bound, plot_threshold_sweep, plot_trajectories
from dualgap.plots.figure import note_texts
from dualgap.plots.trajectories import run_title


def test_trajectory_figure(tmp_path):
    p = random_problem(1, 4, 5, 2)
    sol = dg.solve(p)
    a = dual_descent(p, 20, exact_solution=sol)
    b = dual_descent(p, 20, samples=2, step_rule="constant", step_size=0.1, exact_solution=sol)
    fig = plot_trajectories([a, b], labels=["exact", "sampled"], path=tmp_path / "f.png")
    ax_l = fig.axes[0]
    np.testing.assert_array_equal(ax_l.lines[0].get_ydata(), a.lam[:, 0])
    assert (tmp_path / "f.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="labels"):
        plot_trajectories([a, b], labels=["one"])
    plot_trajectories(a, x="time", log_x=True)
    with pytest.raises(ValueError, match="x:"):
        plot_trajectories(a, x="epoch")


def test_sweep_and_gap_figures(tmp_path):
    b = np.linspace(0, 1, 5)
    fig = plot_threshold_sweep(b, {"one-shot": b * 1.3, "CAID": b}, path=tmp_path / "s.png")
    np.testing.assert_array_equal(fig.axes[0].lines[1].get_ydata(), b * 1.3)
    with pytest.raises(ValueError, match="one-shot"):
        plot_threshold_sweep(b, {"one-shot": b[:3]})
    fig = plot_gap_vs_bound(np.array([1.0, 2.0]), np.array([0.1, 0.5]), ["a", "b"])
    assert len(fig.axes[0].collections) == 2


def test_trajectories_title_legend_and_lam_star_colours():
    p = random_problem(1, 3, 4, 2)
    sol = dg.solve(p)
    tr = caid(p, None, iterations=3, step_rule="constant", step_size=0.3, one_shot_samples=4,
              exact_solution=sol)
    title = run_title(tr, "caid", "random_problem(1)", p.names)
    assert title == f"caid, exact π_λ, on random_problem(1) ({', '.join(p.names)})"
    fig = plot_trajectories(tr, labels=["caid"], title=title)
    assert fig._suptitle.get_text() == title
    check_labelled(fig, fig.axes)
    ax_l = fig.axes[0]
    texts = legend_texts(ax_l)
    for i, name in enumerate(p.names):
        assert f"λ_{i + 1} ({name})" in texts
        assert f"exact λ*_{i + 1} = {sol.lam[i]:.3g} ({name})" in texts
        run = next(ln for ln in ax_l.get_lines() if ln.get_label() == f"λ_{i + 1} ({name})")
        star = next(ln for ln in ax_l.get_lines() if ln.get_label().startswith(f"exact λ*_{i + 1}"))
        assert mcolors.same_color(run.get_color(), star.get_color())
    colours = {mcolors.to_hex(ln.get_color()) for ln in ax_l.get_lines()
               if ln.get_label().startswith("exact λ*")}
    assert len(colours) == 2  # not both black
    fig.canvas.draw()
    ticks = ax_l.get_xticks()
    assert np.allclose(ticks, np.round(ticks))


def test_trajectories_without_exact_answer_say_so():
    p = random_problem(2, 3, 4, 1)
    a = dual_descent(p, 4)
    fig = plot_trajectories([a, a], labels=["one", "two"])
    check_labelled(fig, fig.axes)
    assert fig._suptitle.get_text() == "one, two"
    assert "no exact answer stored" in note_texts(fig.axes[3])[0]


def test_threshold_sweep_keeps_coinciding_points_visible():
    b = np.linspace(0, 1, 4)
    fig = plot_threshold_sweep(b, {"exact": b, "CAID": b, "one-shot": [0.1, np.nan, 0.5, 0.9]})
    ax = fig.axes[0]
    check_labelled(fig, [ax])
    sizes = [ln.get_markersize() for ln in ax.get_lines()[1:]]
    assert sizes[0] > sizes[1] > sizes[2]  # the first drawn is the largest: none hides another
    assert legend_texts(ax) == ["achieved = b (target)", "exact", "CAID", "one-shot"]
    assert "one-shot: 1 threshold(s) without a value" in note_texts(ax)[0]


def test_gap_vs_bound_notes_undrawable_points():
    fig = plot_gap_vs_bound(np.array([1.0, 2.0, np.inf]), np.array([0.1, 0.0, 0.2]),
                            ["a", "b", "b"])
    ax = fig.axes[0]
    check_labelled(fig, [ax])
    assert legend_texts(ax) == ["a", "b", "gap = bound"]
    note = note_texts(ax)[0]
    assert "1 point(s) with an infinite" in note and "1 gap(s) ≤ 1e-16" in note

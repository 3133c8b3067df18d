"""Trajectory figures draw the data they are given."""

import numpy as np
import pytest

import dualgap as dg
from dualgap.algorithms import dual_descent
from dualgap.instances import random_problem
from dualgap.plots import plot_gap_vs_bound, plot_threshold_sweep, plot_trajectories


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

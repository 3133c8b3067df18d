"""plot_dual_landscape: titled, labelled, every lam*_i line in its constraint's colour."""

import matplotlib.colors as mcolors
import numpy as np
from figure_checks import check_labelled as labelled
from figure_checks import legend_texts

import dualgap as dg
from dualgap.instances import random_problem
from dualgap.plots import plot_dual_landscape


def test_two_constraints():
    p = random_problem(0, 3, 4, 2)
    sol = dg.solve(p)
    fig = plot_dual_landscape(p, sol, n=7, instance="random_problem(0)")
    ax_d, ax_s = fig.axes[0], fig.axes[1]
    assert "random_problem(0)" in fig._suptitle.get_text()
    labelled(fig, [ax_d, ax_s])
    texts = legend_texts(ax_s)
    for i in range(2):
        assert f"λ*_{i + 1} = {sol.lam[i]:.3g} ({p.names[i]})" in texts
        curve = next(ln for ln in ax_s.get_lines() if ln.get_label().startswith(f"E h_{i + 1}"))
        star = next(ln for ln in ax_s.get_lines() if ln.get_label().startswith(f"λ*_{i + 1}"))
        assert mcolors.same_color(curve.get_color(), star.get_color())
        np.testing.assert_allclose(star.get_xdata(), [sol.lam[i]] * 2)
    assert "E h = 0 (≥ 0: met)" in texts


def test_one_and_zero_constraints():
    p = random_problem(1, 3, 4, 1)
    fig = plot_dual_landscape(p, dg.solve(p), n=5)
    labelled(fig, fig.axes[:2])
    assert "3 prompts × 4 responses, 1 constraint" in fig._suptitle.get_text()
    p0 = random_problem(1, 3, 4, 0)
    fig = plot_dual_landscape(p0, dg.solve(p0), n=5)
    assert any("no constraints" in t.get_text() for t in fig.axes[0].texts)

"""Figures of the synthetic-language comparison on a duck-typed tiny Comparison: titles, labels,
legend entries (lam* and lam*_p lines in their multiplier's colour), notes for infinite bounds."""

from types import SimpleNamespace

import matplotlib.colors as mcolors
import numpy as np
from figure_checks import check_labelled, legend_texts

import dualgap as dg
from dualgap.instances import random_problem
from dualgap.llm.plots.synthetic import plot_capacity_sweep, plot_pipeline_vs_exact
from dualgap.plots.figure import note_texts
from dualgap.report import GapRow


def _comparison(m=2):
    p = random_problem(0, 3, 4, m)
    sol = dg.solve(p)
    its = [SimpleNamespace(iteration=t, lam=sol.lam * (1 + 0.1 * t), slack=np.full(m, 0.01 * t),
                           slack_estimate=None if t == 0 else np.full(m, 0.02),
                           objective=sol.primal_value - 0.1 / (t + 1)) for t in range(3)]
    rows = [GapRow("Theorem 2 (upper)", "D*_p - P*", 0.01, bound=float("inf")),
            GapRow("Lemma 4", "||lam*_p - lam*||_2", 0.02, bound=0.5),
            GapRow("Lemma 3 at lam*", "D - D_p", 0.003, bound=0.2)]
    cls = SimpleNamespace(lam_p=sol.lam * 1.05, lams=np.array([sol.lam * s for s in (0.5, 1.5)]),
                          dual_p=np.array([sol.dual_value - 0.1, sol.dual_value]), nu=0.3,
                          arch=SimpleNamespace(label=lambda: "d=8"), rows=rows)
    return SimpleNamespace(task=SimpleNamespace(problem=p, solution=sol),
                           traces={"caid": SimpleNamespace(iterates=its),
                                   "one-shot": SimpleNamespace(iterates=its[:1])},
                           classes=[cls])


def test_pipeline_vs_exact():
    cmp = _comparison()
    fig = plot_pipeline_vs_exact(cmp)
    check_labelled(fig, fig.axes)
    assert "caid, one-shot" in fig._suptitle.get_text()
    ax0 = fig.axes[0]
    names = cmp.task.problem.names
    for i, name in enumerate(names):
        star = next(ln for ln in ax0.get_lines() if ln.get_label().startswith(f"exact λ*_{i + 1}"))
        run = next(ln for ln in ax0.get_lines() if ln.get_label() == f"caid: λ_{i + 1} ({name})")
        lam_p = next(ln for ln in ax0.get_lines() if ln.get_label().startswith(f"λ*_p,{i + 1}"))
        assert mcolors.same_color(star.get_color(), run.get_color())
        assert mcolors.same_color(lam_p.get_color(), run.get_color())
    assert "E h = 0 (≥ 0: met)" in legend_texts(fig.axes[2])
    assert "one-shot: no sampled slack estimate" in note_texts(fig.axes[2])[0]
    fig.canvas.draw()
    assert np.allclose(ax0.get_xticks(), np.round(ax0.get_xticks()))


def test_capacity_sweep_notes_an_infinite_bound():
    fig = plot_capacity_sweep(_comparison(m=1))
    check_labelled(fig, fig.axes)
    assert "1 transformer capacities" in fig._suptitle.get_text()
    texts = legend_texts(fig.axes[1])
    assert "|D*_p - P*| measured" in texts and "|D*_p - P*| bound" in texts
    assert "Theorem 2 (upper): bound infinite or undefined for 1 of 1" in note_texts(
        fig.axes[1])[0]
    assert any(t.startswith("λ* = ") for t in legend_texts(fig.axes[0]))


def test_capacity_sweep_ticks_do_not_overlap_and_missing_rows_are_noted():
    cmp = _comparison(m=1)
    other = SimpleNamespace(**vars(cmp.classes[0]))
    other.nu, other.rows = 0.42, other.rows[:1]  # this class has no Lemma 4 / Lemma 3 row
    other.arch = SimpleNamespace(label=lambda: "d=16")
    cmp.classes.append(other)
    fig = plot_capacity_sweep(cmp)
    ax = fig.axes[1]
    assert "Lemma 4: no row for d=16 (not drawn)" in note_texts(ax)[0]
    fig.canvas.draw()
    boxes = sorted((t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()
                    and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]),
                   key=lambda b: b.x0)
    assert len(boxes) >= 2
    assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:], strict=False))

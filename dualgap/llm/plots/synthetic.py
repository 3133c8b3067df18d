"""The synthetic language (``dualgap.llm.synthetic``): the pipeline's iterates beside the exact
answer, and the theory's gaps against ``nu`` across transformer capacities.

Both functions take a :class:`dualgap.llm.synthetic.experiment.Comparison` (duck-typed: this
module imports numpy and matplotlib only), an optional ``path`` to save to, and return the
``Figure``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...plots.figure import finish as _finish
from ...plots.figure import pyplot as _plt

__all__ = ["plot_pipeline_vs_exact", "plot_capacity_sweep"]

_MARKERS = {"caid": "o", "one-shot": "s"}


def plot_pipeline_vs_exact(comparison: Any, path: str | Path | None = None):
    """Three panels over the policy steps ``t`` of each pipeline run: ``lam_t`` (``lam*``
    dashed, ``lam*_p`` of the reference class dotted, each in the colour of its multiplier),
    the exact ``J(pi_t)`` (``P*`` dashed) and the exact slack ``E_rho E_{pi_t} h_i`` (filled)
    with the pipeline's sampled estimate of it (hollow), 0 dashed.  Colour = constraint ``i``,
    marker and line style = method."""
    from matplotlib.ticker import MaxNLocator

    from dualgap.plots.figure import add_note

    plt = _plt(path)
    sol = comparison.task.solution
    names = comparison.task.problem.names
    m = len(names)
    fig, axes = plt.subplots(1, 3, figsize=(14.5, 4.3))
    styles = ("-", "--", "-.", ":")
    notes = []
    for k, (meth, tr) in enumerate(comparison.traces.items()):
        mk = _MARKERS.get(meth, "^")
        ls = styles[k % len(styles)]
        t = np.array([it.iteration for it in tr.iterates])
        if t.size == 0:
            notes.append(f"{meth}: no iterates")
            continue
        lam = np.array([it.lam for it in tr.iterates]).reshape(t.size, -1)  # size = (T, m)
        slack = np.array([it.slack for it in tr.iterates]).reshape(t.size, -1)  # size = (T, m)
        est = [it.slack_estimate for it in tr.iterates]
        for i in range(lam.shape[1]):
            c = f"C{i}"
            axes[0].plot(t, lam[:, i], ls, marker=mk, color=c, label=f"{meth}: λ_{i + 1} "
                         f"({names[i]})")
            axes[2].plot(t, slack[:, i], ls, marker=mk, color=c,
                         label=f"{meth}: exact E h_{i + 1} ({names[i]})")
            te = [tt for tt, e in zip(t, est, strict=True) if e is not None]
            ve = [e[i] for e in est if e is not None]
            if te:
                axes[2].plot(te, ve, linestyle="none", marker=mk, mfc="none", color=c, ms=9,
                             label=f"{meth}: sampled estimate ({names[i]})")
            else:
                notes.append(f"{meth}: no sampled slack estimate")
        axes[1].plot(t, [it.objective for it in tr.iterates], ls, marker=mk,
                     color=f"C{m + k}", label=f"{meth}: J(π_t)")
    for i, v in enumerate(sol.lam):
        axes[0].axhline(v, color=f"C{i}", ls="--", lw=1,
                        label=f"exact λ*_{i + 1} = {v:.3g} ({names[i]})")
    if comparison.classes:
        for i, v in enumerate(comparison.classes[0].lam_p):
            axes[0].axhline(v, color=f"C{i}", ls=":", lw=1.4,
                            label=f"λ*_p,{i + 1} = {v:.3g} of the reference class (estimate)")
    else:
        notes.append("no class measured: λ*_p not drawn")
    axes[1].axhline(sol.primal_value, color="k", ls="--", lw=1,
                    label=f"exact P* = {sol.primal_value:.4g}")
    axes[2].axhline(0.0, color="k", ls="--", lw=1, label="E h = 0 (≥ 0: met)")
    axes[0].set(xlabel="policy step t", ylabel="λ_t  [reward per unit of utility]",
                title="multipliers λ_t of the pipeline")
    axes[1].set(xlabel="policy step t", ylabel="J(π_t) = E r − β KL  [reward units]",
                title="objective of each iterate (exact)")
    axes[2].set(xlabel="policy step t", ylabel="E h at π_t  [utility units]",
                title="constraint slack (exact filled, sampled hollow)")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=6.5)
        ax.grid(alpha=0.3)
    add_note(axes[2], list(dict.fromkeys(notes)))
    fig.suptitle("synthetic language: the pipeline's iterates ("
                 + ", ".join(comparison.traces) + ") against the exact answer", fontsize=11)
    return _finish(fig, path)


def plot_capacity_sweep(comparison: Any, path: str | Path | None = None):
    """Left: the exact dual ``D(lam)`` and each class's lower estimates of ``D_p(lam)`` (m = 1:
    against ``lam``; otherwise against ``||lam||_1``).  Right (log-log): for each class, the
    measured ``|D*_p - P*|``, ``||lam*_p - lam*||`` and ``D(lam*) - D_p(lam*)`` against its
    ``nu`` (filled) beside their bounds (hollow, same colour)."""
    from dualgap.dual import dual_value
    from dualgap.plots.figure import add_note, log_ticks

    notes: list[str] = []
    plt = _plt(path)
    pb, sol = comparison.task.problem, comparison.task.solution
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11.5, 4.3))
    classes = list(comparison.classes)
    top = max(float(np.abs(c.lams).sum(axis=1).max()) for c in classes) if classes else 1.0
    top = max(top, 2.0 * float(sol.lam.sum()), 1e-3)
    grid = np.linspace(0.0, 1.1 * top, 80)
    if pb.num_constraints == 1:
        ax0.plot(grid, [dual_value(pb, [g]) for g in grid], "k-", lw=1.5, label="D(lam) exact")
    else:
        direction = sol.lam / max(sol.lam.sum(), 1e-12)
        ax0.plot(grid, [dual_value(pb, g * direction) for g in grid], "k-", lw=1.5,
                 label="D along lam*")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, c in enumerate(classes):
        col = colors[k % len(colors)]
        x = c.lams[:, 0] if pb.num_constraints == 1 else np.abs(c.lams).sum(axis=1)
        order = np.argsort(x)
        ax0.plot(x[order], c.dual_p[order], "o--", color=col, ms=4,
                 label=f"D_p lower est. {c.arch.label()} (nu {c.nu:.2g})")
    ax0.axvline(float(sol.lam.sum()), color="k", ls=":", lw=1,
                label=("λ*" if pb.num_constraints == 1 else "||λ*||_1") + f" = {sol.lam.sum():.3g}")
    ax0.set(xlabel=("λ" if pb.num_constraints == 1 else "||λ||_1 along λ*")
            + "  [reward per unit of utility]", ylabel="dual value  [reward units]",
            title="dual D and lower estimates of the parametrized dual D_p")
    ax0.legend(fontsize=7)
    ax0.grid(alpha=0.3)
    kinds = (("Theorem 2 (upper)", "|D*_p - P*|", "o"), ("Lemma 4", "|lam*_p - lam*|", "s"),
             ("Lemma 3 at lam*", "D(lam*) - D_p(lam*)", "^"))
    for stmt, label, mk in kinds:
        nus, meas, bnds = [], [], []
        for c in classes:
            rows = [r for r in c.rows if r.statement == stmt]
            if not rows:
                notes.append(f"{stmt}: no row for {c.arch.label()} (not drawn)")
                continue
            nus.append(c.nu)
            meas.append(abs(rows[0].measured))
            bnds.append(rows[0].bound if rows[0].bound is not None else np.nan)
        if not nus:
            continue
        line = ax1.loglog(nus, np.maximum(meas, 1e-12), marker=mk, ls="none",
                          label=f"{label} measured")[0]
        bnds = np.asarray(bnds, dtype=float)
        bad = ~np.isfinite(bnds)
        if bad.any():
            notes.append(f"{stmt}: bound infinite or undefined for {int(bad.sum())} of "
                         f"{bnds.size} classes (not drawn)")
        ax1.loglog(nus, np.where(bad, np.nan, bnds), marker=mk, ls="none", mfc="none",
                   color=line.get_color(), label=f"{label} bound")
    ax1.set(xlabel="ν (distillation gap of the class; log scale)",
            ylabel="gap  (log scale)", title="measured gaps (filled) and bounds (hollow) "
            "against ν")
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3, which="both")
    if classes:
        log_ticks(ax1.xaxis)
    add_note(ax1, notes)
    fig.suptitle(f"synthetic language: the theory across {len(classes)} transformer "
                 "capacities", fontsize=11)
    return _finish(fig, path)


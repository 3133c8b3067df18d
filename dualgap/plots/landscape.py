"""The dual landscape ``D(lam)`` and the constraint slacks ``E_{pi_lam} h`` around ``lam*``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..dual import dual_oracle
from ..problem import AlignmentProblem
from ..solver import DualSolution
from .figure import add_note, finish, pyplot

__all__ = ["plot_dual_landscape"]


def _slice_grid(center: float, span: float, n: int) -> np.ndarray:
    return np.linspace(0.0, max(2.0 * center, center + span), n)


def plot_dual_landscape(
    problem: AlignmentProblem, solution: DualSolution, path: str | Path | None = None,
    n: int = 41, instance: str | None = None,
):
    """Two panels: ``D`` near ``lam*`` (contours for ``m = 2``, 1-D slices otherwise) and the
    slack ``E_rho E_{pi_lam} h_i`` along the slice through ``lam*`` in coordinate ``i``
    (it crosses zero at ``lam*_i`` when constraint ``i`` is active).  Each ``lam*_i`` line is in
    the colour of constraint ``i``.  ``instance`` names the instance in the title (default: its
    sizes).  Saved to ``path`` if given.
    """
    plt = pyplot(path)
    m = problem.num_constraints
    lam_star = solution.lam
    span = 1.0 + float(np.max(lam_star, initial=0.0))
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.6))
    ax_d, ax_s = axes
    names = problem.names or tuple(f"g{i + 1}" for i in range(m))
    if m == 2:
        g1, g2 = _slice_grid(lam_star[0], span, n), _slice_grid(lam_star[1], span, n)
        Z = np.array([[dual_oracle(problem, [a, b], order=0).value for a in g1] for b in g2])
        cs = ax_d.contourf(g1, g2, Z, levels=30, cmap="viridis")
        fig.colorbar(cs, ax=ax_d, label="D(λ)  [reward units]")
        ax_d.plot(*lam_star, "r*", ms=14, label=f"λ* = ({lam_star[0]:.3g}, {lam_star[1]:.3g})")
        ax_d.set_xlabel(f"λ_1 ({names[0]})  [reward per unit of {names[0]}]")
        ax_d.set_ylabel(f"λ_2 ({names[1]})  [reward per unit of {names[1]}]")
        ax_d.legend(loc="upper right")
        ax_d.set_title("dual function D(λ) (contours), minimum at λ*")
    for i in range(m):
        grid = _slice_grid(lam_star[i], span, n)
        vals, slacks = [], []
        for v in grid:
            lam = lam_star.copy()
            lam[i] = v
            ev = dual_oracle(problem, lam, order=1)
            vals.append(ev.value)
            slacks.append(ev.gradient[i])
        star = f"λ*_{i + 1} = {lam_star[i]:.3g} ({names[i]})"
        if m != 2:
            ax_d.plot(grid, vals, color=f"C{i}", label=f"D along λ_{i + 1} ({names[i]})")
            ax_d.axvline(lam_star[i], color=f"C{i}", ls=":", lw=1, label=star)
        ax_s.plot(grid, slacks, color=f"C{i}", label=f"E h_{i + 1} ({names[i]})")
        ax_s.axvline(lam_star[i], color=f"C{i}", ls=":", lw=1, label=star)
    if m != 2:
        ax_d.set_xlabel("λ_i, the others at λ*  [reward per unit of utility i]")
        ax_d.set_ylabel("D(λ)  [reward units]")
        ax_d.set_title("dual function along coordinate slices through λ*")
        if m:
            ax_d.legend(fontsize=8)
        else:
            add_note(ax_d, ["no constraints (m = 0): D is the constant P*"])
    ax_s.axhline(0.0, color="k", lw=0.8, label="E h = 0 (≥ 0: met)")
    ax_s.set_xlabel("λ_i, the others at λ*  [reward per unit of utility i]")
    ax_s.set_ylabel("slack E h_i at π_λ  [units of utility i]")
    ax_s.set_title("∂D/∂λ_i = E h_i at π_λ (zero at an active λ*_i)")
    ax_s.legend(fontsize=8)
    where = instance or (f"{problem.num_prompts} prompts × {problem.num_responses} responses, "
                         f"{m} constraint{'s' if m != 1 else ''}, β = {problem.beta:g}")
    fig.suptitle(f"Dual landscape of {where}\n"
                 f"exact solve: P* = {solution.primal_value:.6g}, D* = {solution.dual_value:.6g}, "
                 f"KKT residual {solution.kkt_residual:.1e}", fontsize=11)
    return finish(fig, path)

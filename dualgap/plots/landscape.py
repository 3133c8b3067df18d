"""The dual landscape ``D(lam)`` and the constraint slacks ``E_{pi_lam} h`` around ``lam*``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..dual import dual_oracle
from ..problem import AlignmentProblem
from ..solver import DualSolution
from .figure import finish, pyplot

__all__ = ["plot_dual_landscape"]


def _slice_grid(center: float, span: float, n: int) -> np.ndarray:
    return np.linspace(0.0, max(2.0 * center, center + span), n)


def plot_dual_landscape(
    problem: AlignmentProblem, solution: DualSolution, path: str | Path | None = None, n: int = 41
):
    """Two panels: ``D`` near ``lam*`` (contours for ``m = 2``, 1-D slices otherwise) and the
    slack ``E_rho E_{pi_lam} h_i`` along the slice through ``lam*`` in coordinate ``i``
    (it crosses zero at ``lam*_i`` when constraint ``i`` is active).  Saved to ``path`` if given.
    """
    plt = pyplot(path)
    m = problem.num_constraints
    lam_star = solution.lam
    span = 1.0 + float(np.max(lam_star, initial=0.0))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax_d, ax_s = axes
    names = problem.names or tuple(f"g{i + 1}" for i in range(m))
    if m == 2:
        g1, g2 = _slice_grid(lam_star[0], span, n), _slice_grid(lam_star[1], span, n)
        Z = np.array([[dual_oracle(problem, [a, b], order=0).value for a in g1] for b in g2])
        cs = ax_d.contourf(g1, g2, Z, levels=30, cmap="viridis")
        fig.colorbar(cs, ax=ax_d, label="D(λ)")
        ax_d.plot(*lam_star, "r*", ms=14, label=f"λ* = ({lam_star[0]:.3g}, {lam_star[1]:.3g})")
        ax_d.set_xlabel(f"λ_1 ({names[0]})")
        ax_d.set_ylabel(f"λ_2 ({names[1]})")
        ax_d.legend(loc="upper right")
        ax_d.set_title("dual function D(λ)")
    for i in range(m):
        grid = _slice_grid(lam_star[i], span, n)
        vals, slacks = [], []
        for v in grid:
            lam = lam_star.copy()
            lam[i] = v
            ev = dual_oracle(problem, lam, order=1)
            vals.append(ev.value)
            slacks.append(ev.gradient[i])
        if m != 2:
            ax_d.plot(grid, vals, label=f"λ_{i + 1} ({names[i]})")
            ax_d.axvline(lam_star[i], color=f"C{i}", ls=":", lw=1)
        ax_s.plot(grid, slacks, color=f"C{i}", label=f"{names[i]}: E h_{i + 1}")
        ax_s.axvline(lam_star[i], color=f"C{i}", ls=":", lw=1)
    if m != 2:
        ax_d.set_xlabel("λ_i (others at λ*)")
        ax_d.set_ylabel("D(λ)")
        ax_d.set_title("dual function along coordinate slices through λ*")
        if m:
            ax_d.legend()
    ax_s.axhline(0.0, color="k", lw=0.8)
    ax_s.set_xlabel("λ_i (others at λ*)")
    ax_s.set_ylabel("constraint slack at π_λ")
    ax_s.set_title("∂D/∂λ_i = E h_i at π_λ (zero at an active λ*_i)")
    if m:
        ax_s.legend()
    fig.suptitle(
        f"P* = {solution.primal_value:.6g}, D* = {solution.dual_value:.6g}, "
        f"KKT residual {solution.kkt_residual:.1e}"
    )
    return finish(fig, path)

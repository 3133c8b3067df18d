"""Figures (matplotlib, imported on first use).  One module per subject:

* ``landscape``: the dual landscape and constraint values along ``lam`` (core);
* ``gaps``: parametrization and optimality gaps against ``nu`` (theory);
* ``trajectories``: algorithm trajectories (``lam_t``, slacks, objective).

Each function takes an optional ``ax``/``path`` and returns the matplotlib ``Figure``.
"""

from __future__ import annotations

from .gaps import plot_gaps_vs_nu, plot_report_bounds
from .landscape import plot_dual_landscape
from .trajectories import plot_gap_vs_bound, plot_threshold_sweep, plot_trajectories

__all__ = ["plot_dual_landscape"]
__all__ += ["plot_trajectories", "plot_threshold_sweep", "plot_gap_vs_bound"]
__all__ += ["plot_gaps_vs_nu", "plot_report_bounds"]

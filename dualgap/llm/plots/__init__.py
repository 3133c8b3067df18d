"""Figures of the LLM half (numpy and matplotlib; matplotlib imported on first use).

* ``runs``: score histograms before/after, the ``lam`` trajectory, and the achieved
  improvement against the threshold across runs (``dualgap llm evaluate``);
* ``synthetic``: the synthetic comparison (:mod:`dualgap.llm.synthetic`): the pipeline's
  iterates beside the exact answer, and the gaps against ``nu`` across capacities.

The helpers every figure shares live in the core, :mod:`dualgap.plots.figure`.
"""

from __future__ import annotations

from .runs import plot_improvement_vs_threshold, plot_lam_trajectory, plot_score_histograms
from .synthetic import plot_capacity_sweep, plot_pipeline_vs_exact

__all__ = ["plot_score_histograms", "plot_lam_trajectory", "plot_improvement_vs_threshold",
           "plot_pipeline_vs_exact", "plot_capacity_sweep"]

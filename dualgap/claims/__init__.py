"""Every claim of the paper checked with counts, confidence intervals and counterexamples.

One module per claim family; the notebooks 08-10 and ``dualgap claims`` call the same
functions (docs/claims.md):

* :mod:`.theory_sweep`: Lemmas 1-5 and Theorems 1-4 over a seeded sweep of ``gap_report``
  (:func:`~.theory_sweep.classify_row` is the one place deciding a row's kind);
* :mod:`.stochastic`: the stochastic best-iterate theorem with ``nu > 0``;
* :mod:`.fronts`: Fig 1a (threshold tracking over seeds and ``K``) and Fig 1b (fronts);
* :mod:`.multi`: several constraints with ``nu > 0``;
* :mod:`.sample_size`: the one-shot multiplier against prompts ``N`` and samples ``K``;
* :mod:`.ledger`: all 14 rows; :mod:`.result`: the result object and the 95% interval.

Imports torch through the experiments (policy classes) only when they run.
"""

from __future__ import annotations

from .fronts import FrontsConfig, fig1a, fig1b
from .ledger import CLAIM_ORDER, Ledger, claims_ledger, quick_mode
from .multi import MultiConfig, multi_constraint
from .result import KINDS, ClaimResult, mean_ci
from .sample_size import SampleSizeConfig, one_shot_sample_size
from .stochastic import StochasticConfig, stochastic_best_iterate
from .theory_sweep import BY_CONSTRUCTION, InstanceSpec, classify_row, sweep_specs, theory_sweep

__all__ = [
    "ClaimResult", "KINDS", "mean_ci",
    "InstanceSpec", "sweep_specs", "classify_row", "BY_CONSTRUCTION", "theory_sweep",
    "StochasticConfig", "stochastic_best_iterate",
    "FrontsConfig", "fig1a", "fig1b",
    "MultiConfig", "multi_constraint",
    "SampleSizeConfig", "one_shot_sample_size",
    "Ledger", "claims_ledger", "quick_mode", "CLAIM_ORDER",
]

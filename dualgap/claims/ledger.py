"""The claims ledger: all 14 claims in one table (``dualgap claims``; docs/claims.md).

Rows: Lemmas 1-5 and Theorems 1-4 (a seeded sweep over :func:`dualgap.theory.gap_report`,
:mod:`.theory_sweep`), the stochastic best-iterate theorem (:mod:`.stochastic`), Fig 1a and
Fig 1b (:mod:`.fronts`), the multi-constraint behaviour (:mod:`.multi`) and the one-shot
sample size (:mod:`.sample_size`).  Columns: what was checked, on how many instances or seeds,
the counts of :data:`~dualgap.claims.result.KINDS`, and the notebook that tells the story.

``quick=True`` runs every experiment at its ``quick()`` size (the size the notebooks use when
``DUALGAP_QUICK=1``, the test suite's setting).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .result import KINDS, ClaimResult

__all__ = ["Ledger", "claims_ledger", "quick_mode", "CLAIM_ORDER", "FULL_INSTANCES",
           "QUICK_INSTANCES"]

CLAIM_ORDER = ("Lemma 1", "Lemma 2", "Lemma 3", "Lemma 4", "Lemma 5", "Theorem 1",
               "Theorem 2", "Theorem 3", "Theorem 4", "Stochastic theorem", "Fig 1a", "Fig 1b",
               "Multi-constraint", "One-shot sample size")
#: theory-sweep instances in full and quick mode
FULL_INSTANCES = 54
QUICK_INSTANCES = 6


def quick_mode() -> bool:
    """Whether ``DUALGAP_QUICK`` asks for the reduced sizes (``1``: yes; unset or ``0``: no)."""
    v = os.environ.get("DUALGAP_QUICK", "0")
    if v not in ("0", "1"):
        raise ValueError(f"DUALGAP_QUICK: must be 0 or 1, got {v!r}")
    return v == "1"


@dataclass
class Ledger:
    """The 14 rows, how long they took, and the mode."""

    rows: list[ClaimResult]
    quick: bool
    seconds: float
    timings: dict = field(default_factory=dict)

    def row(self, claim: str) -> ClaimResult:
        for r in self.rows:
            if r.claim == claim:
                return r
        raise ValueError(f"claim: no row {claim!r}; known: {[r.claim for r in self.rows]}")

    def to_dict(self) -> dict:
        return {"quick": self.quick, "seconds": self.seconds, "timings": self.timings,
                "rows": [r.to_dict() for r in self.rows]}

    def __str__(self) -> str:
        head = ("claim", "on") + tuple(k.replace("_", " ") for k in KINDS) + ("notebook",
                                                                               "checked")
        table = [head] + [(r.claim, str(r.instances)) + tuple(str(getattr(r, k)) for k in KINDS)
                          + (r.notebook, r.checked) for r in self.rows]
        widths = [max(len(t[i]) for t in table) for i in range(len(head) - 1)]
        lines = []
        for k, t in enumerate(table):
            lines.append("  ".join(c.ljust(w) for c, w in zip(t[:-1], widths, strict=True))
                         + "  " + t[-1])
            if k == 0:
                lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 7)
        saved = [c for r in self.rows for c in r.counterexamples]
        lines.append("")
        lines.append("counts: holds = informative checks that held; by construction = follows "
                     "from how the estimates are made (not evidence); not met = the assumption,"
                     " as measured, fails; search failure = rests on a lam*_p proven not a "
                     "minimizer of D_p; undecided = a 95% CI contains 0; inconclusive = "
                     "passed only through a widened tolerance (docs/claims.md)")
        lines.append(f"counterexamples saved: {len(saved)}" + (f" ({saved[0]} ...)" if saved
                                                                else ""))
        lines.append(f"({'quick' if self.quick else 'full'} mode, {self.seconds:.1f} s)")
        return "\n".join(lines)


def claims_ledger(*, quick: bool = False, instances: int | None = None, seed: int = 0,
                  save_dir: str | Path | None = None, progress: bool = False) -> Ledger:
    """Run every claim experiment and return the :class:`Ledger` (module docstring).

    ``instances``: theory-sweep size (default :data:`FULL_INSTANCES`, quick
    :data:`QUICK_INSTANCES`); ``seed``: the sweep's seed; ``save_dir``: where counterexamples
    go (``.npz`` + ``.json``; None: not saved).
    """
    from .fronts import FrontsConfig, fig1a, fig1b
    from .multi import MultiConfig, multi_constraint
    from .sample_size import SampleSizeConfig, one_shot_sample_size
    from .stochastic import StochasticConfig, stochastic_best_iterate
    from .theory_sweep import sweep_specs, theory_sweep

    n = instances if instances is not None else (QUICK_INSTANCES if quick else FULL_INSTANCES)
    t0 = time.perf_counter()
    timings = {}
    rows: dict[str, ClaimResult] = {}

    from tqdm.auto import tqdm

    # the six experiments, each with its own bar below this one (total and ETA per experiment)
    overall = tqdm(total=6, desc="claims (experiments)", unit="experiment", disable=not progress)

    def timed(name, fn):
        overall.set_postfix_str(name)
        t = time.perf_counter()
        out = fn()
        timings[name] = time.perf_counter() - t
        overall.update(1)
        return out

    rows.update(timed("theory sweep", lambda: theory_sweep(
        sweep_specs(n, seed=seed, quick=quick), save_dir=save_dir, cvxpy_check=not quick,
        progress=progress)))
    pick = (lambda c: c.quick()) if quick else (lambda c: c())
    rows["Stochastic theorem"] = timed("stochastic", lambda: stochastic_best_iterate(
        pick(StochasticConfig), progress=progress))
    fronts = pick(FrontsConfig)
    rows["Fig 1a"] = timed("Fig 1a", lambda: fig1a(fronts, progress=progress))
    rows["Fig 1b"] = timed("Fig 1b", lambda: fig1b(fronts, progress=progress))
    rows["Multi-constraint"] = timed("multi", lambda: multi_constraint(pick(MultiConfig),
                                                                      progress=progress))
    rows["One-shot sample size"] = timed("sample size", lambda: one_shot_sample_size(
        pick(SampleSizeConfig), progress=progress))
    overall.close()
    return Ledger([rows[c] for c in CLAIM_ORDER], quick, time.perf_counter() - t0, timings)

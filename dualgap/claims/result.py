"""The result object every claim experiment returns, and the 95% confidence interval they share.

A :class:`ClaimResult` counts checks by kind (docs/claims.md):

* ``holds``: informative checks that held (they could have failed with the estimates used);
* ``by_construction``: checks that follow from how the estimates are made (not evidence);
* ``not_met``: the claim's assumption, as measured, is not met (the claim says nothing);
* ``failed``: informative checks that failed (``counterexamples`` lists the saved instances);
* ``search_failure``: checks resting on an estimate proven wrong (``lam*_p`` with
  ``D_p(lam*_p) > D* >= D*_p`` found by a second search: not a minimizer of ``D_p``);
* ``undecided``: statistical checks whose 95% interval does not decide (it contains 0);
* ``inconclusive``: checks that passed only through a widened tolerance (counted apart, never
  as holds).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["ClaimResult", "KINDS", "mean_ci"]

#: the verdict kinds, in the ledger's column order
KINDS = ("holds", "by_construction", "not_met", "failed", "search_failure", "undecided",
         "inconclusive")


def mean_ci(values: object, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lower, upper)``: Student-t interval ``mean +- t_{n-1} s / sqrt(n)`` of ``values``.

    One value gives an unbounded interval (``-inf, inf``); NaNs are an error, not dropped.
    """
    from scipy import stats

    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("values: need at least one value")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"values: must be finite, got {v.tolist()}")
    if not 0 < level < 1:
        raise ValueError(f"level: must be in (0, 1), got {level!r}")
    mean = float(v.mean())
    if v.size == 1:
        return mean, -math.inf, math.inf
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return mean, mean - half, mean + half


@dataclass
class ClaimResult:
    """One row of the claims ledger (``dualgap claims``).

    Attributes:
        claim: the statement (``"Lemma 4"``, ``"Fig 1a"``, ...).
        checked: what was checked, in a few words.
        instances: instances or seeds it was checked on.
        holds, by_construction, not_met, failed, search_failure, undecided, inconclusive:
            the counts (module
            docstring).
        notebook: the notebook that tells the story.
        counterexamples: saved ``.npz`` instances (:meth:`AlignmentProblem.load` reads them).
        details: the measured figures (JSON-ready), e.g. CIs and per-seed verdicts.
    """

    claim: str
    checked: str
    instances: int
    holds: int = 0
    by_construction: int = 0
    not_met: int = 0
    failed: int = 0
    search_failure: int = 0
    undecided: int = 0
    inconclusive: int = 0
    notebook: str = ""
    counterexamples: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def add(self, kind: str, n: int = 1) -> None:
        """Count ``n`` checks of ``kind`` (one of :data:`KINDS`)."""
        if kind not in KINDS:
            raise ValueError(f"kind: must be one of {KINDS}, got {kind!r}")
        setattr(self, kind, getattr(self, kind) + n)

    @property
    def counts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in KINDS}

    def to_dict(self) -> dict:
        return asdict(self)

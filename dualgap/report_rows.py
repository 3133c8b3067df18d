"""The rows and the table of :func:`dualgap.report.gap_report`: what each row is (its kind).

A :class:`GapRow` checks ``lower <= measured <= bound`` and says what kind of evidence it is
(docs/theory.md, the `kind` column):

* ``informative``: it could fail with the estimates used (``sides`` says which side each
  estimate errs on);
* ``by construction``: it follows from how the estimates are made (``why`` says how);
* ``assumption not met``: the statement's assumption, measured, fails (the row shows it);
* ``failed``: the bound fails beyond float rounding (``witness`` holds the counterexample's
  ``lam`` values; :meth:`GapReport.save_failures` writes the instance, reloadable);
* ``search failure``: a local search's value (a lower estimate of ``D_p``) misses a bound that a
  better estimate of the same quantity meets: the search's failure, not the bound's;
* ``undecided: <reason>``: the estimates cannot decide the verdict (``holds`` is None);
* ``measured``: a quantity with no bound to check (Theorems 3-4, cvxpy's cross-check).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["GapRow", "GapReport", "KINDS", "kind_of"]

#: the kinds a row can have (``undecided`` rows carry their reason after a colon)
KINDS = ("informative", "by construction", "assumption not met", "failed", "search failure",
         "undecided", "measured")


def kind_of(row: GapRow) -> str:
    """The row's kind without the reason (``"undecided: ..."`` -> ``"undecided"``)."""
    return row.kind.split(":", 1)[0]


@dataclass
class GapRow:
    """One statement checked: ``lower <= measured <= bound`` (either side may be None).

    ``holds`` is None when there is nothing to compare (measurement-only rows, an assumption
    that fails, or a verdict the estimates cannot decide).  ``kind`` says what the row is (see
    the module); ``sides`` how each estimate errs; ``why`` why a by-construction row holds;
    ``witness`` the multipliers (and measured assumption values) of the row's instance.
    """

    statement: str
    quantity: str
    measured: float
    bound: float | None = None
    lower: float | None = None
    holds: bool | None = None
    sides: str = ""
    note: str = ""
    kind: str = "informative"
    why: str = ""
    witness: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if kind_of(self) not in KINDS:
            raise ValueError(f"kind: must be one of {KINDS}, got {self.kind!r}")
        if self.holds is False:
            self.kind = "failed" if kind_of(self) != "search failure" else self.kind
        if kind_of(self) == "by construction" and not self.why:
            raise ValueError(f"why: a by-construction row must say why ({self.statement})")

    def to_dict(self) -> dict:
        return {k: _json_num(v) for k, v in self.__dict__.items()}


def _json_num(v: object) -> object:
    if isinstance(v, dict):
        return {k: _json_num(x) for k, x in v.items()}
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(v, np.ndarray):
        return [_json_num(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_json_num(x) for x in v]
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


@dataclass
class GapReport:
    """Everything :func:`gap_report` measured (``str()`` is a table; :meth:`to_json`)."""

    problem: str
    policy_class: str
    quantities: dict
    rows: list[GapRow]
    seconds: float
    notes: list[str] = field(default_factory=list)
    #: every :class:`Target` (label, ``lam``, ``D_p`` lower estimate, ``nu``) in report order
    targets: list = field(default_factory=list, repr=False)
    #: the :class:`~dualgap.AlignmentProblem` measured (for :meth:`save_failures`)
    instance: object = field(default=None, repr=False)

    @property
    def all_hold(self) -> bool:
        """Whether every checkable row holds."""
        return all(r.holds is not False for r in self.rows)

    def failures(self) -> list[GapRow]:
        return [r for r in self.rows if r.holds is False]

    def counts(self) -> dict[str, int]:
        """How many rows of each kind (every kind of :data:`KINDS`, zeros included)."""
        out = dict.fromkeys(KINDS, 0)
        for r in self.rows:
            out[kind_of(r)] += 1
        return out

    def save_failures(self, folder: str | Path, stem: str = "instance") -> list[Path]:
        """Write the instance (``<stem>.npz``, :meth:`AlignmentProblem.load` reads it back)
        and the failed rows with their witnesses (``<stem>.failed.json``) into ``folder``,
        if any row failed; returns the paths written."""
        bad = [r for r in self.rows if kind_of(r) == "failed"]
        if not bad:
            return []
        if self.instance is None:
            raise ValueError("instance: this report holds no problem to save")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        npz, js = folder / f"{stem}.npz", folder / f"{stem}.failed.json"
        self.instance.save(npz)  # type: ignore[attr-defined]
        js.write_text(json.dumps({"problem": self.problem, "policy_class": self.policy_class,
                                  "rows": [r.to_dict() for r in bad]}, indent=2))
        return [npz, js]

    def row(self, statement: str, quantity: str | None = None) -> GapRow:
        """The row named ``statement`` (and ``quantity`` when several rows share the name)."""
        hits = [r for r in self.rows if r.statement == statement
                and (quantity is None or r.quantity == quantity)]
        if not hits:
            names = sorted({r.statement for r in self.rows})
            raise ValueError(f"statement: no row {statement!r} (quantity {quantity!r}); "
                             f"known: {names}")
        return hits[0]

    def value(self, statement: str, field: str = "measured", quantity: str | None = None):
        """``row(statement, quantity).<field>`` (``measured``, ``bound``, ``lower``, ``holds``,
        ``kind``)."""
        if field not in ("measured", "bound", "lower", "holds", "kind"):
            raise ValueError(f"field: must be measured, bound, lower, holds or kind, got "
                             f"{field!r}")
        v = getattr(self.row(statement, quantity), field)
        return math.nan if v is None and field != "holds" else v

    def to_dict(self) -> dict:
        return {"problem": self.problem, "policy_class": self.policy_class,
                "quantities": {k: _json_num(v) for k, v in self.quantities.items()},
                "rows": [r.to_dict() for r in self.rows], "counts": self.counts(),
                "seconds": self.seconds, "notes": list(self.notes), "all_hold": self.all_hold,
                "targets": [{"label": t.label, "lam": _json_num(t.lam), "D_p": _json_num(t.d_p),
                             "nu": _json_num(t.nu)} for t in self.targets]}

    def to_json(self, indent: int | None = 2) -> str:  # noqa: D102
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        def f(v: object) -> str:
            if v is None:
                return ""
            if isinstance(v, np.ndarray):
                return np.array2string(v, precision=6, separator=", ")
            if isinstance(v, bool):
                return str(v)
            if isinstance(v, (float, np.floating)):
                return f"{float(v):.6g}"
            return str(v)

        lines = [f"{self.problem}", f"policy class: {self.policy_class}", ""]
        qw = max(len(k) for k in self.quantities)
        for k, v in self.quantities.items():
            lines.append(f"  {k.ljust(qw)}  {f(v)}")
        lines.append("")
        head = ("statement", "quantity", "lower", "measured", "bound", "holds", "kind")
        table = [head] + [(r.statement, r.quantity, f(r.lower), f(r.measured), f(r.bound),
                           {True: "yes", False: "NO", None: "-"}[r.holds], kind_of(r))
                          for r in self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        for k, row in enumerate(table):
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("counts: " + ", ".join(f"{k} {n}" for k, n in self.counts().items() if n))
        lines.append("")
        lines.append("how each estimate errs, why a row holds by construction (and notes):")
        seen: dict[str, list[str]] = {}
        for r in self.rows:
            if r.sides:
                seen.setdefault(r.sides, []).append(r.statement)
            if r.why:
                seen.setdefault("by construction: " + r.why, []).append(r.statement)
        for text, who in seen.items():
            names = who[0] if len(who) == 1 else f"{who[0]} .. {who[-1]} ({len(who)} rows)"
            lines.append(f"  {names}: {text}")
        for r in self.rows:
            if ":" in r.kind:
                lines.append(f"  {r.statement}: {r.kind}")
            if r.note:
                lines.append(f"  {r.statement}: {r.note}")
        for n in self.notes:
            lines.append(f"note: {n}")
        lines.append(f"({self.seconds:.1f} s)")
        return "\n".join(lines)

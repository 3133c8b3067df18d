"""Tests of dualgap/report_rows.py: a row's kind is checked when it is made, a report's JSON is
standard JSON (no NaN/Infinity), the table and the counts list every row, lookups name what is
known, and failures are saved reloadably (the rows of real reports: tests/test_report.py)."""

import json
import math

import numpy as np
import pytest

from dualgap.instances import random_problem
from dualgap.problem import AlignmentProblem
from dualgap.report_rows import KINDS, GapReport, GapRow, kind_of


def test_a_row_kind_is_checked_when_the_row_is_made():
    with pytest.raises(ValueError, match="kind"):
        GapRow("x", "y", 0.0, kind="maybe")
    with pytest.raises(ValueError, match="why"):
        GapRow("x", "y", 0.0, kind="by construction")
    assert GapRow("x", "y", 1.0, bound=0.0, holds=False).kind == "failed"


def test_a_failed_search_stays_a_search_failure_and_undecided_keeps_its_reason():
    row = GapRow("Lemma 3", "D_p", 1.0, bound=0.0, holds=False, kind="search failure")
    assert row.kind == "search failure"
    row = GapRow("Theorem 1 (upper)", "P*_p", 1.0, kind="undecided: A5 not decided")
    assert kind_of(row) == "undecided" and row.kind == "undecided: A5 not decided"


def _report(problem=None):
    rows = [
        GapRow("Lemma 1", "D_p - D", -0.5, bound=0.0, holds=True, sides="D_p from below"),
        GapRow("Lemma 2", "gap", 0.25, bound=0.5, holds=True, kind="by construction",
               why="the cut is a lower bound", witness={"lam": np.array([1.0, 2.0])}),
        GapRow("Lemma 4", "||lam*_p - lam*||", 2.0, bound=1.5, holds=False,
               witness={"lam*_p": np.array([0.5]), "mu": np.float64(np.inf)}),
        GapRow("Theorem 3", "violation", np.nan, kind="measured", note="slope only"),
    ]
    quantities = {"nu": np.float64(1e-3), "lam*": np.array([1.0, 0.0]), "P*_p": -math.inf,
                  "box certified": np.bool_(True), "starts": np.int64(2)}
    return GapReport("instance X", "LogLinearPolicy(d=3)", quantities, rows, 1.25,
                     notes=["a note"], instance=problem)


def test_json_is_standard_json_with_nan_as_null_and_infinities_as_strings():
    data = json.loads(_report().to_json(), parse_constant=lambda c: pytest.fail(c))
    assert data["quantities"] == {"nu": 1e-3, "lam*": [1.0, 0.0], "P*_p": "-inf",
                                  "box certified": True, "starts": 2}
    lemma4 = data["rows"][2]
    assert lemma4["kind"] == "failed" and lemma4["witness"] == {"lam*_p": [0.5], "mu": "inf"}
    assert data["rows"][3]["measured"] is None
    assert data["counts"] == {**dict.fromkeys(KINDS, 0), "informative": 1,
                              "by construction": 1, "failed": 1, "measured": 1}
    assert data["all_hold"] is False and data["notes"] == ["a note"]


def test_the_table_lists_every_row_its_verdict_and_what_each_estimate_does():
    rep = _report()
    text = str(rep)
    lines = text.splitlines()
    assert lines[:2] == ["instance X", "policy class: LogLinearPolicy(d=3)"]
    table = {ln.split()[0] + " " + ln.split()[1]: ln for ln in lines
             if ln.startswith(("Lemma", "Theorem")) and "  " in ln}
    assert table["Lemma 4"].split()[-2:] == ["NO", "failed"]
    assert table["Theorem 3"].split()[-2:] == ["-", "measured"]
    assert "counts: informative 1, by construction 1, failed 1, measured 1" in lines
    assert "  Lemma 1: D_p from below" in lines
    assert "  Lemma 2: by construction: the cut is a lower bound" in lines
    assert "  Theorem 3: slope only" in lines and "note: a note" in lines
    assert lines[-1] == "(1.2 s)"
    assert not rep.all_hold and [r.statement for r in rep.failures()] == ["Lemma 4"]


def test_lookups_name_the_known_statements_and_fields():
    rep = _report()
    assert rep.row("Lemma 2").measured == 0.25
    assert rep.value("Lemma 4", "bound") == 1.5
    assert math.isnan(rep.value("Lemma 1", "lower"))  # no lower side: nan, not None
    assert rep.value("Theorem 3", "holds") is None
    with pytest.raises(ValueError, match=r"statement: no row 'Lemma 9'.*known: \['Lemma 1'"):
        rep.row("Lemma 9")
    with pytest.raises(ValueError, match="field: must be measured, bound, lower, holds or kind"):
        rep.value("Lemma 1", "why")


def test_failures_are_saved_as_a_reloadable_instance_and_their_rows(tmp_path):
    p = random_problem(3, 3, 4, 1, 0.5)
    paths = _report(p).save_failures(tmp_path / "cx", stem="case")
    assert [q.name for q in paths] == ["case.npz", "case.failed.json"]
    back = AlignmentProblem.load(paths[0])
    np.testing.assert_array_equal(back.utilities, p.utilities)
    saved = json.loads(paths[1].read_text())
    assert [r["statement"] for r in saved["rows"]] == ["Lemma 4"]
    with pytest.raises(ValueError, match="instance: this report holds no problem"):
        _report(None).save_failures(tmp_path / "none")
    ok = GapReport("p", "c", {"nu": 0.0}, [GapRow("Lemma 1", "q", 0.0, holds=True)], 0.0)
    assert ok.save_failures(tmp_path / "nothing") == [] and not (tmp_path / "nothing").exists()

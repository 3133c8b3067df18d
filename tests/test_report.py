"""The gap report (dualgap.report): every statement checked on classes where the answer is known."""

import json
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dualgap.instances import random_problem
from dualgap.policies import LogLinearPolicy, TabularPolicy, problem_features
from dualgap.report import gap_report
from dualgap.testing import problems


def test_tabular_report_reproduces_the_exact_solution():
    p = random_problem(0, 6, 8, 2, 0.5)
    rep = gap_report(p, TabularPolicy(p))
    q = rep.quantities
    assert q["nu"] < 1e-10
    assert q["D*_p (point estimate)"] == pytest.approx(q["D*"], abs=1e-9)
    assert q["P*_p (lower estimate)"] == pytest.approx(q["P*"], abs=1e-9)
    assert q["P* (cvxpy)"] == pytest.approx(q["P*"], abs=1e-6)
    np.testing.assert_allclose(q["lam*_p"], q["lam*"], atol=1e-7)
    assert rep.all_hold, [r.statement for r in rep.failures()]
    back = json.loads(rep.to_json())
    assert back["quantities"]["nu"] == pytest.approx(q["nu"])
    assert {r["statement"] for r in back["rows"]} >= {"Lemma 4", "Lemma 5", "Theorem 2 (upper)"}
    assert "Lemma 4" in str(rep)


@settings(max_examples=5)
@given(problems(min_prompts=2, max_prompts=4, min_responses=3, max_responses=6,
                min_constraints=1, max_constraints=2, margin=0.2, restrict_support=False),
       st.floats(0.002, 0.03), st.integers(0, 100))
def test_theorems_hold_where_their_assumption_holds(problem, noise, seed):
    """Theorems 1-2 and Lemmas 3-5 for log-linear classes near pi_lam, on instances where the
    feasibility assumption of Theorem 1 is *checked* to hold (a theta with margin > M nu was
    found, and lam*_nu exists).  Estimates as in gap_report (the harder side where one
    exists; nu an upper estimate, the easier side, stated in each row).  A row may be
    undecided (holds None) only with its reason in its kind; none may fail."""
    cls = LogLinearPolicy(problem, problem_features(problem, noise=noise, seed=seed))
    rep = gap_report(problem, cls, cvxpy_check=False, grid=(0.0, 2.0))
    q = rep.quantities
    assume(bool(q["Theorem 1 assumption (margin > M nu)"]))
    assume(not (isinstance(q["lam*_nu"], float) and math.isnan(q["lam*_nu"])))
    failures = [(r.statement, r.measured, r.lower, r.bound) for r in rep.failures()]
    assert not failures, failures
    by_name = {r.statement: r for r in rep.rows}
    assert by_name["Lemma 4 (segment)"].holds
    assert by_name["Lemma 5"].holds or by_name["Lemma 5"].kind == "assumption not met"
    # A5 measured: met (certified), not met (a point below mu*_D), or undecided in between
    assert by_name["Lemma 4"].holds or by_name["Lemma 4"].kind in (
        "assumption not met", "undecided: A5 not decided")
    for name in ("Theorem 1 (upper)", "Theorem 2 (upper)"):
        row = by_name[name]
        assert row.holds or row.kind.startswith("undecided: "), (name, row)
        assert "inconclusive" not in row.note


def test_report_knobs_and_targets():
    """The cost knobs of gap_report: no fits, searches only where the bundle did not look, no
    primal stages; every target is listed with its lam, a D_p lower estimate <= D(lam) and a
    nu witnessed by the Lagrangian maximizers alone (the tabular class contains every pi_lam, so
    that nu is ~0); bad knobs are rejected with the field's name."""
    from dualgap import dual_value
    from dualgap.instances import random_problem

    p = random_problem(2, 3, 4, 1)
    cls = TabularPolicy(p)
    rep = gap_report(p, cls, cvxpy_check=False, grid=(0.5,), fit_steps=0, search="new",
                     primal_options={"newton_steps": 0, "bisections": 0, "penalty_rounds": 0},
                     dual_options={"init_scales": (0.5, 1.0)})
    labels = [t.label for t in rep.targets]
    assert labels[:3] == ["0.5 lam*", "lam*", "lam*_p"]
    for t in rep.targets:
        assert t.d_p <= dual_value(p, t.lam) + 1e-12 and t.nu < 1e-6
    assert rep.all_hold and rep.to_dict()["targets"][0]["label"] == "0.5 lam*"
    with pytest.raises(ValueError, match="search"):
        gap_report(p, cls, search="some")
    with pytest.raises(ValueError, match="fit_steps"):
        gap_report(p, cls, fit_steps=-1)


def test_lemma4_counterexample_without_a5_is_pinned(tmp_path):
    """The issue-9 instance: A5 fails badly (mu_seg on [lam*, lam*_p] is ~0.0034 against
    mu*_D ~11.7) and the paper's Lemma 4 bound fails (distance 1.73 above ~1.5); the row says
    "assumption not met", and the segment form, with mu_seg, holds."""
    from dualgap import AlignmentProblem
    from dualgap.report import gap_sweep, sweep_counts

    p = random_problem(4, 2, 6, 1, 0.05, margin=0.05, tightness=0.6816)
    cls = LogLinearPolicy(p, problem_features(p, noise=3, seed=4))
    rep = gap_report(p, cls, cvxpy_check=False)
    q = rep.quantities
    assert float(q["lam*"][0]) == pytest.approx(0.616, abs=2e-3)
    assert float(q["lam*_p"][0]) == pytest.approx(2.345, abs=2e-2)
    assert q["mu*_D"] == pytest.approx(11.7, abs=0.1)
    assert 0 < q["mu_seg"] < 0.01 and q["A5 met (mu_seg >= mu*_D)"] is False
    paper, seg = rep.row("Lemma 4"), rep.row("Lemma 4 (segment)")
    assert paper.kind == "assumption not met" and paper.holds is None
    assert paper.measured == pytest.approx(1.73, abs=0.01) and paper.measured > paper.bound
    assert seg.kind == "informative" and seg.holds is True and seg.bound > seg.measured
    assert paper.witness["mu_seg"] == pytest.approx(q["mu_seg"])
    assert rep.row("Lemma 3 at lam*").witness["theta"].size == cls.num_params
    counts = rep.counts()
    assert counts["assumption not met"] >= 1 and counts["failed"] == 0
    assert sum(counts.values()) == len(rep.rows)
    text = str(rep)
    assert [ln for ln in text.splitlines() if ln.startswith("statement")][0].endswith("kind")
    assert "assumption not met" in text and "inconclusive" not in text
    assert json.loads(rep.to_json())["counts"] == counts
    # a sweep aggregates the kinds per statement; nothing failed, so nothing is saved
    reps = gap_sweep(p, [cls], progress=False, failed_dir=str(tmp_path / "failed"),
                     cvxpy_check=False)
    agg = sweep_counts(reps)
    assert agg["Lemma 4"]["assumption not met"] == 1 and agg["Lemma 3"]["by construction"] >= 6
    assert not (tmp_path / "failed").exists()
    # a failed row writes its instance, reloadable
    paper.kind, paper.holds = "failed", False
    paths = rep.save_failures(tmp_path / "failed", "ce")
    back = AlignmentProblem.load(paths[0])
    np.testing.assert_allclose(back.utilities, p.utilities)
    assert json.loads(paths[1].read_text())["rows"][0]["statement"] == "Lemma 4"


def test_every_row_has_a_kind_and_by_construction_rows_say_why():
    from dualgap.report import KINDS, kind_of

    p = random_problem(1, 3, 4, 2, 0.5)
    rep = gap_report(p, LogLinearPolicy(p, problem_features(p, noise=0.5, seed=1)),
                     cvxpy_check=False, grid=(0.0,))
    for r in rep.rows:
        assert kind_of(r) in KINDS
        assert kind_of(r) != "by construction" or r.why, r
        assert (r.holds is None) == (kind_of(r) in ("assumption not met", "undecided",
                                                    "measured", "search failure")), r
    kinds = {r.statement.split(" at ")[0]: r.kind for r in rep.rows}
    assert kinds["Lemma 3"] == "by construction" and kinds["Lemma 1 (smooth)"] == "by construction"
    assert kinds["Lemma 3 (cold search)"] in ("informative", "failed", "search failure")

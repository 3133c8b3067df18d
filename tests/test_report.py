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
    inconclusive (holds None) only when its excess is within the estimates' stated
    resolution; none may fail."""
    cls = LogLinearPolicy(problem, problem_features(problem, noise=noise, seed=seed))
    rep = gap_report(problem, cls, cvxpy_check=False, grid=(0.0, 2.0))
    q = rep.quantities
    assume(bool(q["Theorem 1 assumption (margin > M nu)"]))
    assume(not (isinstance(q["lam*_nu"], float) and math.isnan(q["lam*_nu"])))
    failures = [(r.statement, r.measured, r.lower, r.bound) for r in rep.failures()]
    assert not failures, failures
    by_name = {r.statement: r for r in rep.rows}
    assert by_name["Lemma 4"].holds and by_name["Lemma 5"].holds
    for name in ("Theorem 1 (upper)", "Theorem 2 (upper)"):
        row = by_name[name]
        assert row.holds or row.note.startswith("inconclusive"), (name, row)


def test_report_command(tmp_path, capsys):
    from dualgap.cli import main

    p = random_problem(2, 4, 5, 2, 0.5)
    path = tmp_path / "inst.npz"
    p.save(path)
    rc = main(["report", str(path), "--policy", "loglinear", "--feature-noise", "0.05",
               "--no-cvxpy", "--json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["policy_class"].startswith("LogLinearPolicy")
    assert data["quantities"]["nu"] > 0
    rc = main(["report", str(tmp_path / "missing.npz")])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err


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

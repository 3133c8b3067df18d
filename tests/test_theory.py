"""The constants and statements of SPEC §2 (dualgap.theory), and ``dualgap report``."""

import json
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dualgap import dual_gradient, dual_hessian, solve, solve_primal_cvxpy
from dualgap.instances import random_problem
from dualgap.policies import LogLinearPolicy, TabularPolicy, problem_features
from dualgap.report import gap_report
from dualgap.testing import multipliers, problems
from dualgap.theory import (
    dual_curvature,
    dual_descent_bound,
    fit_slope,
    gap_constant,
    optimality_gaps,
    smoothness_bound,
    tightened_multiplier,
)


@settings(max_examples=30)
@given(problems(max_prompts=5, max_responses=8, min_constraints=1, max_constraints=3),
       st.data())
def test_smoothness_bound_dominates_the_hessian(problem, data):
    """Lemma 1: lambda_max(hess D(lam)) <= L_D at random lam (hess from the core, exact)."""
    lam = data.draw(multipliers(problem.num_constraints, 20.0))
    L_D = smoothness_bound(problem)
    top = np.linalg.eigvalsh(dual_hessian(problem, lam))[-1]
    assert top <= L_D * (1 + 1e-12) + 1e-15
    M, m = problem.score_bound, problem.num_constraints
    assert L_D <= m * M * M / problem.beta * (1 + 1e-12)


def test_smoothness_bound_is_attained_by_a_two_point_prompt():
    """Closed form: one prompt, two responses with g = (0, d): Var <= d^2 / 4, equality at
    the 50/50 policy, which pi_lam reaches for the lam that equalizes the two logits."""
    ref = np.array([[0.5, 0.5]])
    r = np.array([[0.0, 0.0]])
    g = np.array([[[0.0, 2.0]]])
    from dualgap import AlignmentProblem

    p = AlignmentProblem(r, g, [-1.0], 0.5, ref, relative=False)
    assert smoothness_bound(p) == pytest.approx(4.0 / (4 * 0.5))
    assert dual_hessian(p, [0.0])[0, 0] == pytest.approx(smoothness_bound(p))


def test_dual_curvature_against_finite_differences_of_the_gradient():
    p = random_problem(3, 5, 6, 2, 0.4)
    lam = solve(p).lam
    h = 1e-6
    H = np.column_stack([(dual_gradient(p, lam + h * e) - dual_gradient(p, lam - h * e)) / (2 * h)
                         for e in np.eye(2)])
    assert dual_curvature(p) == pytest.approx(np.linalg.eigvalsh((H + H.T) / 2)[0], rel=1e-6)


def test_tightened_multiplier_against_cvxpy():
    """lam*_nu = the multiplier of the problem tightened by M nu (cvxpy's constraint duals)."""
    p = random_problem(4, 5, 6, 2, 0.5, margin=0.2)
    nu = 0.01
    t = tightened_multiplier(p, nu)
    assert t.feasible and t.eps == pytest.approx(p.score_bound * nu)
    ref = solve_primal_cvxpy(p.tightened(p.score_bound * nu))
    np.testing.assert_allclose(t.lam, ref.lam, atol=1e-5)
    assert np.all(t.lam >= solve(p).lam - 1e-9)  # tightening never lowers these multipliers
    assert not tightened_multiplier(p, 100.0).feasible


def test_gap_constant_and_validation():
    p = random_problem(5, 3, 4, 2, 0.7)
    M = p.score_bound
    assert gap_constant(p, [1.0, 2.0], 0.1) == pytest.approx((M + 0.7 + 3 * M) * 0.1)
    with pytest.raises(ValueError, match="nu"):
        gap_constant(p, [0.0, 0.0], -1.0)
    with pytest.raises(ValueError, match="eta"):
        dual_descent_bound(-1.0, 1.0, 0.0)
    assert dual_descent_bound(0.1, 2.0, 0.05) == pytest.approx(0.1 * 4 / 2 + 0.05)


def test_fit_slope_recovers_a_power_law():
    nu = np.logspace(-4, -1, 7)
    slope, a = fit_slope(nu, 3.0 * nu**1.5)
    assert slope == pytest.approx(1.5, abs=1e-12) and a == pytest.approx(math.log(3.0))
    assert math.isnan(fit_slope([1e-3], [1e-3])[0])
    with pytest.raises(ValueError, match="gap: shape"):
        fit_slope(nu, nu[:3])


def test_optimality_gaps_of_the_optimum_and_of_the_reference():
    p = random_problem(6, 4, 6, 2, 0.5, tightness=1.0)
    sol = solve(p)
    at_opt = optimality_gaps(p, sol.policy, sol)
    assert abs(at_opt.reward_gap) < 1e-12 and at_opt.violation < 1e-9
    at_ref = optimality_gaps(p, p.reference, sol)
    assert at_ref.violation > 0  # relative thresholds b > 0: pi_ref violates them
    np.testing.assert_allclose(at_ref.slack, -p.thresholds, atol=1e-12)


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
    rc = main(["report", str(path), "--policy", "loglinear", "--features-noise", "0.05",
               "--no-cvxpy", "--json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["policy_class"].startswith("LogLinearPolicy")
    assert data["quantities"]["nu"] > 0
    rc = main(["report", str(tmp_path / "missing.npz")])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err

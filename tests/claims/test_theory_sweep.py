"""The theory sweep: its coverage, the row classifier, saved counterexamples."""

import json

import numpy as np
import pytest

from dualgap.claims.result import ClaimResult
from dualgap.claims.theory_sweep import (
    BY_CONSTRUCTION,
    InstanceSpec,
    _save,
    claim_of,
    classify_row,
    sweep_specs,
    theory_sweep,
)
from dualgap.problem import AlignmentProblem
from dualgap.theory import GapRow


def test_full_sweep_covers_the_required_ranges():
    specs = sweep_specs(54)
    assert len(specs) >= 50
    assert {s.constraints for s in specs} == {1, 2, 3}
    assert {s.policy for s in specs} == {"loglinear", "mlp"}
    betas = [s.beta for s in specs]
    assert min(betas) < 0.03 and max(betas) > 0.5 and 0.01 <= min(betas) and max(betas) <= 1
    noise = [s.noise for s in specs]
    assert min(noise) == 0.0 and max(noise) > 2.5 and max(noise) <= 3.0
    assert min(s.prompts for s in specs) == 2 and max(s.prompts for s in specs) >= 10
    assert sweep_specs(5) == sweep_specs(5)  # seeded
    with pytest.raises(ValueError, match="n"):
        sweep_specs(0)


@pytest.mark.parametrize("row, kind", [
    (GapRow("Lemma 1 (smooth)", "q", 1.0, bound=2.0, holds=True, kind="by construction",
            why="Popoviciu"), "by_construction"),
    (GapRow("Lemma 3 at lam*", "q", 1.0, bound=2.0, lower=0.0, holds=True,
            kind="by construction", why="warm start at the fit witness"), "by_construction"),
    (GapRow("Lemma 3 at lam*", "q", 3.0, bound=2.0, lower=0.0, holds=False), "failed"),
    (GapRow("Lemma 3 (cold search) at lam*", "q", 3.0, bound=2.0, lower=0.0, holds=None,
            kind="search failure"), "search_failure"),
    (GapRow("Lemma 2", "q", 0.0, bound=1e-9, lower=-1e-9, holds=True), "holds"),
    (GapRow("Theorem 2 (lower)", "q", 0.0, lower=-1.0, holds=True), "holds"),
    (GapRow("Theorem 1 (upper)", "q", 1.0, bound=0.5, holds=None,
            kind="undecided: P*_p has no upper estimate"), "undecided"),
    (GapRow("Theorem 1 (upper)", "q", 1.0, bound=0.5, holds=None, kind="assumption not met",
            note="assumption fails: best margin found 0.1 <= M nu = 3"), "not_met"),
    (GapRow("Theorem 3 (multi-shot pi_p(lam*_p))", "J(pi) - P*", 0.1, kind="measured"), None),
    (GapRow("Lemma 4", "q", 1.0, bound=2.0, holds=True), None),
    (GapRow("Lemma 4 (segment)", "q", 1.0, bound=2.0, holds=True), None),
])
def test_classify_row(row, kind):
    assert classify_row(row) == kind


def test_by_construction_names_real_claims():
    assert {claim_of(k) for k in BY_CONSTRUCTION} == {"Lemma 1", "Lemma 3", "Lemma 5",
                                                      "Theorem 1", "Theorem 2"}


def test_counterexample_saved_and_reloadable(tmp_path):
    spec = InstanceSpec(3, 2, 4, 1, 0.2, "loglinear", 1.0)
    problem, _ = spec.build()
    res = ClaimResult("Lemma 4", "", 1)
    _save(problem, spec, "Lemma 4", tmp_path, res)
    (path,) = res.counterexamples
    back = AlignmentProblem.load(path)
    assert np.array_equal(back.reward, problem.reward) and back.beta == problem.beta
    again, _ = InstanceSpec(**json.loads(path.replace(".npz", ".json") and
                                         open(path[:-4] + ".json").read())).build()
    assert np.array_equal(again.utilities, problem.utilities)


def test_theory_sweep_one_instance_counts():
    spec = InstanceSpec(11, 2, 4, 1, 0.3, "loglinear", 0.5)
    res = theory_sweep([spec], cvxpy_check=False)
    assert res["Lemma 1"].by_construction == 2
    assert res["Lemma 2"].holds + res["Lemma 2"].failed == 1
    l4 = res["Lemma 4"]
    assert l4.holds + l4.failed + l4.not_met == 2  # paper form + segment form
    assert sum(v for k, v in l4.details.items() if k.startswith("segment")) == 1
    assert res["Lemma 3"].by_construction >= 6


def test_lam_p_not_a_minimizer_is_a_proof():
    """On a class that contains every pi_lam, D_p = D: a point with D > D* is no minimizer,
    lam* itself is not flagged."""
    import dualgap as dg
    from dualgap.claims.theory_sweep import lam_p_not_a_minimizer

    spec = InstanceSpec(5, 3, 4, 1, 0.5, "loglinear", 0.0)
    problem, pc = spec.build()
    sol = dg.solve(problem)
    assert lam_p_not_a_minimizer(problem, pc, 3 * sol.lam + 0.5, sol.dual_value)
    assert not lam_p_not_a_minimizer(problem, pc, sol.lam, sol.dual_value)


def test_lam_p_check_starts_from_the_reports_fit_witness():
    """The sweep's lam*_p check searches from the report's fit of pi_{lam*_p} (the theta of that
    target's fit; None where the report did not fit there) and reaches the report's verdict."""
    from dualgap.claims.theory_sweep import _fit_witness, lam_p_not_a_minimizer
    from dualgap.theory import gap_report

    spec = InstanceSpec(5, 3, 4, 1, 0.5, "loglinear", 0.5)
    problem, pc = spec.build()
    rep = gap_report(problem, pc, seed=0, cvxpy_check=False)
    fit = next(t.fit for t in rep.targets if t.label == "lam*_p")
    assert _fit_witness(rep) is fit.theta
    flagged = any(r.kind == "search failure" and r.note.startswith("lam*_p is proven")
                  for r in rep.rows)
    assert lam_p_not_a_minimizer(problem, pc, rep.quantities["lam*_p"],
                                 float(rep.quantities["D*"]), _fit_witness(rep)) == flagged
    unfitted = gap_report(problem, pc, seed=0, cvxpy_check=False, fit_at=("lam*",))
    assert _fit_witness(unfitted) is None

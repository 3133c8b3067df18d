"""The trajectory type: JSON round trip, best-iterate indices, step-size rules."""

import json
import math

import numpy as np
import pytest

import dualgap as dg
from dualgap.algorithms import Trajectory, dual_descent, step_size_schedule
from dualgap.algorithms.trajectory import best_dual_index, best_feasible_index
from dualgap.instances import random_problem


@pytest.fixture(scope="module")
def problem():
    return random_problem(1, 5, 8, 2, beta=0.5, tightness=0.9)


def test_json_round_trip_with_nan(problem, tmp_path):
    sol = dg.solve(problem)
    tr = dual_descent(problem, 30, samples=4, step_rule="constant", step_size=0.1,
                      exact_solution=sol)
    assert math.isnan(tr.direction[-1, 0])  # no dual step after the last record
    path = tmp_path / "t.json"
    tr.to_json(path)
    raw = json.loads(path.read_text())  # strict JSON: NaN written as null
    assert raw["direction"][-1] == [None, None]
    back = Trajectory.from_json(path)
    for k in ("lam", "objective", "slack", "dual_value", "lagrangian", "time", "second_moment"):
        np.testing.assert_array_equal(getattr(back, k), getattr(tr, k))
    np.testing.assert_array_equal(back.best_dual, tr.best_dual)
    np.testing.assert_array_equal(back.exact["lam"], sol.lam)
    assert back.config == tr.config
    with pytest.raises(ValueError, match="unknown field"):
        Trajectory.from_dict({**raw, "lamda": []})


def test_records_are_exact_functionals(problem):
    tr = dual_descent(problem, 5, step_rule="constant", step_size=0.2)
    for t in range(tr.num_records):
        pi = dg.lagrangian_policy(problem, tr.lam[t])
        assert tr.objective[t] == pytest.approx(dg.objective(problem, pi), abs=1e-12)
        np.testing.assert_allclose(tr.slack[t], dg.constraint_slack(problem, pi), atol=1e-12)
        # at the exact maximizer L(pi_lam, lam) = D(lam)
        assert tr.lagrangian[t] == pytest.approx(tr.dual_value[t], abs=1e-10)
    # lam_{t+1} = [lam_t - eta u_t]_+ with the recorded u_t
    np.testing.assert_allclose(tr.lam[1:], np.maximum(tr.lam[:-1] - 0.2 * tr.direction[:-1], 0))


def test_recorder_gives_the_dual_functions_bits():
    """The recorder computes slack, J and L itself (the policy validated once): the same bits
    as dualgap.dual's functions, on a support with holes, m = 0, and any policy; a policy
    that is not one is refused as before."""
    from dualgap.algorithms.estimators import slack_second_moment
    from dualgap.algorithms.trajectory import TrajectoryRecorder

    base = random_problem(3, 4, 6, 2, beta=0.3, tightness=0.8)
    support = base.support.copy()
    support[1, :3] = False
    ref = np.where(support, base.reference, 0.0)
    holes = dg.AlignmentProblem(base.reward, base.utilities, base.thresholds, base.beta,
                                ref / ref.sum(1, keepdims=True),
                                prompt_weights=base.prompt_weights)
    none = dg.AlignmentProblem(base.reward, base.utilities[:0], base.thresholds[:0], base.beta,
                               base.reference)
    rng = np.random.default_rng(0)
    for p in (base, holes, none):
        rec = TrajectoryRecorder(p, "test", {})
        cases = []
        for _ in range(4):
            pi = np.where(p.support, rng.exponential(size=p.reward.shape), 0.0)
            pi /= pi.sum(1, keepdims=True)
            lam = rng.uniform(0, 2, p.num_constraints)
            rec.record(lam, pi, samples=3)
            cases.append((lam, pi))
        tr = rec.finish()
        for t, (lam, pi) in enumerate(cases):
            assert tr.objective[t] == dg.objective(p, pi)
            assert np.array_equal(tr.slack[t], dg.constraint_slack(p, pi))
            assert tr.lagrangian[t] == dg.lagrangian(p, pi, lam)
            assert tr.second_moment[t] == slack_second_moment(p, pi, 3)
    with pytest.raises(ValueError, match="policy: row x = 0"):
        TrajectoryRecorder(base, "test", {}).record(np.zeros(2), np.full((4, 6), 0.5))
    with pytest.raises(ValueError, match="policy: shape"):
        TrajectoryRecorder(base, "test", {}).record(np.zeros(2), np.full((4, 5), 0.2))


def test_best_indices():
    lag = np.array([3.0, 2.0, np.nan, 2.5, 1.0])
    np.testing.assert_array_equal(best_dual_index(lag), [0, 1, 1, 1, 4])
    obj = np.array([5.0, 4.0, 3.0, 6.0, 1.0])
    slack = np.array([[-1.0], [-0.5], [0.1], [-1e-9], [0.2]])
    # infeasible: least violation; then the best objective among feasible ones
    np.testing.assert_array_equal(best_feasible_index(obj, slack, 1e-6), [0, 1, 2, 3, 3])


def test_step_size_rules():
    assert step_size_schedule("constant", 0.3)(7) == 0.3
    assert step_size_schedule("sqrt", 0.3)(3) == pytest.approx(0.15)
    assert step_size_schedule("smooth", None, lambda: 4.0)(9) == 0.25
    assert step_size_schedule("smooth", 0.5, lambda: 4.0)(0) == 0.125
    with pytest.raises(ValueError, match="step_rule"):
        step_size_schedule("adagrad", 0.1)
    with pytest.raises(ValueError, match="step_size"):
        step_size_schedule("constant", None)
    with pytest.raises(ValueError, match="step_size"):
        step_size_schedule("constant", -1.0)


def test_first_within(problem):
    sol = dg.solve(problem)
    tr = dual_descent(problem, 300, exact_solution=sol)
    k = tr.first_within(1e-6, 1e-6)
    assert k is not None and 0 < k <= 300
    assert tr.violation[k] <= 1e-6 and abs(tr.objective[k] - sol.primal_value) <= 1e-6
    assert tr.first_within(0.0, 0.0, target=1e9) is None

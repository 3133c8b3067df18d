"""The numpy policy step of the log-linear class (CAID, one-shot) against the torch search."""

import importlib

import numpy as np
import pytest

import dualgap as dg
from dualgap.algorithms import caid, one_shot
from dualgap.instances import random_problem

torch = pytest.importorskip("torch")
from dualgap.gaps import lagrangian_max  # noqa: E402
from dualgap.policies import (  # noqa: E402
    LogLinearPolicy,
    MLPPolicy,
    TabularPolicy,
    problem_features,
)

LN = importlib.import_module("dualgap.algorithms.loglinear_numpy")


def _fronts_class(seed):
    """The Fig 1a instance family at the ledger's quick size (seed 2 drives theta to ~200)."""
    from dualgap.claims.fronts import FrontsConfig, _classes, front_instance

    cfg = FrontsConfig.quick()
    base, b, _ = front_instance(seed, cfg)
    p = base.replace(thresholds=[b[-1]])
    return p, _classes(p, "loglinear", cfg, seed)


def _holes():
    """Two constraints, a support with holes, ``rho`` not uniform."""
    p = random_problem(4, 5, 6, 2, beta=0.3, tightness=0.7)
    support = p.support.copy()
    support[0, :2] = False
    support[3, 4] = False
    ref = np.where(support, p.reference, 0.0)
    p = dg.AlignmentProblem(p.reward, p.utilities, p.thresholds, p.beta,
                            ref / ref.sum(1, keepdims=True), prompt_weights=p.prompt_weights)
    return p, LogLinearPolicy(p, problem_features(p, noise=0.4, seed=1))


@pytest.mark.parametrize("case", ["fronts-0", "fronts-2", "holes"])
@pytest.mark.parametrize("steps,method", [(5, "auto"), (1, "auto"), (3, "natural")])
def test_one_step_is_the_torch_search(case, steps, method):
    """From the same start and multiplier: theta to 1e-10 relative, pi to 1e-12, L to 1e-13
    relative (rounding only: these searches take the same line-search decisions)."""
    p, pc = _holes() if case == "holes" else _fronts_class(int(case[-1]))
    fast = LN.loglinear_steps(p, pc, steps, method)
    assert fast is not None
    rng = np.random.default_rng(0)
    theta = None
    for k in range(6):
        lam = rng.uniform(0, 3, p.num_constraints) if k % 2 else np.full(p.num_constraints, 0.5)
        pol, th, val = fast.step(lam, theta)
        ref = lagrangian_max(p, pc, lam, theta0=theta, steps=steps, method=method)
        scale = 1.0 + float(ref.theta.abs().max())
        assert float((th - ref.theta).abs().max()) <= 1e-10 * scale
        np.testing.assert_allclose(pol, ref.policy, rtol=0, atol=1e-12)
        assert val == pytest.approx(ref.value, rel=1e-13, abs=1e-13)
        assert isinstance(th, torch.Tensor) and th.dtype == torch.float64
        theta = ref.theta
    if case == "holes":
        assert np.all(pol[~p.support] == 0.0)


def _both(monkeypatch, fn):
    fast = fn()
    with monkeypatch.context() as mp:
        mp.setattr(LN, "loglinear_steps", lambda *a: None)
        slow = fn()
    return fast, slow


@pytest.mark.parametrize("samples", [None, 16])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_caid_runs_match_the_torch_path(monkeypatch, seed, samples):
    """Whole CAID runs (Fig 1a's settings): multipliers to 1e-12, slacks, J and L to 1e-8.
    Where L is flat at float precision (seed 1, t = 34) a trial step that changes L by
    ~1e-15 is accepted on one path and not on the other: theta then differs by ~1e-5 of
    ~44 and pi by ~5e-8 (both maximize L to rounding), so theta and pi are not compared."""
    p, pc = _fronts_class(seed)
    fast, slow = _both(monkeypatch, lambda: caid(p, pc, iterations=40, step_rule="sqrt",
                                                 step_size=1.0, inner_steps=5,
                                                 samples=samples, one_shot_samples=16,
                                                 seed=seed))
    np.testing.assert_allclose(fast.lam, slow.lam, rtol=0, atol=1e-12)
    for k in ("slack", "objective", "lagrangian", "dual_value"):
        np.testing.assert_allclose(getattr(fast, k), getattr(slow, k), rtol=0, atol=1e-8,
                                   err_msg=k)
    assert fast.config == slow.config


def test_caid_default_dual_step_and_a_tightened_problem(monkeypatch):
    """The self-tuning dual step (``step_size="auto"``) with sampled slacks, on a problem that
    is a tightened copy of the class's own (same table, other thresholds)."""
    p, pc = _holes()
    q = p.replace(thresholds=p.thresholds + 0.05)
    assert LN.loglinear_steps(q, pc, 4, "auto") is not None
    fast, slow = _both(monkeypatch, lambda: caid(q, pc, iterations=25, inner_steps=4,
                                                 samples=32, seed=3))
    for k in ("lam", "slack", "objective", "lagrangian"):
        np.testing.assert_allclose(getattr(fast, k), getattr(slow, k), rtol=0, atol=1e-9,
                                   err_msg=k)


def test_one_shot_with_a_finite_step(monkeypatch):
    p, pc = _holes()
    fast, slow = _both(monkeypatch, lambda: one_shot(p, pc, samples=32, inner_steps=3))
    np.testing.assert_allclose(fast.slack, slow.slack, rtol=0, atol=1e-12)
    assert fast.lagrangian[0] == pytest.approx(slow.lagrangian[0], abs=1e-13)


def test_the_torch_search_where_the_numpy_one_would_differ():
    """Other classes, Newton steps (no budget), L-BFGS, another table: None (the torch path)."""
    p, pc = _holes()
    assert LN.loglinear_steps(p, pc, None, "auto") is None
    assert LN.loglinear_steps(p, pc, 5, "lbfgs") is None
    assert LN.loglinear_steps(p, TabularPolicy(p), 5, "auto") is None
    assert LN.loglinear_steps(p, MLPPolicy(p, problem_features(p, seed=0), hidden=4), 5,
                              "auto") is None
    other = random_problem(0, 5, 7, 2)
    assert LN.loglinear_steps(other, pc, 5, "auto") is None
    with pytest.raises(ValueError, match="problem: shape"):
        caid(other, pc, iterations=2, inner_steps=2)


def test_a_search_that_would_go_on_to_lbfgs_is_handed_to_torch(monkeypatch):
    """When the natural steps stop early unconverged, ``"auto"`` polishes with L-BFGS: the
    step is then exactly :func:`lagrangian_max`'s (an ascent stopped at once, forced here)."""
    p, pc = _holes()
    fast = LN.loglinear_steps(p, pc, 5, "auto")
    lam = np.array([0.7, 1.3])
    monkeypatch.setattr(fast, "ascent", lambda lam, theta: (theta, 0, False))
    pol, th, val = fast.step(lam, None)
    ref = lagrangian_max(p, pc, lam, steps=5, method="auto")
    assert ref.steps == 5  # the torch search: 5 natural steps (here: its own, not polished)
    torch.testing.assert_close(th, ref.theta, rtol=0, atol=0)
    assert val == ref.value
    # with "natural" there is no polish: the stopped ascent is the answer
    nat = LN.loglinear_steps(p, pc, 5, "natural")
    monkeypatch.setattr(nat, "ascent", lambda lam, theta: (theta, 0, False))
    assert float(nat.step(lam, None)[1].abs().max()) == 0.0


def test_bad_multiplier_gets_the_torch_searchs_error():
    p, pc = _holes()
    fast = LN.loglinear_steps(p, pc, 5, "auto")
    with pytest.raises(ValueError, match="lam"):
        fast.step(np.array([-1.0, 0.0]), None)

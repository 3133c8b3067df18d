"""Primal-dual (Safe RLHF family): multiplier equations, convergence with small steps against
cvxpy, and the oscillation CAID does not have."""

import numpy as np
import pytest

import dualgap as dg
from dualgap.algorithms import (
    LinearMultiplier,
    LogMultiplier,
    PIDMultiplier,
    caid,
    make_multiplier,
    primal_dual,
)
from dualgap.instances import random_problem

torch = pytest.importorskip("torch")
from dualgap.policies import TabularPolicy  # noqa: E402


def test_multiplier_equations():
    u = np.array([0.5, -2.0])
    np.testing.assert_allclose(LinearMultiplier([1.0, 0.0]).update(u, 0.4), [0.8, 0.8])
    np.testing.assert_allclose(LinearMultiplier([0.1, 0.0]).update(u, 0.4), [0.0, 0.8])
    lm = LogMultiplier([2.0, 1.0])
    np.testing.assert_allclose(lm.update(u, 0.1), [2 * np.exp(-0.1 * 2 * 0.5), np.exp(0.2)])
    # PID: e = -u; I = [I + eta e]_+; lam = [I + kp eta e + kd eta [e - e_prev]_+]_+
    pid = PIDMultiplier([1.0, 1.0], kp=2.0, kd=3.0)
    lam1 = pid.update(u, 0.1)
    e = -u
    I1 = np.maximum(1.0 + 0.1 * e, 0)
    np.testing.assert_allclose(lam1, np.maximum(I1 + 2 * 0.1 * e, 0))  # no derivative at t=0
    u2 = np.array([0.1, -3.0])
    e2 = -u2
    I2 = np.maximum(I1 + 0.1 * e2, 0)
    expect = np.maximum(I2 + 0.2 * e2 + 0.3 * np.maximum(e2 - e, 0), 0)
    np.testing.assert_allclose(pid.update(u2, 0.1), expect)
    # kp = kd = 0 is the linear multiplier
    a, b = PIDMultiplier([0.3, 0.0]), LinearMultiplier([0.3, 0.0])
    for uu in ([1.0, -1.0], [-0.2, 0.4], [0.3, 0.3]):
        np.testing.assert_allclose(a.update(np.array(uu), 0.7), b.update(np.array(uu), 0.7))
    with pytest.raises(ValueError, match="multiplier"):
        make_multiplier("adam", np.zeros(1))
    with pytest.raises(ValueError, match="kp"):
        make_multiplier("linear", np.zeros(1), kp=1.0)


@pytest.mark.parametrize("mode,multiplier", [("simultaneous", "linear"), ("alternating", "pid"),
                                             ("alternating", "log")])
def test_small_steps_converge_to_the_cvxpy_optimum(mode, multiplier):
    p = random_problem(1, 3, 5, 1, beta=1.0, tightness=0.8)
    ref = dg.solve_primal_cvxpy(p)
    tr = primal_dual(p, TabularPolicy(p), iterations=600, primal_lr=10.0, dual_step=1.0,
                     mode=mode, multiplier=multiplier, kp=0.5 if multiplier == "pid" else 0.0,
                     record_every=50)
    np.testing.assert_allclose(tr.lam[-1], ref.lam, atol=2e-3)
    assert tr.objective[-1] == pytest.approx(ref.primal_value, abs=1e-3)
    assert tr.num_records == 600 // 50 + 1


def test_primal_step_is_gradient_ascent_on_the_lagrangian():
    from dualgap.gaps import lagrangian_objective

    p = random_problem(2, 2, 4, 1, beta=0.5)
    pc = TabularPolicy(p)
    tr = primal_dual(p, pc, iterations=1, primal_lr=0.1, dual_step=0.2, lam0=[0.7])
    theta = pc.init_params().requires_grad_(True)
    lagrangian_objective(p, pc, theta, [0.7]).backward()
    expected = (theta + 0.1 * theta.grad).detach()
    torch.testing.assert_close(tr.theta, expected)
    # simultaneous: lam_1 = [lam_0 - eta u(theta_0)]_+ with theta_0 = pi_ref
    u0 = dg.constraint_slack(p, p.reference)
    np.testing.assert_allclose(tr.lam[1], np.maximum(0.7 - 0.2 * u0, 0), atol=1e-12)


def _oscillation_instance():
    r = np.array([[1.0, 0.0, 0.5]])
    g = np.array([[[-1.0, 1.0, 0.0]]])
    return dg.AlignmentProblem(r, g, [0.3], 0.05, np.full((1, 3), 1 / 3))


@pytest.mark.slow
def test_simultaneous_primal_dual_cycles_where_caid_converges():
    """Both at the dual step eta = 1.5 / hess D(lam*): CAID's nested maximization makes the dual
    iteration a gradient step on D (converges for eta < 2 / hess D); simultaneous
    gradient descent-ascent does not settle (the linearization has spectral radius > 1 when
    eta hess D > 1)."""
    p = _oscillation_instance()
    sol = dg.solve(p)
    eta = 1.5 / sol.hessian[0, 0]
    pd = primal_dual(p, TabularPolicy(p), iterations=3000, primal_lr=1.0, dual_step=eta,
                     record_every=5)
    tail = pd.lam[-200:, 0]  # the last 1000 steps
    assert tail.max() - tail.min() > 0.5
    assert np.abs(pd.slack[-200:, 0]).max() > 0.2
    c = caid(p, TabularPolicy(p), iterations=100, step_size=eta, inner_steps=3, lam0=[0.0])
    assert abs(c.lam[-1, 0] - sol.lam[0]) < 1e-6
    assert abs(c.slack[-1, 0]) < 1e-6


def test_errors():
    p = random_problem(0, 2, 3, 1)
    pc = TabularPolicy(p)
    with pytest.raises(ValueError, match="mode"):
        primal_dual(p, pc, iterations=1, mode="jacobi")
    with pytest.raises(ValueError, match="optimizer"):
        primal_dual(p, pc, iterations=1, optimizer="rmsprop")
    with pytest.raises(ValueError, match="primal_lr"):
        primal_dual(p, pc, iterations=1, primal_lr=0.0)
    with pytest.raises(ValueError, match="record_every"):
        primal_dual(p, pc, iterations=1, record_every=0)


def _torch_and_numpy(monkeypatch, p, pc, **kw):
    """The same run through the torch loop (fast path switched off) and the numpy fast path."""
    import importlib

    mod = importlib.import_module("dualgap.algorithms.primal_dual")
    assert mod._tabular_numpy(p, pc) is not None  # the fast path is taken for this class
    fast = primal_dual(p, pc, **kw)
    with monkeypatch.context() as mp:
        mp.setattr(mod, "_tabular_numpy", lambda *a: None)
        slow = primal_dual(p, pc, **kw)
    return fast, slow


@pytest.mark.parametrize("kw", [
    dict(iterations=3000, primal_lr=1.0, record_every=7),  # the notebook's cycling SGD run
    dict(iterations=3000, primal_lr=0.03, optimizer="adam", record_every=10),
    dict(iterations=400, primal_lr=3.0, mode="alternating", multiplier="pid", kp=0.5, kd=0.3),
    dict(iterations=400, primal_lr=0.05, optimizer="adam", mode="alternating",
         multiplier="log", lam0=[0.5]),
], ids=["sgd-cycling", "adam", "alternating-pid", "adam-log"])
def test_numpy_tabular_path_matches_the_torch_loop(monkeypatch, kw):
    """Same iterates to 1e-12: lam, slack, J, D, the dual directions, the last theta.  The
    oscillation instance starts at a symmetric point whose gradient has an analytically zero
    component, whose rounding Adam magnifies by lr / eps (an unfused log_softmax backward
    put the two paths 1.4e-11 apart here)."""
    p = _oscillation_instance()
    fast, slow = _torch_and_numpy(monkeypatch, p, TabularPolicy(p),
                                  dual_step=0.05, **kw)
    for k in ("lam", "slack", "objective", "dual_value", "lagrangian", "direction"):
        np.testing.assert_allclose(getattr(fast, k), getattr(slow, k), rtol=0, atol=1e-12,
                                   err_msg=k)
    torch.testing.assert_close(fast.theta, slow.theta, rtol=0, atol=1e-12)
    assert fast.num_records == slow.num_records and fast.config == slow.config


def test_numpy_tabular_path_on_a_partial_support_with_samples(monkeypatch):
    """Several prompts, two constraints, a support with holes, a theta0 and sampled slacks."""
    p = random_problem(4, 5, 6, 2, beta=0.3, tightness=0.7)
    support = p.support.copy()
    support[0, :2] = False
    support[3, 4] = False
    ref = np.where(support, p.reference, 0.0)
    p = dg.AlignmentProblem(p.reward, p.utilities, p.thresholds, p.beta,
                            ref / ref.sum(1, keepdims=True), prompt_weights=p.prompt_weights)
    pc = TabularPolicy(p)
    theta0 = pc.init_params(seed=1)
    for kw in (dict(samples=8, seed=3), dict(optimizer="adam", primal_lr=0.1)):
        fast, slow = _torch_and_numpy(monkeypatch, p, pc, iterations=200, dual_step=0.5,
                                      theta0=theta0, **{"primal_lr": 2.0, **kw})
        for k in ("lam", "slack", "objective", "direction"):
            np.testing.assert_allclose(getattr(fast, k), getattr(slow, k), rtol=0, atol=1e-12,
                                       err_msg=k)
        assert np.all(fast.policy[~support] == 0.0)


def test_numpy_path_only_for_the_tabular_and_loglinear_classes_of_the_same_problem():
    import importlib

    from dualgap.policies import LogLinearPolicy, MLPPolicy, problem_features

    mod = importlib.import_module("dualgap.algorithms.primal_dual")
    p = random_problem(0, 2, 3, 1)
    assert mod._tabular_numpy(p, TabularPolicy(p)) is not None
    assert mod._tabular_numpy(p.replace(thresholds=[0.1]), TabularPolicy(p)) is None
    ll = LogLinearPolicy(p, problem_features(p, seed=0))
    assert mod._tabular_numpy(p, ll) is not None
    assert mod._tabular_numpy(p.replace(thresholds=[0.1]), ll) is None
    assert mod._tabular_numpy(p, MLPPolicy(p, problem_features(p, seed=0), hidden=2)) is None


@pytest.mark.parametrize("kw", [
    dict(dual_step=0.3),
    dict(dual_step=0.05, optimizer="adam", primal_lr=0.05),
    dict(dual_step=0.1, mode="alternating", samples=8, multiplier="pid", kp=0.5),
], ids=["sgd", "adam", "alternating-pid-sampled"])
def test_numpy_loglinear_path_matches_the_torch_loop(monkeypatch, kw):
    """The log-linear class (multi-constraint claim's instances): the same iterates to 1e-12
    (measured 3e-15)."""
    from dualgap.policies import LogLinearPolicy, problem_features

    p = random_problem(1, 8, 10, 3, beta=0.1, tightness=0.8)
    pc = LogLinearPolicy(p, problem_features(p, noise=0.5, seed=1))
    fast, slow = _torch_and_numpy(monkeypatch, p, pc, iterations=400, record_every=8, seed=1,
                                  **kw)
    for k in ("lam", "slack", "objective", "dual_value", "lagrangian", "direction"):
        np.testing.assert_allclose(getattr(fast, k), getattr(slow, k), rtol=0, atol=1e-12,
                                   err_msg=k)
    torch.testing.assert_close(fast.theta, slow.theta, rtol=0, atol=1e-12)

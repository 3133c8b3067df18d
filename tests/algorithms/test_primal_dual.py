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

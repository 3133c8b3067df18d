"""The log-linear class's closed-form numpy fit losses (dualgap.policies.loglinear_np) against
the torch losses and autograd, and its numpy minimize against the autograd L-BFGS."""

import numpy as np
import pytest
import torch

from dualgap import lagrangian_policy
from dualgap.instances import random_problem
from dualgap.policies import LogLinearPolicy, PolicyClass, lbfgs, problem_features


def _setup(seed):
    p = random_problem(seed, 5, 7, 2, 0.3, support_fraction=0.7)
    pc = LogLinearPolicy(p, problem_features(p, noise=0.5, seed=seed))
    target = lagrangian_policy(p, np.array([0.4, 1.1]))
    return p, pc, target


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("objective", ["kl", "reverse_kl", "nu"])
def test_value_grad_is_the_torch_loss_and_its_autograd_gradient(seed, objective):
    """At random thetas (far from the target too) on a sparse support: the numpy value and
    gradient equal the torch loss and autograd to rounding."""
    _, pc, target = _setup(seed)
    loss = pc.fit_loss(target, objective)
    rng = np.random.default_rng(seed)
    for _ in range(4):
        x = rng.normal(size=pc.num_params) * 2
        th = torch.tensor(x, requires_grad=True)
        v = loss(th)
        (g,) = torch.autograd.grad(v, th)
        fv, fg = loss.value_grad(x)
        assert fv == pytest.approx(float(v.detach()), rel=1e-13, abs=1e-15)
        np.testing.assert_allclose(fg, g.numpy(), rtol=1e-9, atol=1e-12 * float(g.abs().max()))


@pytest.mark.parametrize("seed", [0, 1])
def test_numpy_minimize_reaches_the_autograd_lbfgs_minimizer(seed):
    """LogLinearPolicy.minimize (numpy losses) against the default hook (autograd L-BFGS on the
    same torch loss): the same minimizer and loss on the convex forward-KL stage, and the nu
    stage at least as good to 1e-9; a loss without value_grad takes the default path."""
    _, pc, target = _setup(seed)
    for objective in ("kl", "nu"):
        loss = pc.fit_loss(target, objective)
        start = pc.init_params(seed + 3)
        a = start.clone().requires_grad_(True)
        b = start.clone().requires_grad_(True)
        pc.minimize(a, loss, 300)
        lbfgs(b, loss.torch_loss, 300)
        fa, fb = float(loss(a.detach())), float(loss(b.detach()))
        if objective == "kl":
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-6,
                                       atol=1e-7)
            assert fa == pytest.approx(fb, rel=1e-12)
        assert fa <= fb + 1e-9
    c = start.clone().requires_grad_(True)
    d = start.clone().requires_grad_(True)
    plain = loss.torch_loss
    assert not hasattr(plain, "value_grad")
    assert pc.minimize(c, plain, 50) == PolicyClass.minimize(pc, d, plain, 50)
    assert torch.equal(c.detach(), d.detach())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_numpy_newton_ascent_takes_the_torch_iteration(seed, monkeypatch):
    """natural_ascent(newton=True) on a log-linear class (the numpy iteration) against the torch
    iteration it replaces (the class without newton_ascent): the same step count, the same
    convergence flag and the same maximizer, from the class's start and from a random start;
    on a tightened copy of the problem too (its own r, h)."""
    from dualgap.policies.optim import natural_ascent
    from dualgap.policies.terms import DTYPE

    p, pc, _ = _setup(seed)
    lam = torch.as_tensor(np.array([0.4, 1.1]) * (seed + 1) / 2, dtype=DTYPE)
    starts = [pc.init_params(), pc.init_params(seed + 5)]
    fast = [natural_ascent(p, pc, lam, th, 200, newton=True) for th in starts]
    monkeypatch.setattr(LogLinearPolicy, "newton_ascent", None)
    slow = [natural_ascent(p, pc, lam, th, 200, newton=True) for th in starts]
    for (a, na, oka), (b, nb, okb) in zip(fast, slow, strict=True):
        assert (na, oka) == (nb, okb) and oka
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12)


def test_numpy_newton_ascent_reads_the_problem_it_is_given(monkeypatch):
    """A problem other than the class's own (other rewards, same support): the numpy iteration
    maximizes that problem's Lagrangian, as the torch one does."""
    from dualgap.policies.optim import natural_ascent
    from dualgap.policies.terms import DTYPE

    p, pc, _ = _setup(4)
    other = random_problem(9, 5, 7, 2, 0.3, support_fraction=0.7)
    q = type(p)(reward=other.reward, utilities=p.utilities, reference=p.reference,
                thresholds=p.thresholds, beta=p.beta, prompt_weights=p.prompt_weights,
                relative=p.relative)
    lam = torch.as_tensor([0.5, 0.2], dtype=DTYPE)
    a, na, _ = natural_ascent(q, pc, lam, pc.init_params(), 200, newton=True)
    monkeypatch.setattr(LogLinearPolicy, "newton_ascent", None)
    b, nb, _ = natural_ascent(q, pc, lam, pc.init_params(), 200, newton=True)
    c, _, _ = natural_ascent(p, pc, lam, pc.init_params(), 200, newton=True)
    assert na == nb
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12)
    assert not np.allclose(a.numpy(), c.numpy(), rtol=1e-3)

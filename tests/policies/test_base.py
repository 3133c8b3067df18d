"""PolicyClass (dualgap.policies.base): the tilted softmax, autograd, fits, the hooks."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dualgap import kl_divergence, lagrangian_policy
from dualgap.instances import random_problem
from dualgap.policies import (
    LogLinearPolicy,
    MLPPolicy,
    TabularPolicy,
    problem_features,
)
from dualgap.testing import problems


def _classes(problem, noise=0.3):
    feats = problem_features(problem, noise=noise, seed=1)
    return [TabularPolicy(problem), LogLinearPolicy(problem, feats),
            MLPPolicy(problem, feats, hidden=4, depth=2, seed=3)]


@settings(max_examples=15)
@given(problems(max_prompts=4, max_responses=6, max_constraints=2), st.integers(0, 10**6))
def test_log_policy_is_a_policy_on_the_support(problem, seed):
    for cls in _classes(problem):
        theta = cls.init_params(seed)
        logp = cls.log_policy(theta)
        assert logp.dtype == torch.float64 and logp.shape == problem.reward.shape
        off = ~problem.support
        assert torch.isneginf(logp[torch.as_tensor(off)]).all()
        assert torch.isfinite(logp[torch.as_tensor(problem.support)]).all()
        pi = cls.policy(theta)
        np.testing.assert_allclose(pi.sum(1), 1.0, atol=1e-12)
        assert (pi[off] == 0).all()


@settings(max_examples=10)
@given(problems(max_prompts=4, max_responses=6, max_constraints=2))
def test_default_start_is_the_reference(problem):
    for cls in _classes(problem):
        np.testing.assert_allclose(cls.policy(cls.init_params()), problem.reference, atol=1e-13)


@settings(max_examples=10)
@given(problems(max_prompts=3, max_responses=5, max_constraints=2), st.integers(0, 1000))
def test_autograd_matches_finite_differences(problem, seed):
    """d/dtheta of sum(w * pi_theta) (a smooth functional) against central differences."""
    w = torch.as_tensor(np.random.default_rng(seed).normal(size=problem.reward.shape))
    for cls in _classes(problem):
        theta = cls.init_params(seed).requires_grad_(True)

        def f(th, cls=cls):
            return (w * torch.exp(cls.log_policy(th))).sum()

        (g,) = torch.autograd.grad(f(theta), theta)
        assert torch.isfinite(g).all()
        eps = 1e-6
        k = int(seed % cls.num_params)
        e = torch.zeros(cls.num_params, dtype=torch.float64)
        e[k] = eps
        with torch.no_grad():
            fd = (f(theta + e) - f(theta - e)) / (2 * eps)
        assert abs(float(g[k]) - float(fd)) <= 1e-7 * (1 + abs(float(fd)))


def test_fit_reports_the_measured_gap():
    """nu_1, nu_KL are recomputed here from the policy (an independent formula)."""
    p = random_problem(4, 4, 6, 2, 0.5)
    target = lagrangian_policy(p, [1.0, 0.5])
    cls = LogLinearPolicy(p, problem_features(p, noise=0.5, seed=2))
    fit = cls.fit(target)
    l1 = np.abs(fit.policy - target).sum(1).max()
    klg = np.abs(kl_divergence(p, fit.policy) - kl_divergence(p, target)).max()
    assert fit.nu_1 == pytest.approx(l1, abs=1e-14)
    assert fit.nu_kl == pytest.approx(klg, abs=1e-14)
    assert fit.nu == max(l1, klg) > 1e-3  # the noisy class cannot contain pi_lam
    # fitting the gap itself is at least as good as the plain forward-KL fit
    assert fit.nu <= cls.fit(target, objective="kl").nu + 1e-12
    exact = LogLinearPolicy(p, problem_features(p)).fit(target)
    assert exact.nu < 1e-6


def test_fit_rejects_targets_off_the_support():
    p = random_problem(5, 3, 5, 1, 0.5, support_fraction=0.5)
    bad = np.full(p.reward.shape, 1.0 / p.num_responses)
    with pytest.raises(ValueError, match="target.*outside the reference support"):
        TabularPolicy(p).fit(bad)
    with pytest.raises(ValueError, match="target: shape"):
        TabularPolicy(p).fit(np.ones((2, 2)))
    with pytest.raises(ValueError, match="objective"):
        TabularPolicy(p).fit(p.reference, objective="l2")


def test_bad_inputs_name_the_field():
    p = random_problem(0, 3, 4, 1, 0.5)
    with pytest.raises(ValueError, match="features: expected shape"):
        LogLinearPolicy(p, np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match="hidden"):
        MLPPolicy(p, problem_features(p), hidden=0)
    with pytest.raises(ValueError, match="depth"):
        MLPPolicy(p, problem_features(p), depth=1.5)
    with pytest.raises(ValueError, match="theta: shape"):
        TabularPolicy(p).log_policy(torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="noise"):
        problem_features(p, noise=-1.0)
    with pytest.raises(ValueError, match="include"):
        problem_features(p, include=("nope",))


def test_import_dualgap_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, dualgap; dualgap.solve; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_fit_and_lagrangian_max_run_the_class_hooks():
    """A subclass that overrides the two hooks is used by fit (every stage) and by every
    Lagrangian maximization of dualgap.gaps (the starts, the budget and the problem passed
    through); the base class's own results are unchanged by the routing."""
    from dualgap.gaps import lagrangian_max

    p = random_problem(5, 3, 4, 1)
    calls = {"minimize": [], "maximize": []}

    feats = problem_features(p, noise=0.3, seed=1)

    class CountingLL(LogLinearPolicy):
        def minimize(self, theta, loss_fn, steps):
            calls["minimize"].append(steps)
            return super().minimize(theta, loss_fn, steps)

        def maximize_lagrangian(self, lam, theta0=None, budget=None, *, method="auto",
                                problem=None):
            calls["maximize"].append((theta0 is None, budget, problem is p))
            return super().maximize_lagrangian(lam, theta0, budget, method=method,
                                               problem=problem)

    cls, plain = CountingLL(p, feats), LogLinearPolicy(p, feats)
    target = lagrangian_policy(p, [0.7])
    fit = cls.fit(target, steps=40)
    assert calls["minimize"] == [40, 40]  # the "kl" stage, then the "nu" stage
    assert fit.nu == plain.fit(target, steps=40).nu
    res = lagrangian_max(p, cls, [0.7], steps=7, starts=2)
    assert calls["maximize"] == [(True, 7, True), (False, 7, True)]
    assert res.value == lagrangian_max(p, plain, [0.7], steps=7, starts=2).value

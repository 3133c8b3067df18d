"""The policy classes (dualgap.policies.classes): tabular, log-linear, MLP."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dualgap import lagrangian_policy
from dualgap.instances import random_problem
from dualgap.policies import (
    LogLinearPolicy,
    PolicyClass,
    TabularPolicy,
    problem_features,
)
from dualgap.testing import multipliers, problems


@settings(max_examples=10)
@given(problems(max_prompts=4, max_responses=6, min_constraints=1, max_constraints=3),
       st.data())
def test_loglinear_on_exact_features_contains_pi_lam(problem, data):
    """theta = (1, lam) / beta reproduces the core's closed-form pi_lam."""
    lam = data.draw(multipliers(problem.num_constraints, 5.0))
    cls = LogLinearPolicy(problem, problem_features(problem))
    theta = torch.as_tensor(np.concatenate([[1.0], lam]) / problem.beta)
    np.testing.assert_allclose(cls.policy(theta), lagrangian_policy(problem, lam), atol=1e-10)


def test_tabular_fit_is_exact_and_nu_zero():
    p = random_problem(3, 5, 7, 2, 0.3, support_fraction=0.6)
    target = lagrangian_policy(p, [0.7, 1.3])
    fit = TabularPolicy(p).fit(target)
    assert fit.nu < 1e-12
    np.testing.assert_allclose(fit.policy, target, atol=1e-13)


def test_tabular_score_step_matches_the_generic_least_squares():
    """The tabular override (exact) against the base class's Jacobian-based solve."""
    p = random_problem(6, 4, 6, 2, 0.4, support_fraction=0.7)
    cls = TabularPolicy(p)
    theta = cls.init_params(1)
    rng = np.random.default_rng(0)
    delta = torch.as_tensor(np.where(p.support, rng.normal(size=p.reward.shape), 0.0))
    w = torch.as_tensor(p.prompt_weights[:, None] * cls.policy(theta))
    fast = cls.score_step(theta, delta, w)
    slow = PolicyClass.score_step(cls, theta, delta, w, damping=1e-14)
    # both move the policy identically (the per-prompt shift is irrelevant)
    np.testing.assert_allclose(cls.policy(theta + fast), cls.policy(theta + slow), atol=1e-8)


def test_loglinear_jacobian_is_the_features():
    p = random_problem(7, 3, 5, 2, 0.4, support_fraction=0.7)
    cls = LogLinearPolicy(p, problem_features(p, noise=0.2))
    generic = PolicyClass.score_jacobian(cls, cls.init_params(0))
    np.testing.assert_allclose(cls.score_jacobian(cls.init_params(0)), generic, atol=1e-14)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0.0, 1e-6, 1e-2]))
def test_loglinear_dense_score_step_matches_the_generic_solve(seed, damping):
    """The closed-form dense step against the base class's gathered-Jacobian solve."""
    p = random_problem(seed, 5, 7, 2, 0.4, support_fraction=0.6)
    cls = LogLinearPolicy(p, problem_features(p, noise=0.3, seed=seed))
    theta = cls.init_params(seed)
    rng = np.random.default_rng(seed)
    delta = torch.as_tensor(np.where(p.support, rng.normal(size=p.reward.shape), 0.0))
    w = torch.as_tensor(p.prompt_weights[:, None] * cls.policy(theta))
    fast = cls.score_step(theta, delta, w, damping)
    slow = PolicyClass.score_step(cls, theta, delta, w, damping)
    np.testing.assert_allclose(fast.numpy(), slow.numpy(), rtol=1e-8, atol=1e-10)


@given(st.integers(0, 10_000))
def test_loglinear_ascent_step_is_the_newton_step_of_the_lagrangian(seed):
    """Where -hess L is positive definite the log-linear ascent step is -hess^-1 grad of
    L(pi_theta, lam) (autograd's Hessian); the base class's is the natural step."""
    from dualgap.gaps import lagrangian_max, lagrangian_objective
    from dualgap.policies.terms import problem_tensors

    p = random_problem(seed, 5, 7, 2, 0.4, support_fraction=0.6)
    cls = LogLinearPolicy(p, problem_features(p, noise=0.3, seed=seed))
    lam = np.random.default_rng(seed).uniform(0, 2, size=2)
    near = lagrangian_max(p, cls, lam, method="natural").theta  # a local maximum
    theta = near + 0.05 * cls.init_params(seed)
    t = problem_tensors(p)
    delta = torch.where(cls.support, (t["r"] + torch.einsum("i,ixy->xy", torch.as_tensor(lam),
                                                              t["h"])) / p.beta
                        - cls.scores(theta), 0.0)
    w = t["rho"][:, None] * torch.as_tensor(cls.policy(theta))
    hess = torch.autograd.functional.hessian(lambda th: lagrangian_objective(p, cls, th, lam),
                                             theta)
    th = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(lagrangian_objective(p, cls, th, lam), th)
    if torch.linalg.eigvalsh(-hess).min() <= 0:  # not concave here: the natural step
        np.testing.assert_allclose(cls.ascent_step(theta, delta, w).numpy(),
                                   cls.score_step(theta, delta, w).numpy(), rtol=0, atol=0)
        return
    want = -torch.linalg.solve(hess, grad)
    step = cls.ascent_step(theta, delta, w)
    # the Newton equation hess d = -grad, to the backward error of a shifted Cholesky solve
    # (tau = 1e-12 mean diag): a residual test, since the forward error grows with cond(hess)
    # (seed 12: cond ~1e6, the steps differ by 6e-7 relative while both solve the equation)
    residual = float(torch.linalg.norm(hess @ step + grad))
    scale = float(torch.linalg.norm(grad) + torch.linalg.norm(hess) * torch.linalg.norm(step))
    assert residual <= 1e-10 * scale, (residual, scale)
    np.testing.assert_allclose(step.numpy(), want.numpy(), rtol=1e-4, atol=1e-10)
    np.testing.assert_allclose(PolicyClass.ascent_step(cls, theta, delta, w).numpy(),
                               cls.score_step(theta, delta, w).numpy(), rtol=0, atol=0)
    assert not np.allclose(cls.score_step(theta, delta, w).numpy(), want.numpy(), rtol=1e-3)



def test_only_searches_run_to_convergence_take_newton_steps():
    """A search with a step budget (an algorithm's finite policy step) takes the natural steps
    of score_step exactly as before; one without a budget takes Newton steps, in fewer
    iterations, to the same maximizer."""
    from dualgap.gaps import lagrangian_max
    from dualgap.policies.optim import natural_ascent
    from dualgap.policies.terms import DTYPE

    p = random_problem(3, 6, 8, 2, 0.3, support_fraction=0.7)
    cls = LogLinearPolicy(p, problem_features(p, noise=0.3, seed=3))
    lam = np.array([0.7, 1.3])
    lam_t = torch.as_tensor(lam, dtype=DTYPE)
    theta0 = cls.init_params()
    nat, n_nat, _ = natural_ascent(p, cls, lam_t, theta0, 10)
    budgeted = lagrangian_max(p, cls, lam, steps=10, method="natural", starts=1)
    np.testing.assert_array_equal(budgeted.theta.numpy(), nat.numpy())
    full_nat, n_full_nat, ok_nat = natural_ascent(p, cls, lam_t, theta0, 200)
    full_newton, n_newton, ok_newton = natural_ascent(p, cls, lam_t, theta0, 200, newton=True)
    assert ok_nat and ok_newton and n_newton < n_full_nat
    np.testing.assert_allclose(full_newton.numpy(), full_nat.numpy(), rtol=1e-6, atol=1e-8)


def test_scores_batch_and_pullback_match_single_scores_and_autograd():
    """Each class's batched scores against its scores, row by row, and its pullback against
    autograd through them (the default hooks of PolicyClass give the same numbers)."""
    from dualgap.policies import MLPPolicy

    p = random_problem(2, 4, 6, 2, 0.3, support_fraction=0.6)
    feats = problem_features(p, noise=0.4)
    for cls in (TabularPolicy(p), LogLinearPolicy(p, feats),
                MLPPolicy(p, feats, hidden=3, depth=2, seed=1)):
        th = torch.stack([cls.init_params(s) for s in range(3)])
        f = cls.scores_batch(th)
        np.testing.assert_allclose(f.detach().numpy(),
                                   torch.stack([cls.scores(t) for t in th]).detach().numpy(),
                                   rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(PolicyClass.scores_batch(cls, th).detach().numpy(),
                                   f.detach().numpy(), rtol=1e-13, atol=1e-14)
        G = torch.as_tensor(np.random.default_rng(0).normal(size=f.shape))
        f2, pull = cls.scores_pullback(th)
        np.testing.assert_allclose(f2.numpy(), f.detach().numpy(), rtol=1e-13, atol=1e-14)
        want = torch.stack([torch.func.vjp(cls.scores, t)[1](G[k])[0]
                            for k, t in enumerate(th)])
        np.testing.assert_allclose(pull(G).numpy(), want.numpy(), rtol=1e-12, atol=1e-13)

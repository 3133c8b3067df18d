"""The two terms of the Lagrangian (dualgap.policies.terms) against the numpy core."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dualgap import constraint_slack, objective
from dualgap.instances import random_problem
from dualgap.policies import MLPPolicy, lagrangian_terms, problem_features, problem_tensors
from dualgap.testing import problems


@settings(max_examples=15)
@given(problems(max_prompts=3, max_responses=5, max_constraints=2, restrict_support=True),
       st.integers(0, 1000))
def test_terms_match_the_numpy_core(problem, seed):
    """J(pi_theta) and E_rho E_pi h in torch equal dualgap.objective / constraint_slack of the
    same policy (zeros outside the support contribute nothing)."""
    cls = MLPPolicy(problem, problem_features(problem), hidden=3, seed=seed)
    theta = cls.init_params(seed)
    J, s = lagrangian_terms(problem, cls, theta)
    pi = cls.policy(theta)
    assert abs(float(J) - objective(problem, pi)) <= 1e-10 * (1 + abs(float(J)))
    np.testing.assert_allclose(s.numpy(), constraint_slack(problem, pi), atol=1e-10)
    t = problem_tensors(problem)
    assert t is problem_tensors(problem)  # cached per problem
    assert torch.equal(t["support"], torch.as_tensor(problem.support))


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000))
def test_lagrangian_value_grad_has_the_value_and_gradient_of_autograd(seed):
    """The closed-form softmax gradient (batched) against autograd through the whole
    Lagrangian, one parameter at a time."""
    from dualgap.policies import MLPPolicy
    from dualgap.policies.terms import lagrangian_value_grad

    p = random_problem(seed, 4, 6, 2, 0.4, support_fraction=0.6)
    cls = MLPPolicy(p, problem_features(p, noise=0.2), hidden=3, seed=seed)
    lam = torch.as_tensor(np.random.default_rng(seed).uniform(0, 3, size=2))
    lams = torch.stack([lam, 0.5 * lam, torch.zeros(2, dtype=lam.dtype)])
    thetas = torch.stack([cls.init_params(seed + k) for k in range(3)])
    vals, grads = lagrangian_value_grad(p, cls, thetas, lams)
    for k in range(3):
        th = thetas[k].clone().requires_grad_(True)
        J, s = lagrangian_terms(p, cls, th)
        ref = J + lams[k] @ s
        (g_ref,) = torch.autograd.grad(ref, th)
        np.testing.assert_allclose(float(vals[k]), float(ref), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(grads[k].numpy(), g_ref.numpy(), rtol=1e-10, atol=1e-12)

"""Many Lagrangian searches as one tensor program (dualgap.policies.batch) against a loop of
single searches."""

import numpy as np
import pytest
import torch

from dualgap.instances import random_problem
from dualgap.policies import LogLinearPolicy, MLPPolicy, TabularPolicy, problem_features
from dualgap.policies.batch import search_batch


def _case():
    p = random_problem(3, 4, 7, 2, 0.3, support_fraction=0.7)
    lams = torch.tensor([[0.5, 1.0], [0.0, 2.0], [1.5, 0.1]], dtype=torch.float64)
    return p, lams


@pytest.mark.parametrize("budget", [25, None])
def test_batched_mlp_searches_equal_a_loop_of_single_searches(budget):
    """3 searches (different lam and start) in one batch against 3 maximize_lagrangian calls:
    the same iterations and the same theta (the batch shares evaluations only)."""
    p, lams = _case()
    cls = MLPPolicy(p, problem_features(p, noise=0.3), hidden=3, seed=1)
    starts = [None, cls.init_params(5), cls.init_params(6)]
    batch = cls.maximize_lagrangian_batch(lams, starts, budget)
    for k in range(3):
        theta, n = cls.maximize_lagrangian(lams[k], starts[k], budget)
        assert batch[k][1] == n
        np.testing.assert_allclose(batch[k][0].numpy(), theta.numpy(), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("method", ["auto", "natural", "lbfgs"])
def test_batched_natural_and_polish_equal_single_searches(method):
    """Log-linear and tabular (natural steps, then the batched L-BFGS polish where they did not
    converge) against single searches."""
    p, lams = _case()
    for cls in (LogLinearPolicy(p, problem_features(p, noise=0.5)), TabularPolicy(p)):
        starts = [None, cls.init_params(2), None]
        batch = cls.maximize_lagrangian_batch(lams, starts, 40, method=method)
        for k in range(3):
            theta, n = cls.maximize_lagrangian(lams[k], starts[k], 40, method=method)
            assert batch[k][1] == n
            # rtol 1e-6, not 1e-8: the iterates agree to 1e-13 until the last L-BFGS step, whose
            # curvature pair (s, y) is at rounding level near the maximizer, so that step
            # carries the evaluation's rounding (3e-8 on the log-linear search at lam = (1.5,
            # 0.1) on an AVX2 EPYC, iteration 20; 4e-14 at iteration 19)
            np.testing.assert_allclose(batch[k][0].numpy(), theta.numpy(), rtol=1e-6,
                                       atol=1e-10)


def test_a_class_that_overrides_the_single_search_gets_a_loop_over_it():
    p, lams = _case()
    calls = []

    class Own(LogLinearPolicy):
        def maximize_lagrangian(self, lam, theta0=None, budget=None, *, method="auto",
                                problem=None):
            calls.append(lam.clone())
            return self.init_params(), 7

    cls = Own(p, problem_features(p))
    out = cls.maximize_lagrangian_batch(lams, [None] * 3)
    assert [n for _, n in out] == [7, 7, 7]
    assert torch.equal(torch.stack(calls), lams)


def test_batch_arguments_are_checked():
    p, lams = _case()
    cls = MLPPolicy(p, problem_features(p), hidden=2)
    with pytest.raises(ValueError, match="theta0s: 2 starts for 3 multipliers"):
        cls.maximize_lagrangian_batch(lams, [None, None])
    with pytest.raises(ValueError, match="method: must be one of"):
        cls.maximize_lagrangian_batch(lams, [None] * 3, method="adam")
    assert search_batch(cls, p, lams[:0], [], None, "auto") == []

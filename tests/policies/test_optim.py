"""The default hooks' optimizers (dualgap.policies.optim)."""

import numpy as np
import pytest
import torch

from dualgap.policies import (
    lbfgs,
)


def test_lbfgs_reaches_the_rosenbrock_minimum():
    """Closed form: the 3-d Rosenbrock function has its only minimum at (1, 1, 1)."""
    x = torch.tensor([-1.2, 1.0, 0.5], dtype=torch.float64)

    def f(z):
        return (100 * (z[1:] - z[:-1] ** 2) ** 2 + (1 - z[:-1]) ** 2).sum()

    lbfgs(x, f, 2000)
    np.testing.assert_allclose(x.numpy(), np.ones(3), atol=1e-7)


def _rosenbrock(z):
    return (100 * (z[1:] - z[:-1] ** 2) ** 2 + (1 - z[:-1]) ** 2).sum()


def _batched(fn):
    """``fun(z, idx)`` of lbfgs_batch from a scalar torch function (autograd per row)."""
    def fun(z, idx):
        fs, gs = [], []
        for row in z:
            th = torch.from_numpy(row.copy()).requires_grad_(True)
            loss = fn(th)
            (g,) = torch.autograd.grad(loss, th)
            fs.append(float(loss))
            gs.append(g.numpy())
        return np.array(fs), np.array(gs)
    return fun


def test_lbfgs_batch_runs_the_single_algorithm_per_problem():
    """Each row of a batch takes lbfgs's iterates: same iteration counts and points, for one
    cap and for per-problem caps (a 4-problem batch against 4 single runs)."""
    from dualgap.policies.optim import lbfgs_batch

    starts = np.array([[-1.2, 1.0, 0.5], [0.3, -0.4, 2.0], [1.5, 1.5, -1.0], [0.0, 0.0, 0.0]])
    for caps in (np.array([8, 8, 8, 8]), np.array([3, 12, 40, 1])):
        x, its = lbfgs_batch(starts, _batched(_rosenbrock), caps)
        for k in range(4):
            t = torch.tensor(starts[k])
            n = lbfgs(t, _rosenbrock, int(caps[k]))
            assert its[k] == n
            np.testing.assert_allclose(x[k], t.numpy(), rtol=1e-10, atol=1e-12)


def test_lbfgs_batch_converges_like_lbfgs():
    """Run to convergence, each row reaches the Rosenbrock minimum (1, 1, 1)."""
    from dualgap.policies.optim import lbfgs_batch

    starts = np.array([[-1.2, 1.0, 0.5], [0.3, -0.4, 2.0]])
    x, its = lbfgs_batch(starts, _batched(_rosenbrock), 2000)
    np.testing.assert_allclose(x, np.ones((2, 3)), atol=1e-7)
    assert (its < 2000).all()


def test_lbfgs_batch_refuses_a_non_finite_start():
    from dualgap.policies.optim import lbfgs_batch

    def fun(z, idx):
        return np.array([np.inf] * len(idx)), np.zeros_like(z)

    with pytest.raises(ValueError, match="theta: the objective is not finite"):
        lbfgs_batch(np.zeros((2, 3)), fun, 10)

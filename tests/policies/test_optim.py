"""The default hooks' optimizers (dualgap.policies.optim)."""

import numpy as np
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

"""The parametrization gap nu (dualgap.gaps.nu)."""

import numpy as np
import pytest

from dualgap import (
    solve,
)
from dualgap.gaps import (
    parametrization_gap,
)
from dualgap.instances import random_problem
from dualgap.policies import LogLinearPolicy, TabularPolicy, problem_features
from dualgap.testing import problems

small = problems(max_prompts=4, max_responses=6, min_constraints=1, max_constraints=2)


def test_parametrization_gap_targets_and_sides():
    p = random_problem(2, 4, 6, 2, 0.5)
    sol = solve(p)
    exact = parametrization_gap(p, LogLinearPolicy(p, problem_features(p)),
                                [np.zeros(2), sol.lam, 2 * sol.lam])
    assert exact.nu < 1e-6 and len(exact.fits) == 3
    noisy = parametrization_gap(p, LogLinearPolicy(p, problem_features(p, noise=0.3)),
                                {"pi*": sol.policy, "ref": p.reference})
    assert noisy.nu > 1e-3 and noisy.worst in ("pi*", "ref")
    assert noisy.nu == max(noisy.nu_1, noisy.nu_kl)
    with pytest.raises(ValueError, match="targets"):
        parametrization_gap(p, TabularPolicy(p), [np.zeros(5)])

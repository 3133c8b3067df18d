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


def test_proves_not_a_minimizer_from_a_given_witness(monkeypatch):
    """With ``theta0`` the search starts there and fits nothing; the verdict is a proof either
    way: a lam with D(lam) > D* on a class holding every pi_lam is flagged, lam* is not."""
    import dualgap.gaps.nu as nu_mod
    from dualgap.gaps import proves_not_a_minimizer

    p = random_problem(2, 4, 6, 2, 0.5)
    sol = solve(p)
    pc = LogLinearPolicy(p, problem_features(p))
    far = 3 * sol.lam + 0.5
    wit_far = parametrization_gap(p, pc, [far]).fits[0].theta
    wit_opt = parametrization_gap(p, pc, [sol.lam]).fits[0].theta

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted although a witness was given")

    monkeypatch.setattr(nu_mod, "parametrization_gap", no_fit)
    assert proves_not_a_minimizer(p, pc, far, sol.dual_value, theta0=wit_far)
    assert not proves_not_a_minimizer(p, pc, sol.lam, sol.dual_value, theta0=wit_opt)
    # from the class's own start (a poor witness of pi_far) the search still finds D_p > D*
    assert proves_not_a_minimizer(p, pc, far, sol.dual_value, theta0=pc.init_params())
    with pytest.raises(ValueError, match="theta"):
        proves_not_a_minimizer(p, pc, far, sol.dual_value, theta0=np.zeros(pc.num_params + 1))
    with pytest.raises(AssertionError, match="fitted"):  # no witness: it fits one first
        proves_not_a_minimizer(p, pc, far, sol.dual_value)

"""Tests of dualgap/algorithms/estimators.py: the second moment of the sampled slack against a
brute-force enumeration of every draw, unbiasedness by Monte Carlo, the exact branch."""

import itertools

import numpy as np
import pytest

from dualgap.algorithms.estimators import estimate_slack, sampled_slack, slack_second_moment
from dualgap.dual import constraint_slack
from dualgap.instances import random_problem


def _enumerated_second_moment(problem, pi, n):
    """E ||u_hat||^2 summed over every joint draw of ``n`` responses for every prompt."""
    X, Y = pi.shape
    rho, g, c = problem.prompt_weights, problem.utilities, problem.offsets
    total = 0.0
    for draw in itertools.product(range(Y), repeat=X * n):
        y = np.array(draw).reshape(X, n)
        prob = np.prod(pi[np.arange(X)[:, None], y])
        u = sum(rho[x] * g[:, x, y[x]].mean(axis=1) for x in range(X)) - c
        total += prob * float(u @ u)
    return total


@pytest.mark.parametrize("seed, n", [(0, 1), (1, 2), (2, 3)])
def test_second_moment_equals_the_enumeration_of_every_draw(seed, n):
    p = random_problem(seed, 2, 3, 2)
    pi = np.random.default_rng(seed).dirichlet(np.ones(3), size=2)
    assert slack_second_moment(p, pi, n) == pytest.approx(_enumerated_second_moment(p, pi, n),
                                                          rel=1e-12)


def test_sampled_slack_is_unbiased_and_the_exact_branch_is_exact():
    p = random_problem(3, 4, 5, 2)
    pi = p.reference
    exact = constraint_slack(p, pi)
    rng = np.random.default_rng(0)
    draws = np.array([sampled_slack(p, pi, 4, rng) for _ in range(4000)])  # size = (R, m)
    # the mean of R draws is within 5 standard errors (variance from the exact second moment)
    var = slack_second_moment(p, pi, 4) - exact @ exact  # summed over constraints
    assert np.abs(draws.mean(axis=0) - exact).max() <= 5 * np.sqrt(var / len(draws))
    assert np.array_equal(estimate_slack(p, pi, None, rng), exact)
    assert np.array_equal(estimate_slack(p, pi, 3, np.random.default_rng(7)),
                          sampled_slack(p, pi, 3, np.random.default_rng(7)))


@pytest.mark.parametrize("bad", [0, -1, 2.0, None])
def test_a_bad_sample_count_names_the_field(bad):
    p = random_problem(0, 2, 3, 1)
    with pytest.raises(ValueError, match=f"num_samples: must be a positive int, got {bad!r}"):
        slack_second_moment(p, p.reference, bad)

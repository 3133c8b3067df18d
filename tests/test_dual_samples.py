"""The samples of a dual step and the slack's lower confidence bound (dualgap.dual_samples)."""

from statistics import NormalDist

import numpy as np
import pytest

import dualgap as dg
from dualgap.dual_samples import (
    OnPolicySamples,
    check_confidence,
    confidence_z,
    exact_samples,
    policy_samples,
    slack_margin,
)
from dualgap.dual_secant import slack_noise
from dualgap.instances import random_problem


def test_confidence_levels_and_their_quantiles():
    assert check_confidence(None) is None and check_confidence(0) is None
    assert check_confidence(0.9) == 0.9
    assert confidence_z(None) == 0.0 and confidence_z(0.5) == 0.0
    assert confidence_z(NormalDist().cdf(1.0)) == pytest.approx(1.0, rel=1e-12)
    assert confidence_z(0.95) == pytest.approx(1.6448536, rel=1e-6)
    for bad in (0.3, 1.0, 1.5, -0.1, "0.9", True, float("nan")):
        with pytest.raises(ValueError, match="^dual.confidence: must be 0"):
            check_confidence(bad, "dual.confidence")


def test_margin_is_z_standard_errors_of_the_sampled_slack():
    p = random_problem(4, num_prompts=6, num_responses=8, num_constraints=2)
    pi = dg.lagrangian_policy(p, np.array([0.4, 0.7]))
    s = policy_samples(p, pi, 8, np.random.default_rng(0))
    se = np.sqrt(np.diag(slack_noise(s)))
    assert (se > 0).all()
    np.testing.assert_allclose(slack_margin(s, 0.9), NormalDist().inv_cdf(0.9) * se, rtol=1e-12)
    assert not slack_margin(s, None).any() and not slack_margin(s, 0.5).any()
    # exact expectations: no noise, no margin, whatever the level
    assert not slack_margin(exact_samples(p, pi), 0.99).any()
    # one draw per prompt: no noise estimate, no margin
    assert not slack_margin(policy_samples(p, pi, 1, np.random.default_rng(0)), 0.9).any()


def test_the_margin_covers_the_slack_at_its_level():
    # u_hat - z SE <= u (the true slack) in about a fraction `level` of the draws
    p = random_problem(7, num_prompts=10, num_responses=12, num_constraints=1)
    pi = dg.lagrangian_policy(p, np.array([0.5]))
    u = exact_samples(p, pi).slack()
    rng = np.random.default_rng(1)
    draws = [policy_samples(p, pi, 16, rng) for _ in range(2000)]
    for level in (0.75, 0.9):
        covered = np.mean([(s.slack() - slack_margin(s, level) <= u).all() for s in draws])
        assert abs(covered - level) < 0.04, (level, covered)


def test_samples_reject_bad_input():
    with pytest.raises(ValueError, match="^reward: expected shape"):
        OnPolicySamples(np.zeros(3), np.zeros((1, 1, 3)), np.zeros(1), 1.0)
    with pytest.raises(ValueError, match="^beta: must be"):
        OnPolicySamples(np.zeros((2, 3)), np.zeros((1, 2, 3)), np.zeros(1), 0.0)

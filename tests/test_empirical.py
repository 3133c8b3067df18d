"""Empirical instances and response sampling (dualgap.empirical)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dualgap as dg
from dualgap.empirical import empirical_problem, empirical_problem_from_scores, sample_responses
from dualgap.instances import random_problem
from dualgap.testing import problems


def test_sampler_frequencies_match_the_policy_chi_square():
    p = random_problem(0, 3, 6, 1, support_fraction=0.5)
    n = 40_000
    idx = sample_responses(p.reference, n, np.random.default_rng(1))
    assert idx.shape == (3, n)
    for x in range(3):
        counts = np.bincount(idx[x], minlength=6)
        sup = p.reference[x] > 0
        assert counts[~sup].sum() == 0  # never outside the support
        expected = n * p.reference[x, sup]
        chi2 = float(((counts[sup] - expected) ** 2 / expected).sum())
        # chi-square with <= 5 dof: P(chi2 > 25) < 2e-4
        assert chi2 < 25.0, (x, counts, expected)


@given(problems(max_constraints=2, restrict_support=True), st.integers(1, 7), st.integers(0, 99))
def test_empirical_instance_keeps_threshold_semantics(p, K, seed):
    idx = sample_responses(p.reference, K, seed)
    e = empirical_problem(p, K, samples=idx)
    rows = np.arange(p.num_prompts)[:, None]
    assert e.reward.shape == (p.num_prompts, K)
    np.testing.assert_array_equal(e.reward, p.reward[rows, idx])
    np.testing.assert_allclose(e.reference, 1.0 / K)
    assert e.relative == p.relative and e.beta == p.beta
    np.testing.assert_array_equal(e.thresholds, p.thresholds)
    # relative: c_hat = E_rho (sample mean of g) + b; absolute: c_hat = b
    sample_mean = np.einsum("x,ixk->i", p.prompt_weights, p.utilities[:, rows, idx]) / K
    expect = sample_mean + p.thresholds if p.relative else p.thresholds
    np.testing.assert_allclose(e.offsets, expect, atol=1e-12)


def test_empirical_dual_is_the_sample_average_formula():
    p = random_problem(3, 4, 9, 2, beta=0.4)
    K = 5
    idx = sample_responses(p.reference, K, 7)
    e = empirical_problem(p, K, samples=idx)
    lam = np.array([0.3, 1.1])
    rows = np.arange(4)[:, None]
    s = (p.reward[rows, idx] + np.einsum("i,ixk->xk", lam, p.utilities[:, rows, idx]))
    c_hat = e.offsets
    by_hand = p.beta * p.prompt_weights @ np.log(np.exp(s / p.beta).mean(axis=1)) - lam @ c_hat
    assert dg.dual_value(e, lam) == pytest.approx(by_hand, rel=1e-12)


def test_from_scores_and_errors():
    e = empirical_problem_from_scores(np.zeros((2, 3)), np.ones((1, 2, 3)), [0.1], 0.5)
    np.testing.assert_allclose(e.reference, 1 / 3)
    p = random_problem(0, 2, 4, 1, support_fraction=0.5)
    with pytest.raises(ValueError, match="num_samples"):
        sample_responses(p.reference, 0)
    with pytest.raises(ValueError, match="policy"):
        sample_responses(np.array([[0.5, 0.6]]), 3)
    with pytest.raises(ValueError, match="samples"):
        empirical_problem(p, 2, samples=np.zeros((2, 3), dtype=int))
    off = np.argwhere(~p.support)
    if off.size:
        bad = np.zeros((2, 1), dtype=int)
        bad[off[0][0], 0] = off[0][1]
        bad[1 - off[0][0], 0] = int(np.argmax(p.support[1 - off[0][0]]))
        with pytest.raises(ValueError, match="outside the reference support"):
            empirical_problem(p, 1, samples=bad)
    with pytest.raises(ValueError, match="rng"):
        sample_responses(p.reference, 2, rng="seed")

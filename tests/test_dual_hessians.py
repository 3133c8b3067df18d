"""The batched Hessians (dual_hessians, dual_sums_batch) against the one-multiplier core."""

import numpy as np
import pytest

import dualgap as dg
from dualgap.dual import dual_hessians
from dualgap.dual_kernels import dual_sums, dual_sums_batch
from dualgap.instances import random_problem


def _lams(rng, K, m):
    lams = rng.uniform(0, 3, (K, m))
    lams[0] = 0.0  # lam = 0: no active constraint
    if m > 1:
        lams[1, 1] = 0.0  # some constraints inactive
    return lams


@pytest.mark.parametrize("seed, m, beta", [(0, 1, 0.3), (1, 3, 0.05), (2, 2, 2.0)])
def test_dual_hessians_are_dual_hessian_at_each_row(seed, m, beta):
    """Row k is dual_hessian at lams[k], bit for bit, on a sparse support with large exponents
    (fails if a multiplier's exponent, support mask or the batch's indexing is wrong)."""
    p = random_problem(seed, 7, 11, m, beta, support_fraction=0.6)
    assert not p.support.all()
    lams = _lams(np.random.default_rng(seed), 9, m)
    got = dual_hessians(p, lams)
    assert got.shape == (9, m, m)
    for k, lam in enumerate(lams):
        np.testing.assert_array_equal(got[k], dg.dual_hessian(p, lam))


def test_dual_hessians_center_where_the_core_does():
    """Utilities with a large common offset: the uncentered sums lose every digit, the core
    recomputes centered; the batch must too (a wrong centering is off by ~1e8 * eps * 1e8)."""
    p = random_problem(3, 6, 9, 2, 0.5, support_fraction=0.7)
    q = p.replace(utilities=p.utilities + 1e8, thresholds=p.thresholds)
    lams = _lams(np.random.default_rng(3), 5, 2)
    got = dual_hessians(q, lams)
    for k, lam in enumerate(lams):
        np.testing.assert_array_equal(got[k], dg.dual_hessian(q, lam))
        # the covariance does not see the offset: close to the un-offset problem's Hessian
        np.testing.assert_allclose(got[k], dg.dual_hessian(p, lam), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("block_entries", [7, 30, 99, 180, 360, 1 << 16])
def test_dual_sums_batch_splits_rows_and_multipliers(block_entries):
    """Blocks of rows and of multipliers of every size (one entry per block up to the whole
    table for all K at once): each row is dual_sums at that multiplier, every order, with and
    without the cached exponent base q, with some constraints inactive and with all active
    (the batched exponent)."""
    p = random_problem(4, 9, 10, 3, 0.2, support_fraction=0.7)
    rng = np.random.default_rng(4)
    lams = np.vstack([_lams(rng, 6, 3), rng.uniform(0.1, 3.0, (8, 3))])
    q = p.log_reference + p.reward / p.beta
    for order in (0, 1, 2):
        for base in (None, q):
            kw = {} if base is None else {"base": q, "base_beta": p.beta}
            log_ref = p.log_reference if base is None else None
            args = (p.reward, p.utilities, log_ref, p.prompt_weights)
            bat = dual_sums_batch(*args, lams, p.beta, order, block_entries, **kw)
            assert bat.value.shape == (14,) and bat.second.shape == (14, 3, 3)
            for k, lam in enumerate(lams):
                one = dual_sums(*args, lam, p.beta, order, block_entries, **kw)
                assert bat.value[k] == one.value
                np.testing.assert_array_equal(bat.first[k], one.first)
                np.testing.assert_array_equal(bat.second[k], one.second)


def test_dual_hessians_match_finite_differences_of_the_gradient():
    p = random_problem(5, 8, 12, 3, 0.4, support_fraction=0.8)
    lams = np.random.default_rng(5).uniform(0.1, 2.0, (4, 3))
    step = 1e-5
    H = dual_hessians(p, lams)
    for k, lam in enumerate(lams):
        for i in range(3):
            e = np.zeros(3)
            e[i] = step
            fd = (dg.dual_gradient(p, lam + e) - dg.dual_gradient(p, lam - e)) / (2 * step)
            np.testing.assert_allclose(H[k][:, i], fd, rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(H[k], H[k].T)


def test_dual_hessians_empty_batch_and_no_constraints():
    p = random_problem(6, 4, 5, 2, 0.5)
    assert dual_hessians(p, np.zeros((0, 2))).shape == (0, 2, 2)
    p0 = random_problem(6, 4, 5, 0, 0.5)
    assert dual_hessians(p0, np.zeros((3, 0))).shape == (3, 0, 0)


@pytest.mark.parametrize("lams, message", [
    ([1.0, 2.0], r"^lams: shape \(2,\) does not match \(K, m = 2\)$"),
    (np.ones((3, 3)), r"^lams: shape \(3, 3\) does not match \(K, m = 2\)$"),
    ([[1.0, 0.0], [np.nan, 1.0]], r"^lams: non-finite value in row 1 = \[nan, 1.0\]$"),
    ([[1.0, 0.0], [0.0, 1.0], [0.5, -1.0]], r"^lams: multipliers must be >= 0 in row 2 = "),
    ([[1.0, 0.0], [1e308, 0.0]], r"^lams: row 1 = \[1e\+308, 0.0\] is too large for this "),
    ([[1j, 0.0]], r"^lams: must hold real numbers"),
    ("1, 2", r"^lams: must hold real numbers"),
])
def test_dual_hessians_bad_input(lams, message):
    p = random_problem(7, 3, 4, 2, 0.5)
    with pytest.raises(ValueError, match=message):
        dual_hessians(p, lams)


def test_dual_hessians_overflowing_hessian_and_bad_problem():
    p = random_problem(8, 3, 4, 2, 0.5)
    with pytest.raises(ValueError, match=r"^utilities: hess D = Cov\(g\) / beta overflows"):
        dual_hessians(p.replace(utilities=p.utilities * 1e300), np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"^problem: expected an AlignmentProblem, got dict"):
        dual_hessians({}, np.zeros((1, 2)))

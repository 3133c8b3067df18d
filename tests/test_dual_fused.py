"""The fused one-pass oracle (``dual_sums``) against a direct whole-array computation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dualgap as dg
import dualgap.dual as dual
import dualgap.dual_kernels as dual_kernels
from dualgap.instances import random_problem
from dualgap.testing import multipliers, problems


def _direct(p, lam):
    """D, grad and hess from the textbook formulas on the whole table (scipy's logsumexp,
    explicitly centered covariance): another route than the fused blocks."""
    from scipy.special import logsumexp

    z = p.log_reference + (p.reward + np.tensordot(lam, p.utilities, 1)) / p.beta  # (X, Y)
    log_z = logsumexp(z, axis=1)  # size = (X,)
    pi = np.exp(z - log_z[:, None])
    rho, g, c = p.prompt_weights, p.utilities, p.offsets
    mu = np.einsum("xy,ixy->ix", pi, g)  # size = (m, X)
    gc = g - mu[:, :, None]
    cov = np.einsum("x,xy,ixy,jxy->ij", rho, pi, gc, gc)
    return p.beta * rho @ log_z - lam @ c, mu @ rho - c, cov / p.beta


@settings(max_examples=40, deadline=None)
@given(problems(), st.data(), st.sampled_from([1, 7, 64, 1 << 14]))
def test_fused_pass_matches_the_direct_formulas(p, data, block):
    lam = data.draw(multipliers(p.num_constraints, 3.0))
    value, grad, hess = _direct(p, lam)
    sums = dual.dual_sums(
        p.reward, p.utilities, p.log_reference, p.prompt_weights, lam, p.beta, 2, block
    )
    ev = sums.finish(lam, p.beta, p.offsets, 2)
    assert ev.value == pytest.approx(value, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(ev.gradient, grad, rtol=1e-11, atol=1e-11)
    scale = max(1.0, float(np.abs(hess).max(initial=0.0)))
    np.testing.assert_allclose(ev.hessian, hess, rtol=0, atol=1e-9 * scale)
    for order in (0, 1):  # lower orders: the same numbers, less work
        low = dg.dual_oracle(p, lam, order)
        assert low.value == pytest.approx(ev.value, rel=1e-13, abs=1e-13)
        assert (low.gradient is None) == (order == 0) and low.hessian is None
        if order == 1:
            np.testing.assert_allclose(low.gradient, ev.gradient, rtol=1e-12, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(problems(min_prompts=2), st.data())
def test_sums_add_up_over_any_split_of_the_prompts(p, data):
    """The identity chunked problems rest on: sums over disjoint prompt sets add."""
    lam = data.draw(multipliers(p.num_constraints, 3.0))
    cut = data.draw(st.integers(1, p.num_prompts - 1))
    args = (p.reward, p.utilities, p.log_reference, p.prompt_weights)
    whole = dual.dual_sums(*args, lam, p.beta)
    parts = dual.dual_sums(*(a[..., :cut, :] if a.ndim > 1 else a[:cut] for a in args), lam,
                           p.beta)
    parts += dual.dual_sums(*(a[..., cut:, :] if a.ndim > 1 else a[cut:] for a in args), lam,
                            p.beta)
    assert parts.value == pytest.approx(whole.value, rel=1e-13, abs=1e-13)
    np.testing.assert_allclose(parts.first, whole.first, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(parts.second, whole.second, rtol=1e-12, atol=1e-13)


def test_large_offsets_do_not_cost_the_hessian_its_digits(monkeypatch):
    """Cov is shift-invariant: g + 1e7 must give the Hessian of g.  The uncentered formula
    alone loses ~14 digits here; the centered redo keeps them (shown by switching it off)."""
    p = random_problem(3, 6, 40, 2, beta=0.3)
    shifted = p.replace(utilities=p.utilities + 1e7, thresholds=p.thresholds, relative=True)
    lam = np.array([0.4, 1.3])
    want = dg.dual_hessian(p, lam)
    np.testing.assert_allclose(dg.dual_hessian(shifted, lam), want, rtol=1e-7, atol=1e-9)
    # never redo: the uncentered value only (the constant is read where the block sums live)
    monkeypatch.setattr(dual_kernels, "CANCELLATION", 0.0)
    lost = dg.dual_hessian(shifted, lam)
    assert np.abs(lost - want).max() > 1e-3 * np.abs(want).max()


def test_order_must_be_0_1_or_2():
    p = random_problem(0, 2, 3, 1)
    for bad in (3, -1, True, 1.5):
        with pytest.raises(ValueError, match="order: must be 0, 1 or 2"):
            dg.dual_oracle(p, [0.5], order=bad)

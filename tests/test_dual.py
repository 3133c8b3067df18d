"""The closed-form dual against finite differences, brute force and its own identities."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import dualgap as dg
from dualgap.testing import multipliers, problems


def _brute_dual(p, lam):
    """D(lam) = max_pi L(pi, lam), attained at pi_lam: J(pi_lam) + lam^T E h (another route)."""
    pi = dg.lagrangian_policy(p, lam)
    return dg.objective(p, pi) + lam @ dg.constraint_slack(p, pi)


@given(problems(min_constraints=1), st.data())
def test_gradient_and_hessian_match_finite_differences(p, data):
    lam = data.draw(multipliers(p.num_constraints, 3.0)) + 0.05
    ev = dg.dual_oracle(p, lam)
    step = 1e-5
    for i in range(p.num_constraints):
        e = np.zeros_like(lam)
        e[i] = step
        fd = (dg.dual_value(p, lam + e) - dg.dual_value(p, lam - e)) / (2 * step)
        assert abs(fd - ev.gradient[i]) <= 1e-6 * (1 + abs(fd))
        fd_h = (dg.dual_gradient(p, lam + e) - dg.dual_gradient(p, lam - e)) / (2 * step)
        np.testing.assert_allclose(ev.hessian[:, i], fd_h, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ev.hessian, ev.hessian.T)
    assert np.linalg.eigvalsh(ev.hessian).min() >= -1e-10  # Lemma 1: convex


@given(problems(), st.data())
def test_dual_equals_lagrangian_at_its_maximizer(p, data):
    lam = data.draw(multipliers(p.num_constraints, 3.0))
    assert abs(dg.dual_value(p, lam) - _brute_dual(p, lam)) <= 1e-9 * (
        1 + abs(dg.dual_value(p, lam))
    )


@given(problems(), st.data())
def test_pi_lam_maximizes_the_lagrangian(p, data):
    """L(pi, lam) <= D(lam) for random policies on the support (weak duality pointwise)."""
    lam = data.draw(multipliers(p.num_constraints, 3.0))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    D = dg.dual_value(p, lam)
    for _ in range(5):
        pi = rng.dirichlet(np.ones(p.num_responses), p.num_prompts) * p.support
        pi /= pi.sum(axis=1, keepdims=True)
        assert dg.lagrangian(p, pi, lam) <= D + 1e-10


@given(problems(restrict_support=True), st.data())
def test_zero_probability_outside_support(p, data):
    lam = data.draw(multipliers(p.num_constraints, 5.0))
    pi = dg.lagrangian_policy(p, lam)
    assert (pi[~p.support] == 0).all()
    np.testing.assert_allclose(pi.sum(axis=1), 1.0)
    off_rows = (~p.support).any(axis=1)
    if off_rows.any():  # mass outside the support: infinite KL exactly on those prompts
        leaky = pi.copy()
        leaky[off_rows] = 0.5 * pi[off_rows] + 0.5 * (~p.support[off_rows]) / (
            ~p.support[off_rows]
        ).sum(axis=1, keepdims=True)
        kl = dg.kl_divergence(p, leaky)
        assert np.isinf(kl[off_rows]).all() and np.isfinite(kl[~off_rows]).all()


def test_extreme_scores_do_not_overflow():
    p = dg.instances.random_problem(1, 4, 6, 2, beta=1e-4, scale=1e4)
    ev = dg.dual_oracle(p, [3.0, 1.0])
    assert (
        np.isfinite(ev.value) and np.isfinite(ev.gradient).all() and np.isfinite(ev.hessian).all()
    )


def test_bad_multipliers():
    p = dg.instances.random_problem(0, 2, 3, 2)
    for lam, msg in (
        ([1.0], "lam: shape"),
        ([-1.0, 0], "lam: multipliers must be >= 0"),
        ([np.nan, 0], "lam: non-finite"),
    ):
        try:
            dg.dual_value(p, lam)
        except ValueError as e:
            assert msg in str(e)
        else:
            raise AssertionError("no error")

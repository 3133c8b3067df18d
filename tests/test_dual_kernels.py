"""The block sums' cached-exponent path (q = log pi_ref + r / beta) against the plain one."""

import numpy as np
import pytest

from dualgap.dual_kernels import LogOf, check_base, dual_sums, policy_sums
from dualgap.instances import random_problem


@pytest.mark.parametrize("m", [0, 1, 3])
def test_q_path_gives_the_log_reference_paths_sums(m):
    p = random_problem(5 + m, 30, 25, m, beta=0.3, support_fraction=0.7)
    lam = np.linspace(0.2, 1.4, m)
    q = p.log_reference + p.reward / p.beta
    args = (p.utilities,)
    for order in (0, 1, 2):
        want = dual_sums(p.reward, *args, p.log_reference, p.prompt_weights, lam, p.beta, order,
                         block_entries=100)
        got = dual_sums(p.reward, *args, None, p.prompt_weights, lam, p.beta, order,
                        block_entries=100, base=q, base_beta=p.beta)
        assert got.value == pytest.approx(want.value, abs=1e-13)
        np.testing.assert_allclose(got.first, want.first, atol=1e-13)
        np.testing.assert_allclose(got.second, want.second, atol=1e-13)
    out_a, out_b = np.empty_like(q), np.empty_like(q)
    a = policy_sums(p.reward, *args, p.log_reference, p.prompt_weights, lam, p.beta, out_a)
    b = policy_sums(p.reward, *args, None, p.prompt_weights, lam, p.beta, out_b, base=q,
                    base_beta=p.beta)
    np.testing.assert_allclose(out_b, out_a, atol=1e-15)
    assert b.kl == pytest.approx(a.kl, abs=1e-13) and b.reward == pytest.approx(a.reward)


def test_q_serves_only_its_own_beta():
    check_base(0.5, 0.5 * (1 + 2e-16))  # beta' s against beta: a few ulps apart
    with pytest.raises(ValueError, match=r"^base_beta: 0.25 does not match beta = 0.5"):
        check_base(0.5, 0.25)
    with pytest.raises(ValueError, match=r"^base_beta: None"):
        check_base(0.5, None)


def test_log_of_computes_per_slice_with_minus_inf_off_the_support():
    a = np.array([[0.5, 0.0], [1.0, 0.25]])
    np.testing.assert_array_equal(LogOf(a)[1:], np.log(a[1:]))
    assert LogOf(a)[0:1][0, 1] == -np.inf

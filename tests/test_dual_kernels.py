"""The block sums' cached-exponent path (q = log pi_ref + r / beta) against the plain one."""

import numpy as np
import pytest

from dualgap.dual_kernels import LogOf, check_base, dual_sums, policy_sums
from dualgap.instances import random_problem
from dualgap.testing import assert_same_bits_on_threads


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


@pytest.mark.parametrize("m", [0, 1, 3])
def test_block_sums_are_the_same_bits_on_any_number_of_threads(m):
    """The blocks split over threads, their additions made in block order: 1, 2 and 3
    threads give the same bits at every order, for one and for several multipliers (the
    centred redo included: one utility is 1e6 + noise)."""
    from dualgap.dual_kernels import dual_sums_batch
    p = random_problem(41 + m, 37, 23, m, support_fraction=0.7)
    G = p.utilities.copy()
    if m:
        G[0] = 1e6 + 1e-2 * G[0]
    lams = np.abs(np.random.default_rng(m).normal(size=(5, m)))
    lams[1] = 0.0

    def sums() -> list[np.ndarray]:
        out = []
        for order in (0, 1, 2):
            for block in (23, 100, 2000):  # one row per block, several, several multipliers
                s = dual_sums_batch(p.reward, G, p.log_reference, p.prompt_weights, lams,
                                    p.beta, order, block)
                out += [s.value, s.first, s.second]
        return out

    assert_same_bits_on_threads(sums)


@pytest.mark.parametrize("m", [0, 2])
def test_policy_pass_and_q_are_the_same_bits_on_any_number_of_threads(m):
    from dualgap.scaling import _log_reference_plus
    p = random_problem(51 + m, 37, 23, m, support_fraction=0.7)
    lam = np.linspace(0.4, 1.3, m)

    def passes() -> list:
        got = []
        for sums in (True, False):
            for block in (23, 100):
                out = np.empty_like(p.reward)
                s = policy_sums(p.reward, p.utilities, p.log_reference, p.prompt_weights, lam,
                                p.beta, out, sums, block)
                got += [out, s.utilities, np.array([s.reward, s.kl, s.finite])]
        return got + [_log_reference_plus(p.replace())]

    assert_same_bits_on_threads(passes)

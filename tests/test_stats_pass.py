"""The numpy stats pass and q = log pi_ref + r / beta (dualgap.stats_pass)."""

import numpy as np
import pytest

from dualgap.instances import random_problem
from dualgap.stats_pass import _log_reference_plus, _stats_numpy, log_reference_blocks
from dualgap.testing import assert_same_bits_on_threads


@pytest.mark.parametrize("m", [0, 1, 3])
def test_stats_pass_and_q_are_the_same_bits_on_any_number_of_threads(monkeypatch, m):
    from dualgap import stats_pass

    monkeypatch.setattr(stats_pass, "BLOCK_ENTRIES", 50)  # several blocks per thread
    p = random_problem(61 + m, 37, 23, m, support_fraction=0.7)
    assert_same_bits_on_threads(lambda: [_stats_numpy(p, True), _log_reference_plus(p)])


def test_stats_pass_against_whole_table_numpy():
    p = random_problem(7, 30, 20, 2, support_fraction=0.6)
    st = _stats_numpy(p, True)
    supp = p.reference > 0
    r = np.where(supp, p.reward, -np.inf)
    np.testing.assert_array_equal(st["shift"], r.max(axis=1))
    np.testing.assert_array_equal(st["width"], r.max(axis=1)
                                  - np.where(supp, p.reward, np.inf).min(axis=1))
    assert st["entries"] == int(supp.sum()) and st["r_abs"] == np.abs(p.reward).max()
    np.testing.assert_array_equal(st["g_abs"], np.abs(p.utilities).max(axis=(1, 2)))
    np.testing.assert_array_equal(st["top"], np.where(supp, p.utilities, -np.inf).max(axis=2))
    want = np.einsum("x,xy,ixy->i", p.prompt_weights, p.reference, p.utilities)
    np.testing.assert_allclose(st["ref_g"], want, rtol=1e-13)
    with np.errstate(divide="ignore"):
        np.testing.assert_array_equal(_log_reference_plus(p), np.log(p.reference)
                                      + p.reward * (1.0 / p.beta))


def test_log_reference_blocks_covers_the_rows_asked_for():
    p = random_problem(3, 10, 4, 1)
    out = np.zeros_like(p.reward)
    assert list(log_reference_blocks(p, out, 3, 2, 9)) == [(2, 5), (5, 8), (8, 9)]
    assert (out[:2] == 0).all() and (out[9:] == 0).all()

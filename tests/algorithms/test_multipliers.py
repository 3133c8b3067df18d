"""The multipliers and the one projected dual step (dualgap.algorithms.multipliers)."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dualgap.algorithms.dual_descent import projected_step as dd_step
from dualgap.algorithms.multipliers import (
    LinearMultiplier,
    PIDMultiplier,
    make_multiplier,
    projected_step,
)

vec = arrays(np.float64, 3, elements=st.floats(-5, 5))


@given(vec, vec, st.floats(0, 3))
def test_projected_step_is_the_clipped_step(lam, u, eta):
    """[lam - eta u]_+ against its definition, for any lam >= 0; the same function everywhere
    (dual descent re-exports it, the linear multiplier and PID's integral take it)."""
    lam = np.abs(lam)
    out = projected_step(lam, u, eta)
    np.testing.assert_array_equal(out, np.where(lam - eta * u > 0, lam - eta * u, 0.0))
    assert (out >= 0).all() and dd_step is projected_step
    lin = LinearMultiplier(lam)
    np.testing.assert_array_equal(lin.update(u, eta), out)
    pid = PIDMultiplier(lam)  # k_p = k_d = 0: the linear multiplier
    np.testing.assert_array_equal(pid.update(u, eta), out)


def test_llm_dual_step_is_the_projected_step():
    import pytest

    dual = pytest.importorskip("dualgap.llm.dual")
    lam, e_pi, e_ref, b = np.array([0.5, 0.0]), np.array([1.0, 2.0]), np.array([1.5, 1.0]), \
        np.array([0.2, 0.1])
    np.testing.assert_array_equal(dual.dual_step(lam, e_pi, e_ref, b, 0.7),
                                  projected_step(lam, e_pi - e_ref - b, 0.7))
    assert isinstance(make_multiplier("linear", lam), LinearMultiplier)

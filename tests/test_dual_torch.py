"""The torch backend of the dual oracle against the numpy one (CPU here; CUDA where present)."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dualgap as dg
from dualgap.instances import random_problem
from dualgap.testing import multipliers, problems

torch = pytest.importorskip("torch")
from dualgap.dual_torch import torch_dual_oracle  # noqa: E402


@settings(max_examples=30, deadline=None)
@given(problems(), st.data())
def test_torch_oracle_matches_numpy_to_1e_10(p, data):
    lam = data.draw(multipliers(p.num_constraints, 3.0))
    want = dg.dual_oracle(p, lam)
    got = torch_dual_oracle(p, lam, device="cpu")
    assert abs(got.value - want.value) <= 1e-10 * max(1.0, abs(want.value))
    np.testing.assert_allclose(got.gradient, want.gradient, rtol=0, atol=1e-10)
    scale = max(1.0, float(np.abs(want.hessian).max(initial=0.0)))
    np.testing.assert_allclose(got.hessian, want.hessian, rtol=0, atol=1e-10 * scale)


def test_torch_blocks_add_up_like_numpy():
    """Several device blocks (tiny block size) give the one-block answer."""
    from dualgap.dual_torch import torch_data, torch_dual_sums

    p = random_problem(4, 9, 7, 2, beta=0.4, support_fraction=0.8)
    lam = np.array([0.3, 1.1])
    data = torch_data(p, "cpu")
    one = torch_dual_sums(data, lam, p.beta, 2, block_entries=1 << 20)
    many = torch_dual_sums(data, lam, p.beta, 2, block_entries=7)
    assert many.value == pytest.approx(one.value, rel=1e-14)
    np.testing.assert_allclose(many.second, one.second, rtol=1e-13)


def test_solve_with_the_torch_backend_matches_numpy():
    p = random_problem(5, 30, 40, 3, beta=0.3, support_fraction=0.9, tightness=0.9)
    ref = dg.solve(p)
    sol = dg.solve(p, backend="torch")
    assert sol.converged and sol.kkt_residual <= sol.kkt_tolerance
    np.testing.assert_allclose(sol.lam, ref.lam, rtol=1e-8, atol=1e-10)
    assert sol.dual_value == pytest.approx(ref.dual_value, rel=1e-12)


def test_float32_error_is_measured_and_small():
    """float32 is an option, not the default: its oracle error at lam* is that of float32."""
    p = random_problem(6, 20, 50, 2, beta=0.5)
    lam = dg.solve(p).lam
    want = dg.dual_oracle(p, lam)
    got = torch_dual_oracle(p, lam, device="cpu", dtype="float32")
    assert abs(got.value - want.value) <= 1e-5 * max(1.0, abs(want.value))
    assert np.abs(got.gradient - want.gradient).max() <= 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.ConvergenceWarning)  # float32 floor above tol
        sol = dg.solve(p, backend="torch-float32")
    np.testing.assert_allclose(sol.lam, lam, rtol=1e-3, atol=1e-4)


def test_bad_backend_device_and_dtype_name_the_field():
    p = random_problem(0, 2, 3, 1)
    with pytest.raises(ValueError, match="backend: must be one of"):
        dg.solve(p, backend="jax")
    with pytest.raises(ValueError, match="dtype: must be one of"):
        torch_dual_oracle(p, [0.1], dtype="float16")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device: 'cuda' requested but CUDA"):
            torch_dual_oracle(p, [0.1], device="cuda")


def test_importing_dualgap_does_not_import_torch():
    code = "import sys, dualgap, dualgap.dual; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

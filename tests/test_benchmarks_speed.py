"""The floor, past-memory and GPU benchmark scripts still run (tiny sizes, results to tmp)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, timeout=120):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return subprocess.run([sys.executable, *map(str, args)], check=True, capture_output=True,
                          text=True, env=env, timeout=timeout)


def test_floor_and_memory_sections_smoke(tmp_path):
    out = tmp_path / "exact.json"
    _run(ROOT / "benchmarks" / "exact_solver.py", "--floor", "--floor-size", "1e4", "--rounds",
         "1", "--memory", "--memory-size", "1e5", "--out", out, "--no-readme")
    res = json.loads(out.read_text())
    rows = res["floor"]["rows"]
    assert rows["before"]["revision"] and rows["after"]["numpy"]["kkt_residual"] < 1e-9
    # the same instance: both trees reach the same dual value
    assert abs(rows["before"]["numpy"]["dual_value"] - rows["after"]["numpy"]["dual_value"]) \
        < 1e-12
    for tree in ("before", "after"):  # the compiled backend, where there is one, agrees
        if "numba" in rows[tree]:
            assert abs(rows[tree]["numba"]["dual_value"] - rows[tree]["numpy"]["dual_value"]) \
                < 1e-12
    sub = res["memory"]["subsample"]
    assert res["memory"]["full"]["converged"] and sub["lam_difference"] < 1e-9


@pytest.mark.slow
def test_gpu_script_without_cuda_runs_its_smoke_sizes(tmp_path):
    """Every stage of the GPU script at tiny sizes on CPU (~15 s, mostly the DPO trainer)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("trl")
    out = tmp_path / "gpu.json"
    proc = _run(ROOT / "benchmarks" / "gpu.py", "--smoke", "--out", out, timeout=300)
    res = json.loads(out.read_text())
    if not torch.cuda.is_available():
        assert "no CUDA device here" in proc.stdout
    assert res["smoke"] and res["solve"]["lam_difference"] < 1e-9
    assert all(r["float32_error"]["value"] < 1e-4 for r in res["oracle"])
    assert all(res["llm"][k]["seconds"] > 0 for k in ("generation", "scoring", "dpo"))

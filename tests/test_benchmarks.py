"""The benchmark scripts still run (smallest sizes, results to a temp dir)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_exact_solver_benchmark_smoke(tmp_path):
    out = tmp_path / "exact.json"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "exact_solver.py"),
            "--sizes",
            "1e3",
            "--constraints",
            "1",
            "--methods",
            "newton",
            "clarabel",
            "pgd",
            "--out",
            str(out),
            "--no-readme",
        ],
        check=True,
        capture_output=True,
    )
    rows = json.loads(out.read_text())["rows"]
    newton = next(r for r in rows if r["method"] == "newton")
    assert newton["kkt_residual"] < 1e-9 and newton["dual_gap"] <= 1e-12

"""benchmarks/algorithms.py still runs (smallest size, two algorithms, results to a temp dir)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_algorithms_benchmark_smoke(tmp_path):
    out, md = tmp_path / "alg.json", tmp_path / "alg.md"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "algorithms.py"), "--sizes", "small",
                    "--algorithms", "dual-descent", "one-shot K=64", "--budget", "200",
                    "--out", str(out), "--md", str(md)], check=True, capture_output=True)
    rows = {r["algorithm"]: r for r in json.loads(out.read_text())["rows"]}
    dd = rows["dual-descent"]
    assert dd["reached"] and 0 < dd["steps"] <= 200
    assert dd["final_violation"] <= 1e-3 and dd["final_objective_error"] <= 1e-3
    assert "| small (5, 8, 2) | dual-descent |" in md.read_text()

"""The command line: demo, solve, and errors reported by field."""

import json
import subprocess
import sys

import numpy as np
import pytest

from dualgap.cli import main
from dualgap.instances import random_problem


def test_demo_json_agrees_with_cvxpy_and_writes_figure(tmp_path, capsys):
    fig = tmp_path / "demo.png"
    assert main(["demo", "--json", "--figure", str(fig)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dual"]["converged"] and out["dual"]["kkt_residual"] < 1e-9
    assert out["abs_diff_primal"] < 1e-6 and out["max_abs_diff_lam"] < 1e-5
    assert fig.stat().st_size > 10_000


def test_solve_file_table_and_json(tmp_path, capsys):
    p = random_problem(4, 5, 6, 2)
    p.save(tmp_path / "p.npz")
    assert (
        main(["solve", str(tmp_path / "p.npz"), "--json", "--policy-out", str(tmp_path / "pi.npy")])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert np.load(tmp_path / "pi.npy").shape == (5, 6)
    assert out["dual"]["converged"]
    assert main(["solve", str(tmp_path / "p.npz"), "--check"]) == 0
    assert "primal cvxpy" in capsys.readouterr().out


@pytest.mark.parametrize(
    "payload,message",
    [
        (
            dict(reward=np.zeros((2, 3)), reference=np.full((2, 3), 0.5), beta=0.1),
            "reference: row x = 0 sums to 1.5",
        ),
        (
            dict(reward=np.zeros((2, 3)), reference=np.full((2, 3), 1 / 3), beta=0.1, bta=1),
            "unknown field(s) ['bta']",
        ),
        (
            dict(reward=np.zeros((2, 3)), reference=np.full((2, 3), 1 / 3), beta=-1.0),
            "beta: must be a positive",
        ),
    ],
)
def test_solve_reports_bad_fields(tmp_path, capsys, payload, message):
    np.savez(tmp_path / "bad.npz", **payload)
    assert main(["solve", str(tmp_path / "bad.npz")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_solve_infeasible_prints_certificate(tmp_path, capsys):
    p = random_problem(0, 3, 4, 1)
    p.replace(thresholds=[10.0]).save(tmp_path / "inf.npz")
    assert main(["solve", str(tmp_path / "inf.npz")]) == 2
    assert "best attainable" in capsys.readouterr().err


def test_core_import_does_not_load_torch_or_cvxpy():
    code = (
        "import sys, dualgap; dualgap.solve(dualgap.instances.random_problem()); "
        "print('torch' in sys.modules, 'cvxpy' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_console_script_help():
    out = subprocess.run(
        [sys.executable, "-m", "dualgap.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "demo" in out.stdout and "solve" in out.stdout

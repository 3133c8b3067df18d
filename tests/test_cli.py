"""Tests of dualgap/cli.py: the entry point (help, the core import stays light, output paths
checked first, closed pipes, one-line warnings and errors naming the subcommand); the commands
themselves: tests/commands/."""

import shlex
import subprocess
import sys

import numpy as np
import pytest

from dualgap.cli import main
from dualgap.instances import random_problem


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


def test_output_paths_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    import dualgap.instances

    def boom(*a, **k):  # pragma: no cover - reached only if the check came too late
        raise AssertionError("work started before the output path was checked")

    monkeypatch.setattr(dualgap.instances, "demo_problem", boom)
    assert main(["demo", "--figure", str(tmp_path / "missing" / "x.png")]) == 2
    assert "--figure: folder" in capsys.readouterr().err
    random_problem(4, 5, 6, 2).save(tmp_path / "p.npz")
    monkeypatch.setattr("dualgap.solve", boom)
    assert main(["solve", str(tmp_path / "p.npz"), "--policy-out",
                 str(tmp_path / "missing" / "pi.npy")]) == 2
    assert "--policy-out: folder" in capsys.readouterr().err
    assert main(["run", "dual-descent", "--out", str(tmp_path / "missing" / "t.json")]) == 2
    assert "--out: folder" in capsys.readouterr().err


def test_closed_pipe_ends_quietly(tmp_path):
    random_problem(4, 5, 6, 2).save(tmp_path / "p.npz")
    cmd = [sys.executable, "-m", "dualgap.cli", "solve", str(tmp_path / "p.npz"), "--json"]
    # the shell pipeline of the issue
    shell = subprocess.run(shlex.join(cmd) + " | head -c 10", shell=True, capture_output=True,
                           text=True, timeout=60)
    assert shell.stdout == '{\n  "dual"' and shell.stderr == ""
    # and a pipe closed before the first byte is written (deterministic EPIPE)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and err == ""


def test_warnings_and_internal_errors_are_one_line(tmp_path, capsys, monkeypatch):
    import dualgap

    # a boundary-feasible instance: the solver warns (lam* unbounded)
    g = np.array([[[1.0, -1.0]], [[-1.0, 1.0]]])
    dualgap.AlignmentProblem(np.zeros((1, 2)), g, [0.0, 0.0], 0.1, np.array([[0.5, 0.5]]),
                             relative=False).save(tmp_path / "b.npz")
    assert main(["solve", str(tmp_path / "b.npz")]) == 0
    err = capsys.readouterr().err
    assert "dualgap solve: warning: BoundaryFeasibleWarning: " in err and "warnings.warn" not in err

    def broken(*a, **k):
        raise RuntimeError("solver exploded\nbadly")

    monkeypatch.setattr(dualgap, "solve", broken)
    assert main(["solve", str(tmp_path / "b.npz")]) == 1
    err = capsys.readouterr().err
    assert err.strip() == ("dualgap solve: internal error: RuntimeError: solver exploded badly "
                           "(rerun with --debug for the traceback)")
    with pytest.raises(RuntimeError):
        main(["--debug", "solve", str(tmp_path / "b.npz")])


def test_errors_name_the_subcommand_as_typed(capsys):
    """The one-line error names the whole subcommand (``dualgap run caid``), not its group."""
    assert main(["run", "caid", "--iterations", "3", "--feature-noise", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dualgap run caid: error:"), err

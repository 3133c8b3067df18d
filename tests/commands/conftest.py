"""Fixtures of the command tests: a small instance on disk, and ``dualgap run`` called as the
user types it (its trajectory JSON read back, its figure checked)."""

import pytest

import dualgap.algorithms as A
from dualgap.cli import main
from dualgap.instances import random_problem


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    """``(problem, path)``: a 4 x 4 instance with 2 constraints, saved as ``.npz``."""
    p = random_problem(4, 4, 6, 2, beta=0.5, tightness=0.8)
    path = tmp_path_factory.mktemp("run") / "p.npz"
    p.save(path)
    return p, path


@pytest.fixture
def run_cli(tmp_path, capsys):
    """``run_cli(argv, figure=True) -> (trajectory, stdout)``: ``main(argv)`` with ``--out`` (and
    ``--figure``, or ``--no-figure``) under ``tmp_path``; it must exit 0."""
    def run(argv, figure=True):
        out = tmp_path / "t.json"
        fig = tmp_path / "t.png"
        args = argv + ["--out", str(out)] + (["--figure", str(fig)] if figure else ["--no-figure"])
        assert main(args) == 0
        text = capsys.readouterr().out
        if figure:
            assert fig.stat().st_size > 10_000
        return A.Trajectory.from_json(out), text

    return run

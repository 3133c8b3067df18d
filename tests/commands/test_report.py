"""Tests of dualgap/commands/report.py, ``dualgap report``: the JSON and the table of the gap
report for the class the options name, and options that do not fit the class refused before any
work (the report's content: tests/test_report.py)."""

import json

import numpy as np
import pytest

from dualgap.cli import main
from dualgap.commands.report import DEFAULT_NOISE, build_policy_class
from dualgap.instances import random_problem
from dualgap.policies import LogLinearPolicy, MLPPolicy, TabularPolicy, problem_features


def test_report_command(tmp_path, capsys):
    p = random_problem(2, 4, 5, 2, 0.5)
    path = tmp_path / "inst.npz"
    p.save(path)
    rc = main(["report", str(path), "--policy", "loglinear", "--feature-noise", "0.05",
               "--no-cvxpy", "--json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["policy_class"].startswith("LogLinearPolicy")
    assert data["quantities"]["nu"] > 0
    rc = main(["report", str(tmp_path / "missing.npz")])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_table_names_the_class_and_points_at_the_symbols(tmp_path, capsys):
    p = random_problem(1, 3, 4, 1, 0.5)
    p.save(tmp_path / "p.npz")
    assert main(["report", str(tmp_path / "p.npz"), "--policy", "tabular", "--no-cvxpy"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("policy class: TabularPolicy")
    assert any(ln.startswith("statement") and ln.split()[-1] == "kind" for ln in lines)
    assert lines[-1] == "symbols and assumptions: docs/theory.md"


def test_feature_noise_is_refused_for_the_tabular_class(capsys, monkeypatch):
    import dualgap.report

    def boom(*a, **k):  # pragma: no cover - reached only if the check came too late
        raise AssertionError("the report started before the options were checked")

    monkeypatch.setattr(dualgap.report, "gap_report", boom)
    assert main(["report", "--policy", "tabular", "--feature-noise", "0.1"]) == 2
    assert capsys.readouterr().err.strip() == (
        "dualgap report: error: --feature-noise: only for --policy loglinear or mlp, got "
        "--policy tabular")


def test_build_policy_class_builds_the_class_named():
    p = random_problem(0, 3, 4, 2, 0.5)
    assert type(build_policy_class(p, "tabular")) is TabularPolicy
    lin = build_policy_class(p, "loglinear")
    assert type(lin) is LogLinearPolicy
    np.testing.assert_array_equal(lin.features, problem_features(p, noise=DEFAULT_NOISE, seed=0))
    exact = build_policy_class(p, "loglinear", noise=0.0, feature_seed=3)
    np.testing.assert_array_equal(exact.features, problem_features(p, noise=0.0))
    mlp = build_policy_class(p, "mlp", hidden=3, depth=2, feature_seed=4)
    assert type(mlp) is MLPPolicy
    assert build_policy_class(p, "mlp", hidden=5).num_params > build_policy_class(
        p, "mlp", hidden=3).num_params
    with pytest.raises(ValueError, match="policy: must be tabular, loglinear or mlp, got 'cnn'"):
        build_policy_class(p, "cnn")

"""``dualgap run``: each algorithm writes a trajectory JSON equal to the library call's, and a
figure; options of another algorithm are rejected."""

from pathlib import Path

import numpy as np
import pytest

import dualgap.algorithms as A
from dualgap.cli import main
from dualgap.instances import random_problem


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    p = random_problem(4, 4, 6, 2, beta=0.5, tightness=0.8)
    path = tmp_path_factory.mktemp("run") / "p.npz"
    p.save(path)
    return p, path


def _run(argv, tmp_path, capsys, figure=True):
    out = tmp_path / "t.json"
    fig = tmp_path / "t.png"
    args = argv + ["--out", str(out)] + (["--figure", str(fig)] if figure else ["--no-figure"])
    assert main(args) == 0
    text = capsys.readouterr().out
    if figure:
        assert fig.stat().st_size > 10_000
    return A.Trajectory.from_json(out), text


def test_dual_descent(instance, tmp_path, capsys):
    p, path = instance
    tr, text = _run(["run", "dual-descent", str(path), "--iterations", "30", "--samples", "3",
                     "--step-rule", "constant", "--step-size", "0.2", "--seed", "5"],
                    tmp_path, capsys)
    ref = A.dual_descent(p, 30, samples=3, step_rule="constant", step_size=0.2, seed=5)
    np.testing.assert_array_equal(tr.lam, ref.lam)
    assert "exact lam* = " in text and tr.exact is not None


def test_caid_tabular_and_loglinear(instance, tmp_path, capsys):
    p, path = instance
    tr, _ = _run(["run", "caid", str(path), "--iterations", "5", "--step-rule", "constant",
                  "--step-size", "0.3", "--one-shot-samples", "8"], tmp_path, capsys)
    ref = A.caid(p, None, iterations=5, step_rule="constant", step_size=0.3, one_shot_samples=8)
    np.testing.assert_allclose(tr.lam, ref.lam, atol=1e-7)  # tabular step is exact
    tr2, _ = _run(["run", "caid", str(path), "--policy", "loglinear", "--feature-noise", "0.3",
                   "--iterations", "3", "--step-size", "0.5", "--step-rule", "sqrt",
                   "--no-exact"], tmp_path, capsys, figure=False)
    assert tr2.num_records == 4 and tr2.exact is None
    assert "LogLinearPolicy" in tr2.config["policy_class"]


@pytest.mark.parametrize("rule", ["auto", "newton", "curvature", "empirical"])
def test_caid_step_rule_picks_the_self_tuning_rule(instance, tmp_path, capsys, rule):
    p, path = instance
    argv = ["run", "caid", str(path), "--iterations", "4", "--one-shot-samples", "8"]
    tr, text = _run(argv + ([] if rule == "auto" else ["--step-rule", rule]), tmp_path, capsys,
                    figure=False)
    ref = A.caid(p, None, iterations=4, step_rule=rule, one_shot_samples=8)
    np.testing.assert_allclose(tr.lam, ref.lam, atol=1e-9)
    assert tr.config["step_rule"] == rule and tr.config["step_size"] == "auto"
    assert {s["rule"] for s in tr.extra["dual_steps"]} == {"newton" if rule == "auto" else rule}
    if rule == "curvature":  # 4 linear-rate steps need not have converged: no --step-size hint
        assert "--step-size" not in text


def test_caid_self_tuning_rule_refuses_a_step_size(instance, tmp_path, capsys):
    _, path = instance
    code = main(["run", "caid", str(path), "--step-rule", "newton", "--step-size", "0.3",
                 "--no-figure", "--out", str(tmp_path / "t.json")])
    err = capsys.readouterr().err
    assert code == 2 and "--step-size: --step-rule newton computes its own step" in err
    with pytest.raises(SystemExit):  # dual descent has no self-tuning rule
        main(["run", "dual-descent", str(path), "--step-rule", "auto"])


def test_one_shot_and_primal_dual(instance, tmp_path, capsys):
    p, path = instance
    tr, _ = _run(["run", "one-shot", str(path), "--policy", "exact", "--one-shot-samples", "8",
                  "--seed", "2"], tmp_path, capsys)
    np.testing.assert_array_equal(tr.lam[0], A.one_shot_multiplier(p, 8, 2)[0])
    tr, _ = _run(["run", "primal-dual", str(path), "--iterations", "40", "--record-every", "10",
                  "--mode", "alternating", "--multiplier", "pid", "--kp", "0.5",
                  "--torch-threads", "1"],
                 tmp_path, capsys)
    assert tr.num_records == 5 and tr.config["multiplier"] == "pid"


def test_bad_options(instance, tmp_path, capsys):
    _, path = instance
    with pytest.raises(SystemExit):  # an option of another algorithm
        main(["run", "one-shot", str(path), "--mode", "alternating"])
    with pytest.raises(SystemExit):
        main(["run", "caid", str(path), "--iterations", "-3"])
    code = main(["run", "caid", str(path), "--feature-noise", "0.2", "--no-figure",
                 "--out", str(tmp_path / "x.json")])
    assert code == 2
    assert "--feature-noise" in capsys.readouterr().err
    code = main(["run", "dual-descent", str(tmp_path / "missing.npz"), "--no-figure"])
    assert code == 2


def test_default_outputs_go_under_a_git_ignored_folder(instance, tmp_path, capsys, monkeypatch):
    _, path = instance
    monkeypatch.chdir(tmp_path)
    assert main(["run", "caid", str(path), "--iterations", "2", "--one-shot-samples", "4"]) == 0
    text = capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "dualgap-out").iterdir()) == ["caid.json",
                                                                           "caid.png"]
    assert "files: trajectory dualgap-out/caid.json, figure dualgap-out/caid.png" in text
    ignored = (Path(__file__).parents[2] / ".gitignore").read_text().split()
    assert "dualgap-out/" in ignored


@pytest.mark.parametrize(("argv", "needle"), [
    (["dual-descent", "--step-size", "-1"], "argument --step-size: expected a finite number > 0"),
    (["caid", "--policy", "loglinear", "--feature-noise", "-1"], "argument --feature-noise"),
    (["primal-dual", "--dual-step", "nan"], "argument --dual-step"),
    (["primal-dual", "--primal-lr", "0"], "argument --primal-lr"),
])
def test_errors_name_the_option_as_typed(argv, needle, capsys):
    with pytest.raises(SystemExit):
        main(["run"] + argv)
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "needle"), [
    (["dual-descent", "--step-rule", "constant"], "--step-size: required for --step-rule constant"),
    (["primal-dual", "--kp", "1"], "--kp/--kd: only for --multiplier pid"),
    (["caid", "--feature-noise", "0.1"], "--feature-noise: only for --policy loglinear"),
])
def test_cross_option_errors_come_before_any_work(argv, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run"] + argv) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "dualgap-out").exists()


def test_every_option_has_help_with_its_default():
    from dualgap.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["run"]
    algos = next(a for a in sub._actions if a.dest == "algorithm").choices
    for name, p in algos.items():
        for action in p._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, f"run {name} {action.option_strings[0]}: no help"
            if action.option_strings[0].startswith("--no-") or action.const is True:
                assert "default: off" in action.help, (name, action.option_strings)
            else:
                assert "default" in action.help, (name, action.option_strings)

"""``dualgap run``: each algorithm writes a trajectory JSON equal to the library call's, and a
figure; options of another algorithm are rejected."""

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
    assert "exact lam*" in text and tr.exact is not None


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

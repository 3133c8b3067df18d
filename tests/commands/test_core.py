"""Tests of dualgap/commands/core.py: ``dualgap demo`` (against cvxpy) and ``dualgap solve``
(table, JSON, the policy file, bad fields and damaged files named in one line, bad tolerances)."""

import json

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


# ------------------------------------------------------------------ file problems, one line each
def _bad_files(d):
    p = random_problem(1, 4, 5, 2)
    p.save(d / "ok.npz")
    raw = (d / "ok.npz").read_bytes()
    (d / "empty.npz").write_bytes(b"")
    (d / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    np.save(d / "arr.npy", np.zeros(3))
    (d / "text.npz").write_text("reward,beta\n1,2\n")
    np.savez(d / "obj.npz", reward=np.array([1, "x", None], dtype=object),
             reference=np.ones((1, 1)), beta=1.0)
    np.savez(d / "strbeta.npz", reward=p.reward, reference=p.reference, beta="0.5")
    np.savez(d / "strreward.npz", reward=p.reward.astype(str), reference=p.reference, beta=0.5)
    np.savez(d / "cplx.npz", reward=p.reward + 1j, reference=p.reference, beta=0.5)
    np.savez(d / "nothr.npz", reward=p.reward, reference=p.reference, beta=0.5,
             utilities=p.utilities)
    np.savez(d / "dup.npz", reward=p.reward, reference=p.reference, beta=0.5,
             utilities=p.utilities, thresholds=p.thresholds, names=np.array(["a", "a"]))
    np.savez(d / "intnames.npz", reward=p.reward, reference=p.reference, beta=0.5,
             utilities=p.utilities, thresholds=p.thresholds, names=np.array([1, 2]))
    np.savez(d / "strrel.npz", reward=p.reward, reference=p.reference, beta=0.5,
             relative="yes")
    return {
        "missing.npz": "missing.npz: file does not exist",
        "empty.npz": "empty.npz: file is empty",
        "trunc.npz": "trunc.npz: is a damaged or truncated .npz archive",
        "arr.npy": "arr.npy: is a single .npy array, not an .npz archive",
        "text.npz": "text.npz: is not an .npz archive (a zip of .npy arrays)",
        "obj.npz": "obj.npz: field 'reward' holds Python objects (an object array)",
        "strbeta.npz": "strbeta.npz: field 'beta' holds strings (dtype <U3), expected real",
        "strreward.npz": "strreward.npz: field 'reward' holds strings",
        "cplx.npz": "cplx.npz: field 'reward' holds complex numbers",
        "nothr.npz": "nothr.npz: missing field 'thresholds' (needed for the 2 constraints",
        "dup.npz": "dup.npz: names: duplicate name 'a'",
        "intnames.npz": "intnames.npz: field 'names' holds integers (dtype int64), expected str",
        "strrel.npz": "strrel.npz: field 'relative' holds strings",
    }


def test_every_file_problem_is_one_line_naming_the_file(tmp_path, capsys):
    cases = _bad_files(tmp_path)
    for name, message in cases.items():
        assert main(["solve", str(tmp_path / name)]) == 2, name
        cap = capsys.readouterr()
        lines = cap.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dualgap solve: error: "), cap.err
        assert message in lines[0], (name, lines[0])
        assert "allow_pickle" not in lines[0] and "pickle" not in lines[0]
        assert cap.out == ""
    with pytest.raises(ValueError, match="file is empty"):  # --debug: the exception itself
        main(["--debug", "solve", str(tmp_path / "empty.npz")])


def test_json_is_valid_at_any_tolerance_and_bad_tol_is_one_line(tmp_path, capsys):
    random_problem(4, 5, 6, 2).save(tmp_path / "p.npz")
    assert main(["solve", str(tmp_path / "p.npz"), "--json", "--tol", "1e-15"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out["dual"]["converged"], bool)
    for tol in ("-1", "nan", "0", "inf"):
        assert main(["solve", str(tmp_path / "p.npz"), "--json", "--tol", tol]) == 2
        cap = capsys.readouterr()
        assert cap.out == "" and "error: tol: must be a positive finite float" in cap.err


def test_solve_takes_a_backend_and_a_thread_count(tmp_path, capsys, monkeypatch):
    from dualgap import dual_numba, threads

    monkeypatch.setattr(threads, "_threads", threads._threads)  # restored after the test
    random_problem(4, 5, 6, 2).save(tmp_path / "p.npz")
    assert main(["solve", str(tmp_path / "p.npz"), "--json"]) == 0
    want = json.loads(capsys.readouterr().out)
    assert want["run"] == {"backend": "numpy", "threads": 1}  # a small table: one thread
    backends = ["torch"] + (["numba"] if dual_numba.available() else [])
    for backend in backends:
        assert main(["solve", str(tmp_path / "p.npz"), "--json", "--backend", backend,
                     "--threads", "2"]) == 0
        got = json.loads(capsys.readouterr().out)
        np.testing.assert_allclose(got["dual"]["lam"], want["dual"]["lam"], rtol=1e-8)
        assert got["run"]["backend"] == backend
    assert threads.get_threads() == 2
    assert main(["solve", str(tmp_path / "p.npz"), "--threads", "0"]) == 2
    assert "error: threads: must be an integer >= 1 or None, got 0" in capsys.readouterr().err
    assert main(["solve", str(tmp_path / "p.npz")]) == 0
    assert "backend" in capsys.readouterr().out

"""Tests of dualgap/commands/claims.py, ``dualgap claims``: the folder for counterexamples is
checked before any work, and the options reach the ledger. The ledger itself (minutes of
experiments) is tests/claims/'s subject; here :func:`dualgap.claims.claims_ledger` is replaced by
a recorder returning a real :class:`~dualgap.claims.Ledger`, so only the command is under test."""

import json
import warnings
from pathlib import Path

import pytest

import dualgap.claims
from dualgap.claims import CLAIM_ORDER, ClaimResult, Ledger
from dualgap.cli import main
from dualgap.solver import BoundaryFeasibleWarning


def test_claims_command_checks_the_folder_first(tmp_path, capsys):
    assert main(["claims", "--quick", "--counterexamples", str(tmp_path / "no" / "dir")]) == 2
    assert "--counterexamples" in capsys.readouterr().err
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["claims", "--quick", "--counterexamples", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"dualgap claims: error: --counterexamples: {str(f)!r} is a file, not a folder"


def _ledger(quick: bool) -> Ledger:
    rows = [ClaimResult(c, f"check of {c}", 2, holds=2, notebook="nb.ipynb") for c in CLAIM_ORDER]
    return Ledger(rows, quick=quick, seconds=0.5)


@pytest.fixture
def recorded(monkeypatch):
    """The keyword arguments of each ledger call; the ledger warns as the theory sweep does."""
    calls = []

    def ledger(**kwargs):
        calls.append(kwargs)
        warnings.warn("lam* unbounded", BoundaryFeasibleWarning, stacklevel=1)
        return _ledger(kwargs["quick"])

    monkeypatch.setattr(dualgap.claims, "claims_ledger", ledger)
    return calls


def test_options_reach_the_ledger_and_json_is_its_dict(recorded, tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning that escaped the command would fail here
        assert main(["claims", "--quick", "--instances", "3", "--seed", "7", "--json",
                     "--no-progress", "--counterexamples", str(tmp_path / "cx")]) == 0
    assert recorded == [{"quick": True, "instances": 3, "seed": 7,
                         "save_dir": Path(tmp_path / "cx"), "progress": False}]
    out = capsys.readouterr()
    data = json.loads(out.out)
    assert data["quick"] is True and [r["claim"] for r in data["rows"]] == list(CLAIM_ORDER)
    assert "BoundaryFeasibleWarning" not in out.err


def test_defaults_and_the_table(recorded, capsys):
    assert main(["claims"]) == 0
    assert recorded == [{"quick": False, "instances": None, "seed": 0, "save_dir": None,
                         "progress": True}]
    assert capsys.readouterr().out == str(_ledger(False)) + "\n"


def test_a_bad_instance_count_is_refused_by_argparse(recorded, capsys):
    with pytest.raises(SystemExit):
        main(["claims", "--instances", "0"])
    assert "argument --instances: expected a positive integer, got '0'" in capsys.readouterr().err
    assert recorded == []

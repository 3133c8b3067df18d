"""Tests of dualgap/errors.py: a UserError is a ValueError, one_line folds any message to one
line, and the command line reports a UserError raised by a command as one line, exit 2."""

import pytest

from dualgap.cli import main
from dualgap.errors import UserError, one_line


def test_user_errors_are_value_errors():
    assert issubclass(UserError, ValueError)
    with pytest.raises(ValueError, match="missing file"):
        raise UserError("missing file")


@pytest.mark.parametrize("exc, text", [
    (ValueError("a\nb\n\n  c "), "a b c"),
    (UserError("beta: got -1"), "beta: got -1"),
    (KeyError(), "KeyError"),
    (RuntimeError("   \n"), "RuntimeError"),
    (OSError(2, "No such file"), "[Errno 2] No such file"),
])
def test_one_line(exc, text):
    assert one_line(exc) == text
    assert "\n" not in one_line(exc)


def test_the_command_line_prints_a_user_error_as_one_line(tmp_path, capsys, monkeypatch):
    import dualgap.problem

    def damaged(*a, **k):
        raise UserError("run directory 'r' is damaged:\nconfig.yaml is missing")

    monkeypatch.setattr(dualgap.problem.AlignmentProblem, "load", damaged)
    (tmp_path / "p.npz").write_bytes(b"x")
    assert main(["solve", str(tmp_path / "p.npz")]) == 2
    err = capsys.readouterr().err
    assert err == "dualgap solve: error: run directory 'r' is damaged: config.yaml is missing\n"

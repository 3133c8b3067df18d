"""Tests of dualgap/commands/_args.py: through argparse itself, a bad value is one line naming
the option as typed and the text given; good values come back as numbers."""

import argparse

import pytest

from dualgap.commands._args import nonneg_float, nonneg_int, positive_float, positive_int


def _parse(kind, text, capsys):
    parser = argparse.ArgumentParser(prog="t")
    parser.add_argument("--opt", type=kind)
    try:
        return parser.parse_args([f"--opt={text}"]).opt, None
    except SystemExit as exc:
        assert exc.code == 2
        return None, capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("kind, text, value", [
    (positive_int, "1", 1), (positive_int, "12", 12), (nonneg_int, "0", 0),
    (positive_float, "1e-300", 1e-300), (positive_float, "2.5", 2.5),
    (nonneg_float, "0", 0.0), (nonneg_float, "-0.0", 0.0),
])
def test_good_values(kind, text, value, capsys):
    got, err = _parse(kind, text, capsys)
    assert err is None and got == value and type(got) is type(value)


@pytest.mark.parametrize("kind, text, want", [
    (positive_int, "0", "a positive integer"), (positive_int, "1.5", "a positive integer"),
    (positive_int, "x", "a positive integer"), (nonneg_int, "-1", "an integer >= 0"),
    (positive_float, "0", "a finite number > 0"), (positive_float, "-0.0", "a finite number > 0"),
    (positive_float, "nan", "a finite number > 0"), (positive_float, "inf", "a finite number > 0"),
    (nonneg_float, "-1e-9", "a finite number >= 0"),
    (nonneg_float, "1e999", "a finite number >= 0"),
])
def test_bad_values_name_the_option_and_the_text(kind, text, want, capsys):
    got, err = _parse(kind, text, capsys)
    assert got is None
    assert err == f"t: error: argument --opt: expected {want}, got {text!r}"

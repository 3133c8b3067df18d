"""Tests of dualgap/commands/_io.py: JSON that the standard library parses back (numpy values,
non-finite floats, paths), and output paths refused before any work, naming the option."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from dualgap.commands._io import check_output_path, dumps, to_jsonable
from dualgap.errors import UserError


def test_numpy_values_round_trip_through_the_standard_json_parser():
    value = {"i": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True),
             "a": np.arange(6).reshape(2, 3), "t": (np.float64(1.25), None, "s"),
             1: [np.nan, np.inf, -np.inf], "p": Path("runs") / "x.json"}
    back = json.loads(dumps(value))
    assert back == {"i": 3, "f": 0.5, "b": True, "a": [[0, 1, 2], [3, 4, 5]],
                    "t": [1.25, None, "s"], "1": ["nan", "inf", "-inf"],
                    "p": os.path.join("runs", "x.json")}
    assert type(back["i"]) is int and type(back["b"]) is bool
    # numpy's own non-finite scalars, inside arrays too
    assert to_jsonable(np.array([1.0, np.nan])) == [1.0, "nan"]
    assert json.loads(dumps([np.float64("inf")], indent=None)) == ["inf"]


def test_an_unknown_type_is_an_error_not_a_string():
    with pytest.raises(TypeError, match="cannot write object as JSON"):
        dumps({"x": object()})


def test_output_paths(tmp_path):
    assert check_output_path(None, "--out") is None
    assert check_output_path(tmp_path / "a.json", "--out") == tmp_path / "a.json"
    assert check_output_path(str(tmp_path / "a.json"), "--out") == tmp_path / "a.json"
    with pytest.raises(UserError, match=r"^--figure: folder '.*missing' of '.*x.png' does not"):
        check_output_path(tmp_path / "missing" / "x.png", "--figure")
    with pytest.raises(UserError, match=r"^--out: '.*' is a folder, not a file path$"):
        check_output_path(tmp_path, "--out")
    # a bare file name is written into the current folder
    assert check_output_path("x.json", "--out") == Path("x.json")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write into a read-only folder")
def test_a_read_only_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(UserError, match=r"^--out: folder '.*ro' is not writable$"):
            check_output_path(ro / "a.json", "--out")
    finally:
        ro.chmod(0o700)

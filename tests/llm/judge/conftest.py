"""Fixtures of the judge tests: the test key in the environment, two run directories."""

from __future__ import annotations

import pytest

from .stub import KEY, make_run


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("DUALGAP_TEST_JUDGE_KEY", KEY)


@pytest.fixture
def runs(tmp_path):
    # A: good and safe on questions 0-2; B: good and safe on question 3 only
    a = make_run(tmp_path, "a", [["good safe"], ["good safe"], ["good"], ["plain"]])
    b = make_run(tmp_path, "b", [["plain"], ["meh"], ["safe"], ["good safe"]], threshold=5.0)
    return str(a), str(b)

"""Shared fixtures of the synthetic-language tests: the tiny task and comparison, built once per
session.
"""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")
pytest.importorskip("torch")

from dualgap.llm.synthetic.compare import compare  # noqa: E402
from dualgap.llm.synthetic.task import build_task  # noqa: E402


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="session")
def tiny_task(workdir):
    return build_task("tiny", workdir, progress=False)


@pytest.fixture(scope="session")
def tiny_comparison(workdir, tiny_task):
    return compare("tiny", workdir, progress=False)

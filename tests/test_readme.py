"""The README and the docs run as written: every ``python`` and ``bash`` block, in order.

Parsing is sybil's (fenced blocks, and ``<!-- skip: next "REASON" -->`` on the line before a
block that cannot run here: it is reported as skipped with that reason).  Python blocks share one
namespace per document, as a reader's session would; bash blocks run with ``bash -euo pipefail``
in one temporary folder per document (the same folder is the Python blocks' working directory,
so a file written by one block is there for the next), with this interpreter's ``bin/`` first on
``PATH``, the repository on ``PYTHONPATH``, the hub offline and matplotlib on Agg.  ``make
TARGET`` in a block runs the repository's Makefile with the running venv as ``VENV`` and the
install step taken as done (``-o STAMP``): the target's own recipe runs, nothing is installed.

Each block is one test.  A document is evaluated in order up to the block a test asks for, once
per worker process, so the tests stay correct however pytest-xdist distributes them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import traceback
import unittest
from pathlib import Path

import pytest
from sybil import Sybil
from sybil.evaluators.python import PythonEvaluator
from sybil.evaluators.skip import Skipper
from sybil.example import NotEvaluated
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "docs/problem.md", "docs/theory.md", "docs/cli.md",
             "docs/figures.md")
VENV = Path(sys.prefix)  # the running virtual environment
BLOCK_TIMEOUT_S = 300

_BASH_PRELUDE = """set -euo pipefail
make() { command make -f "$DUALGAP_REPO/Makefile" VENV="$DUALGAP_VENV" \\
    -o "$DUALGAP_VENV/.dualgap-installed" "$@"; }
"""


def _env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in
                                                       env.get("PYTHONPATH", "").split(os.pathsep)
                                                       if p])
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", MPLBACKEND="Agg",
               DUALGAP_REPO=str(REPO), DUALGAP_VENV=str(VENV), HOME=env.get("HOME", str(workdir)))
    return env


def _workdir(example) -> Path:
    return Path(example.namespace["__readme_workdir__"])


def _bash(example) -> None:
    workdir = _workdir(example)
    try:
        proc = subprocess.run(["bash", "-c", _BASH_PRELUDE + example.parsed], cwd=workdir,
                              env=_env(workdir), capture_output=True, text=True,
                              timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{example.path}:{example.line}: bash block ran past "
                             f"{BLOCK_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        raise AssertionError(f"{example.path}:{example.line}: bash block exited "
                             f"{proc.returncode}:\n{example.parsed}\n--- output ---\n{tail}")


def _sybil() -> Sybil:
    return Sybil(parsers=[PythonCodeBlockParser(), CodeBlockParser("bash", _bash),
                          SkipParser()])


def _is_skip(example) -> bool:
    return isinstance(example.region.evaluator, Skipper)


class _Run:
    """One document evaluated lazily in order; ``outcome(i)`` evaluates up to block ``i``."""

    def __init__(self, path: Path):
        self.document = _sybil().parse(path)
        self.examples = list(self.document.examples())
        self.tmp = tempfile.TemporaryDirectory(prefix="dualgap-docs-")
        self.document.namespace["__readme_workdir__"] = self.tmp.name
        self.done = 0
        self.outcomes: dict[int, tuple[str, str]] = {}

    def outcome(self, index: int) -> tuple[str, str]:
        while self.done <= index:
            ex = self.examples[self.done]
            try:
                _evaluate_in_workdir(ex)
                result = ("passed", "")
            except NotEvaluated:
                result = ("skipped", "not evaluated")
            except (unittest.SkipTest, pytest.skip.Exception) as exc:
                result = ("skipped", str(exc))
            except Exception as exc:  # recorded here, raised by the block's own test
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__,
                                                        limit=-4))
                result = ("failed", f"{type(exc).__name__}: {exc}\n{tb}")
            self.outcomes[self.done] = result
            self.done += 1
        return self.outcomes[index]


def _evaluate_in_workdir(example) -> None:
    """``Example.evaluate`` (so a pending skip applies) with the document's folder as cwd."""
    old = Path.cwd()
    os.chdir(_workdir(example))
    try:
        example.evaluate()
    finally:
        os.chdir(old)


_RUNS: dict[str, _Run] = {}


def _blocks() -> list:
    params = []
    for name in DOCUMENTS:
        if not (REPO / name).exists():
            params.append(pytest.param(name, -1, id=f"{name}:missing"))
            continue
        doc = _sybil().parse(REPO / name)
        for k, ex in enumerate(doc.examples()):
            if not _is_skip(ex):
                params.append(pytest.param(name, k, id=f"{name}:{ex.line}"))
    return params


@pytest.mark.parametrize(("document", "index"), _blocks())
def test_block_runs_as_written(document, index):
    assert index >= 0, f"{document}: missing"
    run = _RUNS.get(document)
    if run is None:
        run = _RUNS[document] = _Run(REPO / document)
    status, message = run.outcome(index)
    if status == "skipped":
        pytest.skip(f"{document}:{run.examples[index].line}: {message}")
    assert status == "passed", message


def test_every_skip_says_why():
    """A skip without a reason, or with one that names no cause, would hide a broken block."""
    for name in DOCUMENTS:
        path = REPO / name
        if not path.exists():
            continue
        for ex in _sybil().parse(path).examples():
            if _is_skip(ex):
                action, reason = ex.parsed
                assert action == "next", f"{name}:{ex.line}: use 'skip: next \"REASON\"'"
                assert reason and len(reason.strip().strip('"')) > 8, (
                    f"{name}:{ex.line}: a skip needs a reason, got {reason!r}")


def test_the_readme_has_runnable_blocks():
    """Labelled: guards against a parser change that would make the tests above vacuous."""
    doc = _sybil().parse(REPO / "README.md")
    evaluators = [ex.region.evaluator for ex in doc.examples()]
    assert sum(e is _bash for e in evaluators) >= 3
    assert sum(isinstance(e, PythonEvaluator) for e in evaluators) >= 2


def test_a_broken_block_fails_and_a_skip_is_reported(tmp_path):
    """The machinery above can fail: a failing bash command, a Python error, a name from an
    earlier block (shared namespace), a file from an earlier block (shared folder)."""
    doc = tmp_path / "doc.md"
    doc.write_text("\n".join([
        "```python", "x = 41", "open('made.txt', 'w').write('hi')", "```", "",
        "```bash", "test -f made.txt && echo ok", "```", "",
        "```python", "assert x + 1 == 42", "```", "",
        '<!-- skip: next "needs a GPU here" -->', "```bash", "exit 1", "```", "",
        "```bash", "dualgap solve missing.npz", "```", "",
        "```python", "raise RuntimeError('boom')", "```", ""]))
    run = _Run(doc)
    blocks = [k for k, ex in enumerate(run.examples) if not _is_skip(ex)]
    outcomes = [run.outcome(k) for k in blocks]
    assert [o[0] for o in outcomes] == ["passed", "passed", "passed", "skipped", "failed",
                                        "failed"]
    assert outcomes[3][1] == "needs a GPU here"
    assert "does not exist" in outcomes[4][1] and "exited 2" in outcomes[4][1]
    assert "RuntimeError: boom" in outcomes[5][1]

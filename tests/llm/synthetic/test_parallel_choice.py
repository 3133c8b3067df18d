"""``compare(parallel="auto")`` and ``dualgap llm synthetic --parallel``: when the capacity
sweep gets a second process (the numbers are the same either way:
test_compare.py::test_the_sweep_in_a_second_process_gives_the_same_classes)."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")
pytest.importorskip("torch")

from dualgap.llm.synthetic import compare as compare_mod  # noqa: E402

pytestmark = pytest.mark.llm


def _machine(monkeypatch, cores: int, load: float | None) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))

    def loadavg():
        if load is None:
            raise OSError("no load average")
        return (load, load, load)

    monkeypatch.setattr(os, "getloadavg", loadavg)


@pytest.mark.parametrize("cores, load, threads, expected", [
    (1, 0.0, 1, False),  # no second core
    (2, 0.3, 1, True),  # an idle second core
    (2, 0.99, 1, True),
    (2, 1.0, 1, False),  # another job holds a core: the second process would share one
    (2, 3.5, 1, False),
    (4, 1.5, 2, True),  # two threads each: 4 cores, 2 of them idle
    (4, 2.0, 2, False),
    (3, 0.0, 2, False),  # two threads each need 4 cores
])
def test_parallel_pays_only_with_an_idle_core(monkeypatch, cores, load, threads, expected):
    _machine(monkeypatch, cores, load)
    assert compare_mod.parallel_pays(threads) is expected


def test_parallel_pays_is_false_without_a_load_average(monkeypatch):
    _machine(monkeypatch, 8, None)
    assert compare_mod.parallel_pays(1) is False


def test_parallel_must_be_a_bool_or_auto(tmp_path):
    with pytest.raises(ValueError, match="parallel: must be True, False or 'auto', got 'yes'"):
        compare_mod.compare("tiny", tmp_path, parallel="yes")
    assert not any(tmp_path.iterdir())  # refused before any work


@pytest.mark.parametrize("flag, expected", [(None, "auto"), ("auto", "auto"), ("yes", True),
                                            ("no", False)])
def test_cli_passes_its_parallel_choice(monkeypatch, tmp_path, flag, expected):
    from dualgap.cli import main

    seen = {}

    def fake_compare(*args, **kwargs):  # stops the command before any work
        seen.update(kwargs)
        raise ValueError("stopped by the test")

    monkeypatch.setattr(compare_mod, "compare", fake_compare)
    argv = ["llm", "synthetic", "--size", "tiny", "--output-dir", str(tmp_path)]
    assert main(argv + ([] if flag is None else ["--parallel", flag])) == 2
    assert seen["parallel"] == expected


def test_cli_refuses_an_unknown_parallel_choice(capsys, tmp_path):
    from dualgap.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["llm", "synthetic", "--output-dir", str(tmp_path), "--parallel", "maybe"])
    assert exc.value.code == 2
    assert "--parallel" in capsys.readouterr().err

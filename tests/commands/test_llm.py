"""Tests of dualgap/commands/llm.py, ``dualgap llm {train,check,rehearse,resume,evaluate}``:
registering the commands imports no heavy library, the options reach the handlers as typed, bad
input is one line with exit 2, and ``--no-progress`` silences the libraries' own bars (the runs
themselves: tests/llm/test_run.py, the preflight: tests/llm/test_preflight.py)."""

import subprocess
import sys

import pytest

from dualgap.cli import build_parser, main


def test_registering_the_llm_commands_imports_no_heavy_library():
    code = ("import sys; from dualgap.cli import build_parser; build_parser(); "
            "print(*(m in sys.modules for m in ('torch', 'transformers', 'trl', 'datasets')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"] * 4


def test_options_reach_the_handlers_as_typed():
    parse = build_parser().parse_args
    a = parse(["llm", "train", "--config", "tiny", "--output-dir", "runs/x", "--set", "seed=1",
               "--set", "beta=0.2", "--stop-after", "2", "--no-check"])
    assert (a.llm_command, a.config, a.output_dir, a.overrides, a.stop_after, a.no_check) == (
        "train", "tiny", "runs/x", ["seed=1", "beta=0.2"], 2, True)
    assert (a.no_progress, a.verbose, a.help_config) == (False, False, False)
    a = parse(["llm", "evaluate", "runs/x", "--against", "runs/y", "--against", "runs/z"])
    assert a.against == ["runs/y", "runs/z"] and not a.json and not a.no_figures
    a = parse(["llm", "rehearse", "--config", "tiny", "--method", "caid", "--method", "one-shot"])
    assert a.methods == ["caid", "one-shot"] and a.output_dir is None and not a.progress
    a = parse(["llm", "resume", "runs/x", "--set", "train.logging_steps=5"])
    assert a.directory == "runs/x" and a.overrides == ["train.logging_steps=5"]
    assert {a.func.__name__ for a in (parse(["llm", c, "--config", "tiny"])
                                      for c in ("check", "rehearse"))} == {"_check", "_rehearse"}


def test_check_and_rehearse_need_a_config(capsys):
    for command in ("check", "rehearse"):
        with pytest.raises(SystemExit):
            main(["llm", command])
        assert "the following arguments are required: --config" in capsys.readouterr().err


def test_train_without_config_or_output_dir_is_one_line(capsys, tmp_path):
    assert main(["llm", "train", "--config", "tiny"]) == 2
    assert capsys.readouterr().err.strip() == (
        "dualgap llm train: error: train: --config and --output-dir are required")
    assert main(["llm", "train", "--output-dir", str(tmp_path / "x")]) == 2
    assert "--config and --output-dir are required" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.llm
def test_help_config_unknown_keys_and_a_missing_run(tmp_path, capsys):
    pytest.importorskip("transformers")  # resume loads the pipeline before it reads the run
    assert main(["llm", "train", "--help-config"]) == 0
    assert "dual.step_size" in capsys.readouterr().out
    assert main(["llm", "train", "--config", "tiny", "--output-dir", str(tmp_path / "x"),
                 "--set", "dual.stepsize=1"]) == 2
    assert "unknown config key 'dual.stepsize'" in capsys.readouterr().err
    assert main(["llm", "resume", str(tmp_path / "nothing")]) == 2


@pytest.mark.llm
def test_no_progress_silences_the_libraries_bars():
    datasets = pytest.importorskip("datasets")
    transformers = pytest.importorskip("transformers")
    import warnings

    from dualgap.commands.llm import _library_progress

    before = (datasets.is_progress_bar_enabled(),
              transformers.utils.logging.is_progress_bar_enabled())
    try:
        datasets.enable_progress_bars()
        transformers.utils.logging.enable_progress_bar()
        with warnings.catch_warnings():
            _library_progress(True)  # progress on: the bars stay
            assert datasets.is_progress_bar_enabled()
            assert transformers.utils.logging.is_progress_bar_enabled()
            _library_progress(False)
            assert not datasets.is_progress_bar_enabled()
            assert not transformers.utils.logging.is_progress_bar_enabled()
            with warnings.catch_warnings(record=True) as seen:
                warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning,
                              stacklevel=1)
            assert seen == []  # TRL's own deprecation warning is not the user's
    finally:
        (datasets.enable_progress_bars if before[0] else datasets.disable_progress_bars)()
        (transformers.utils.logging.enable_progress_bar if before[1]
         else transformers.utils.logging.disable_progress_bar)()

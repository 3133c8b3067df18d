"""End-to-end tiny runs: CAID finishes and moves the policy, resume gives the same lam
trajectory, the baselines run, evaluation reports CIs and figures, the CLI wires it up."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from dualgap.errors import UserError
from dualgap.llm.run import RunStopped, lam_trajectory, read_jsonl, resume, train

pytestmark = pytest.mark.slow


def _weights(directory):
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def _check_auto_dual_step(d, rec, b, beta):
    """``rec`` (a lam_history record) is the dual step its stage documents: the numeric
    ``[lam - eta slack]_+``, or for ``step_size: auto`` the core's rule replayed on the stage's
    stored scores (the first dual step: Kesten gain 1)."""
    from dualgap.dual_steps import DualStepper
    from dualgap.llm.dual import auto_dual_step

    lam_prev, e_ref = np.array(rec["lam_prev"]), np.array(rec["E_ref_g"])
    slack = np.array(rec["E_pi_g"]) - e_ref - b
    np.testing.assert_allclose(rec["slack"], slack, rtol=1e-12)
    if rec["step_size"] != "auto":
        expected = np.maximum(lam_prev - rec["step_size"] * slack, 0.0)
    else:
        s = np.load(d / "scores" / f"{rec['stage']}.npz")
        expected, step = auto_dual_step(DualStepper(), lam_prev, s["reward"], s["utilities"],
                                        e_ref, b, beta)
        assert rec["dual_step"] == json.loads(json.dumps(step))
        np.testing.assert_allclose(rec["dual_step"]["slack"], slack, rtol=1e-12)
    np.testing.assert_allclose(rec["lam"], expected, rtol=1e-12)


def test_tiny_caid_run_changes_the_policy(tiny_run):
    d = tiny_run.directory
    state = json.loads((d / "state.json").read_text())
    assert state["completed"][-1] == "complete"
    ref, last = _weights(d / "models" / "reference"), _weights(d / "checkpoints" / "iter_1")
    moved = max(float((ref[k] - last[k]).abs().max()) for k in ref)
    assert moved > 1e-3, moved
    assert all(ref[k].shape == last[k].shape for k in ref)
    hist = read_jsonl(d / "lam_history.jsonl")
    assert [r["stage"] for r in hist] == ["dual_0", "dual_1", "final"]
    assert hist[0]["source"] == "one-shot"
    # dual_1 is the documented step from the measured slack of iterate 0
    # (dual.step_size: auto, the core's self-tuning step on the stored scores of iterate 0)
    b = np.array(hist[1]["thresholds"])
    assert hist[1]["step_size"] == "auto" and hist[1]["dual_step"]["used"] == "newton"
    _check_auto_dual_step(d, hist[1], b, 0.1)
    # the one-shot lam is dualgap.solve on the stored reference scores
    import dualgap
    from dualgap.llm.dual import empirical_instance

    s = np.load(d / "scores" / "reference.npz")
    sol = dualgap.solve(empirical_instance(s["reward"], s["utilities"], b, 0.1))
    np.testing.assert_allclose(hist[0]["lam"], sol.lam, rtol=1e-10)
    metrics = read_jsonl(d / "metrics.jsonl")
    pol = [m for m in metrics if m["stage"].startswith("policy_")]
    assert len(pol) == 2 and all(m["steps"] == 4 and m["world_size"] == 1 for m in pol)
    assert all(m["timing"]["dpo_s"] > 0 for m in pol)
    assert lam_trajectory(d).shape == (2, 1)


def test_resume_gives_the_same_trajectory(tiny_run, tmp_path):
    out = tmp_path / "killed"
    with pytest.raises(RunStopped):
        train("tiny", out, stop_after=1, progress=False)
    state = json.loads((out / "state.json").read_text())
    assert state["completed"][-1] == "policy_0" and not (out / "checkpoints" / "iter_1").exists()
    # a kill in the middle of the next stage leaves a partial record behind: resume drops it
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"stage": "dual_1", "partial": True}) + "\n")
    with open(out / "lam_history.jsonl", "a") as f:  # and a line cut by the kill
        f.write('{"iteration": 1, "stage": "dua')
    with pytest.raises(ValueError, match="already holds a run"):
        train("tiny", out, progress=False)
    resume(out, progress=False)
    np.testing.assert_array_equal(lam_trajectory(out), lam_trajectory(tiny_run.directory))
    a, b = _weights(out / "checkpoints" / "iter_1"), _weights(tiny_run.directory / "checkpoints"
                                                              / "iter_1")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
    assert not any(r.get("partial") for r in read_jsonl(out / "metrics.jsonl"))


def test_evaluate_and_win_rates(tiny_run, tmp_path):
    from dualgap.llm.evaluate import evaluate, format_summary

    other = train("tiny", tmp_path / "dpo", ["method=dpo-safe", "iterations=1"], progress=False)
    assert not (other.directory / "lam_history.jsonl").exists()
    summary = evaluate(tiny_run.directory, against=[other.directory], progress=False)
    s = summary["scores"]["safety"]
    lo, hi = s["ci95"]
    assert lo <= s["improvement"] <= hi and s["threshold"] == 0.1
    assert s["met"] == (s["improvement"] >= 0.1)
    assert summary["num_prompts"] == 12 and summary["samples_per_prompt"] == 2
    # the improvement is the difference of the stored sample means
    pol = np.load(tiny_run.directory / "scores" / "eval_policy.npz")
    ref = np.load(tiny_run.directory / "scores" / "eval_reference.npz")
    assert pol["utilities"].shape == (1, 12, 2)
    np.testing.assert_allclose(s["improvement"],
                               pol["utilities"].mean() - ref["utilities"].mean(), rtol=1e-12)
    rates = summary["win_rates"][str(other.directory)]
    assert 0.0 <= rates["helpfulness"]["win_rate"] <= 1.0
    for fig in ("histograms.png", "lam_trajectory.png", "improvement_vs_threshold.png"):
        assert (tiny_run.directory / "eval" / fig).stat().st_size > 1000
    assert "b = 0.1" in format_summary(summary)
    # per harm category of the test prompts: the same difference on those prompts
    from dualgap.llm.data import load_pairs

    cats = load_pairs("builtin:tiny", "test").harm_categories()
    prompts = load_pairs("builtin:tiny", "test").unique_prompts()[:12]
    by_cat = summary["by_harm_category"]
    assert set(by_cat) == {c for p in prompts for c in cats[p]} and by_cat
    for cat, entry in by_cat.items():
        idx = [i for i, p in enumerate(prompts) if cat in cats[p]]
        d = pol["utilities"][0, idx].mean(axis=1) - ref["utilities"][0, idx].mean(axis=1)
        assert entry["num_prompts"] == len(idx)
        np.testing.assert_allclose(entry["safety"]["improvement"], d.mean(), rtol=1e-12)
    assert "improvement by harm category" in format_summary(summary)
    # a second evaluation reuses the samples and scores
    again = evaluate(tiny_run.directory, figures=False, progress=False)
    assert again["scores"] == summary["scores"]


def test_cli(tiny_run, tmp_path, capsys):
    """``dualgap llm evaluate`` on a finished run (the other subcommands' argument handling:
    tests/commands/test_llm.py)."""
    from dualgap.cli import main

    assert main(["llm", "evaluate", str(tiny_run.directory), "--no-figures", "--json",
                 "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "caid"


def test_lora_iterations_continue_from_the_previous_adapter(tmp_path):
    from safetensors.torch import load_file

    run = train("tiny", tmp_path / "lora", ["policy.lora.enabled=true", "dual.num_prompts=4",
                                            "dual.samples_per_prompt=4"], progress=False)
    a0 = load_file(str(run.checkpoint(0) / "adapter_model.safetensors"))
    a1 = load_file(str(run.checkpoint(1) / "adapter_model.safetensors"))
    lora_b = [k for k in a0 if "lora_B" in k]
    assert lora_b and all(float(a0[k].abs().max()) > 0 for k in lora_b)  # B starts at zero
    assert max(float((a1[k] - a0[k]).abs().max()) for k in a0) > 1e-4
    assert len(lam_trajectory(run.directory)) == 2


@pytest.mark.parametrize("override, message", [
    ("policy.model=/no/such/model", "policy.model: '/no/such/model' does not exist"),
    ("policy.model=no-such-org/no-such-model",  # offline in the tests: not in the cache
     "policy.model: cannot load 'no-such-org/no-such-model'"),
    ("reward.path=no_such_module:score", "reward.path: cannot import 'no_such_module'"),
    ("constraints.0.scorer.kind=score-model", "constraints.0.scorer.path: cannot load"),
    ("constraints.0.threshold=.nan", "constraints.0.threshold: must be a finite number"),
    ("data.source=/no/such/pairs.jsonl", "data.source: '/no/such/pairs.jsonl' does not exist"),
    ("train.report_to=[tensorboard]", "train.report_to: 'tensorboard' is not installed"),
])
def test_a_failed_setup_leaves_nothing(tmp_path, override, message):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("[", r"\[")):
        train("tiny", out, [override], progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_setup_that_fails_midway_is_removed_and_the_command_reruns(tmp_path, monkeypatch):
    import dualgap.llm.tiny as tiny

    out = tmp_path / "run"
    (tmp_path / ".run.partial").mkdir()  # left by a setup killed earlier
    real = tiny.materialize_tiny_policy

    def broken(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(tiny, "materialize_tiny_policy", broken)
    with pytest.raises(OSError, match="No space left"):
        train("tiny", out, ["iterations=1", "method=dpo-safe"], progress=False)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(tiny, "materialize_tiny_policy", real)
    run = train("tiny", out, ["iterations=1", "method=dpo-safe"], progress=False)
    assert run.done("complete") and list(tmp_path.iterdir()) == [out]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A tiny CAID run stopped after its first policy step."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    with pytest.raises(RunStopped):
        train("tiny", out, stop_after=1, progress=False)
    return out


def _copy(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def test_resume_refuses_a_changed_config_and_names_the_keys(stopped_run, tmp_path):
    """The reported bug: a threshold edited in config.yaml mid-run was accepted (and kept the
    old automatic step size)."""
    import yaml

    d = _copy(stopped_run, tmp_path)
    data = yaml.safe_load((d / "config.yaml").read_text())
    data["constraints"][0]["threshold"] = 0.5
    data["dual"]["step_size"] = 2.0
    (d / "config.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match=r"config\.yaml: changed since the run started \("
                       r"constraints\.0\.threshold: 0\.1 -> 0\.5; dual\.step_size: 'auto' -> 2"):
        resume(d, progress=False)
    from dualgap.llm.evaluate import evaluate  # nor is a run judged against an edited threshold

    with pytest.raises(UserError, match=r"constraints\.0\.threshold: 0\.1 -> 0\.5"):
        evaluate(d, figures=False, progress=False)
    with pytest.raises(UserError, match=r"dual\.num_prompts: 8 -> 4"):
        resume(stopped_run, progress=False, overrides=["dual.num_prompts=4"])
    state_before = (stopped_run / "state.json").read_text()
    assert "config_changes" not in state_before  # nothing was written by the refusals
    # the keys that are safe to change may be changed with resume --set
    run = resume(stopped_run, progress=False, overrides=["train.logging_steps=2",
                                                         "evaluation.samples_per_prompt=3"])
    state = json.loads((stopped_run / "state.json").read_text())
    (change,) = state["config_changes"]
    assert change["changes"] == {"train.logging_steps": [1, 2],
                                 "evaluation.samples_per_prompt": [2, 3]}
    assert change["after"][-1] == "policy_0" and run.done("complete")
    assert run.config.train.logging_steps == 2
    steps = [json.loads(line) for line in (stopped_run / "run.log").read_text().splitlines()]
    assert steps and all("loss" in r or "train_loss" in r for r in steps)
    assert {r["iterate"] for r in steps} == {"iter_0", "iter_1"}  # resumed: both iterates


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "state.json").write_text('{"completed": ["setup", "po'),
     r"state\.json: not valid JSON"),
    (lambda d: (d / "state.json").write_text(json.dumps(
        {**json.loads((d / "state.json").read_text()), "completed": ["setup", "warmup"]})),
     r"state\.json: unknown stage 'warmup'"),
    (lambda d: shutil.rmtree(d / "checkpoints" / "iter_0"),
     r"checkpoints/iter_0: missing or incomplete .* marks policy_0 finished"),
    (lambda d: (d / "lam_history.jsonl").write_text(
        "{oops\n" + (d / "lam_history.jsonl").read_text()),
     r"lam_history\.jsonl: line 1 is not valid JSON"),
    (lambda d: (d / "lam_history.jsonl").unlink(),
     r"lam_history\.jsonl: no record of the finished stage 'dual_0'"),
    (lambda d: (d / "scores" / "pool.npz").write_bytes(
        (d / "scores" / "pool.npz").read_bytes()[:50]), r"pool\.npz: cannot be read"),
    (lambda d: (d / "resolved_config.json").write_text("{"),
     r"resolved_config\.json: not valid JSON"),
])
def test_a_damaged_run_directory_is_named_in_one_line(stopped_run, tmp_path, damage, message,
                                                      capsys):
    from dualgap.cli import main

    d = _copy(stopped_run, tmp_path)
    damage(d)
    with pytest.raises(UserError, match=message):
        resume(d, progress=False)
    assert main(["llm", "resume", str(d), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dualgap llm resume: error:")
    assert len(err.splitlines()) == 1


def test_train_prints_a_summary_not_the_step_losses(tmp_path, capsys):
    from dualgap.cli import main

    out = tmp_path / "cli"
    assert main(["llm", "train", "--config", "tiny", "--output-dir", str(out), "--set",
                 "iterations=1", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "'loss'" not in text and "{'" not in text
    final = [r for r in read_jsonl(out / "lam_history.jsonl") if r["stage"] == "final"][0]
    margin = final["slack"][0]
    assert f"safety: improvement {final['E_pi_g'][0] - final['E_ref_g'][0]:.4g}" in text
    assert ("met (by" if margin >= 0 else "NOT met (short by") in text
    assert f"final policy: {out / 'checkpoints' / 'iter_0'}" in text
    assert "dualgap llm evaluate" in text and (out / "run.log").stat().st_size > 0


def test_literal_start_auto_steps_from_pi_ref_samples_and_resumes(tmp_path):
    # dual.start literal + step_size auto: the first dual step uses pi_ref's own scored samples
    # (the reference stage's), and a run killed after it resumes the stepper's gain state
    over = ["dual.start=literal", "iterations=3"]
    out = tmp_path / "lit"
    with pytest.raises(RunStopped):
        train("tiny", out, overrides=over, stop_after=2, progress=False)
    state = json.loads((out / "state.json").read_text())
    assert set(state["dual_stepper"]) == {"rule", "confidence", "turns", "previous",
                                          "secant_lam", "secant_slack", "secant_noise",
                                          "secant_hessian"}
    from dualgap.llm.config import load_config
    from dualgap.llm.config_checks import dual_confidence

    assert state["dual_stepper"]["confidence"] == dual_confidence(
        load_config("tiny").dual)
    resume(out, progress=False)
    hist = read_jsonl(out / "lam_history.jsonl")
    assert [r["stage"] for r in hist] == ["dual_0", "dual_1", "dual_2", "final"]
    h0 = hist[0]
    assert h0["source"] == "dual-step" and h0["lam_prev"] == [0.0]
    b = np.array(h0["thresholds"])
    np.testing.assert_allclose(h0["dual_step"]["slack"], -b, atol=1e-12)  # E_pi g = E_ref g
    s = np.load(out / "scores" / "reference.npz")
    from dualgap.dual_steps import DualStepper
    from dualgap.llm.dual import auto_dual_step

    lam0, _ = auto_dual_step(DualStepper(), [0.0], s["reward"], s["utilities"],
                             h0["E_ref_g"], b, 0.1)
    np.testing.assert_allclose(h0["lam"], lam0, rtol=1e-12)
    # an uninterrupted run gives the same lam trajectory
    full = train("tiny", tmp_path / "full", overrides=over, progress=False)
    np.testing.assert_allclose(lam_trajectory(full.directory), lam_trajectory(out), rtol=1e-12)
    assert all(r["dual_step"]["rule"] == "newton" for r in hist[:3])


def test_onpolicy_distill_runs_on_the_tiny_config_and_resumes(tmp_path):
    """``train.pool: onpolicy`` end to end on the tiny LLM config: policy step 1 trains on
    samples of iterate 0 (``samples/onpolicy_1.json``, its metrics say so), and a run killed
    after policy step 0 and resumed gives the same lam trajectory and weights."""
    over = ["train.labels=distill", "train.pool=onpolicy"]
    full = train("tiny", tmp_path / "full", over, progress=False)
    policy = [m for m in read_jsonl(full.directory / "metrics.jsonl")
              if m.get("stage", "").startswith("policy_")]
    assert [m.get("pool") for m in policy] == [None, "onpolicy"]
    assert (full.directory / "samples" / "onpolicy_1.json").exists()
    out = tmp_path / "killed"
    with pytest.raises(RunStopped):
        train("tiny", out, over, stop_after=1, progress=False)
    resume(out, progress=False)
    np.testing.assert_array_equal(lam_trajectory(out), lam_trajectory(full.directory))
    a = _weights(out / "checkpoints" / "iter_1")
    b = _weights(full.directory / "checkpoints" / "iter_1")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6

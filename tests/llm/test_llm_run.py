"""End-to-end tiny runs: CAID finishes and moves the policy, resume gives the same lam
trajectory, the baselines run, evaluation reports CIs and figures, the CLI wires it up."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dualgap.llm.run import RunStopped, lam_trajectory, read_jsonl, resume, train

pytestmark = pytest.mark.slow


def _weights(directory):
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


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
    b, eta = np.array(hist[1]["thresholds"]), hist[1]["step_size"]
    expected = np.maximum(np.array(hist[1]["lam_prev"]) - eta * (
        np.array(hist[1]["E_pi_g"]) - np.array(hist[1]["E_ref_g"]) - b), 0.0)
    np.testing.assert_allclose(hist[1]["lam"], expected, rtol=1e-12)
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
    # a second evaluation reuses the samples and scores
    again = evaluate(tiny_run.directory, figures=False, progress=False)
    assert again["scores"] == summary["scores"]


def test_cli(tiny_run, tmp_path, capsys):
    from dualgap.cli import main

    assert main(["llm", "train", "--help-config"]) == 0
    assert "dual.step_size" in capsys.readouterr().out
    assert main(["llm", "train", "--config", "tiny", "--output-dir", str(tmp_path / "x"),
                 "--set", "dual.stepsize=1"]) == 2
    assert "unknown config key 'dual.stepsize'" in capsys.readouterr().err
    assert main(["llm", "resume", str(tmp_path / "nothing")]) == 2
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

"""The rehearsal: every shipped config and every method on tiny stand-ins, offline, with a kill
(stop after the first policy step) and a resume; the stand-ins load through the real loaders."""

from __future__ import annotations

import importlib.util
import json

import pytest

from dualgap.errors import UserError
from dualgap.llm.config import METHODS, load_config, shipped_configs

#: the loggers of the shipped configs are not installed by the llm extra: the rehearsal must
#: refuse them (tested below) and runs with train.report_to=[none] when they are missing
NO_TENSORBOARD = importlib.util.find_spec("tensorboard") is None


def _cases():
    for name in sorted(shipped_configs()):
        cfg = load_config(name)
        for m in METHODS:
            if m in ("dpo-safe", "pecaid", "pe-one-shot") and cfg.data.format == "hh-rlhf":
                continue  # the config refuses it (no safety labels): tested below
            yield pytest.param(name, m, id=f"{name}-{m}")


def _overrides(name: str, method: str = "caid") -> list[str]:
    cfg = load_config(name)
    out = []
    if NO_TENSORBOARD and "tensorboard" in cfg.train.report_to:
        out.append("train.report_to=[none]")
    if method in ("pecaid", "pe-one-shot"):  # implicit-reward units: 0 = no worse than pi_ref
        out.append(f"pecaid.thresholds={[0.0] * len(cfg.constraints)}")
    return out


@pytest.mark.parametrize(("name", "method"), list(_cases()))
def test_rehearsal_of_every_shipped_config_and_method(name, method, tmp_path):
    from dualgap.llm.rehearsal import format_rehearsal, rehearse
    from dualgap.llm.run import read_jsonl

    result = rehearse(name, overrides=_overrides(name, method), methods=[method],
                      output_dir=tmp_path)
    stages = [(s.method, s.stage) for s in result.stages]
    assert stages == [("-", "stand-ins"), ("-", "preflight"), (method, "train (killed)"),
                      (method, "resume"), (method, "evaluate")]
    run = result.runs[method]
    state = json.loads((run / "state.json").read_text())
    assert state["completed"][-1] == "complete"
    assert {"policy_0", "policy_1"} <= set(state["completed"])
    # the kill really cut the run: the first call stopped after policy_0, resume did the rest
    assert result.killed_at[method][-1] == "policy_0"
    metrics = [r["stage"] for r in read_jsonl(run / "metrics.jsonl")]
    assert metrics.count("policy_0") == 1 and metrics.count("policy_1") == 1
    assert (run / "checkpoints" / "iter_1").is_dir()
    _assert_trained(run, load_config(name))
    assert (run / "eval" / "histograms.png").stat().st_size > 0
    assert set(result.summaries[method]["scores"]) == {
        c.name for c in [result_cfg(run).reward] + [c.scorer for c in result_cfg(run).constraints]}
    # every repo the config names has a stand-in under its own id
    cfg = load_config(name)
    from dualgap.llm.standins import repos_of_config

    assert sorted(s.repo for s in result.standins) == sorted(r for _, r, _, _ in
                                                            repos_of_config(cfg))
    table = format_rehearsal(result)
    assert "train (killed)" in table and "resume" in table
    # the runs loaded the stand-ins by hub id, exactly as a real run would
    if not cfg.policy.model.startswith("builtin:"):
        assert state["reference_path"] == cfg.policy.model


def _assert_trained(run, cfg):
    """The policy steps changed the parameters (LoRA: lora_B starts at zero)."""
    import numpy as np
    from safetensors.numpy import load_file

    ckpt = run / "checkpoints" / "iter_1"
    if cfg.policy.lora.enabled:
        tensors = load_file(str(ckpt / "adapter_model.safetensors"))
        lora_b = [v for k, v in tensors.items() if "lora_B" in k]
        assert lora_b and max(np.abs(v).max() for v in lora_b) > 0
    else:
        new = load_file(str(ckpt / "model.safetensors"))
        old = load_file(str(run / "models" / "reference" / "model.safetensors"))
        assert any(not np.array_equal(new[k], old[k]) for k in new if k in old)


def result_cfg(run):
    return load_config(run / "config.yaml")


def test_rehearsal_refuses_a_logger_that_is_not_installed(tmp_path):
    """A config that logs to tensorboard, which the llm extra does not install (the shipped
    configs did): the rehearsal's preflight stops before any training, naming the key."""
    from dualgap.llm.rehearsal import rehearse

    if not NO_TENSORBOARD:
        pytest.skip("tensorboard is installed here")
    with pytest.raises(UserError, match=r"train\.report_to\.0: 'tensorboard'"):
        rehearse("pku_saferlhf_30k", overrides=["train.report_to=[tensorboard]"],
                 methods=["caid"], output_dir=tmp_path)
    assert not (tmp_path / "runs").exists()


def test_rehearsal_names_a_method_the_config_cannot_run(tmp_path):
    from dualgap.llm.rehearsal import rehearse

    with pytest.raises(ValueError, match="--method: 'dpo-safe' cannot run"):
        rehearse("hh_rlhf_two_constraints", methods=["dpo-safe"], output_dir=tmp_path)
    with pytest.raises(ValueError, match="--method: 'ppo' is not one of"):
        rehearse("tiny", methods=["ppo"], output_dir=tmp_path)


def test_rehearsal_changes_only_sizes():
    """Every key the rehearsal overrides is a size (counts, lengths, batch sizes, steps)."""
    from dualgap.llm.rehearsal import rehearsal_overrides

    sizes = ("iterations", "max_train_pairs", "max_test_prompts", "num_prompts",
             "samples_per_prompt", "max_new_tokens", "batch_size", "gradient_accumulation_steps",
             "max_length", "warmup_steps", "logging_steps")
    for name in shipped_configs():
        for item in rehearsal_overrides(load_config(name)):
            assert item.split("=")[0].split(".")[-1] in sizes, item


def test_rehearse_command_prints_the_stage_table(tmp_path, capsys):
    from dualgap.cli import main

    rc = main(["llm", "rehearse", "--config", "tiny", "--method", "one-shot", "--output-dir",
               str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "one-shot     train (killed)" in out and "total" in out
    assert json.loads((tmp_path / "rehearsal.json").read_text())["runs"]["one-shot"]


def test_a_local_model_folder_gets_a_local_standin(tmp_path, tiny_tokenizer):
    """A config whose policy is a local folder (an SFT checkpoint) is rehearsed on a stand-in
    of that folder (same architecture and tokenizer, stand-in size), never on the folder."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from dualgap.llm.rehearsal import rehearse

    sft = tmp_path / "my-sft"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tiny_tokenizer), n_layer=3, n_embd=48, n_head=3,
                               bos_token_id=tiny_tokenizer.bos_token_id,
                               eos_token_id=tiny_tokenizer.eos_token_id)).save_pretrained(sft)
    tiny_tokenizer.save_pretrained(sft)
    result = rehearse("tiny", overrides=[f"policy.model={sft}"], methods=["dpo-helpful"],
                      output_dir=tmp_path / "rehearsal")
    (standin,) = result.standins
    assert (standin.key, standin.origin, standin.architecture) == (
        "policy.model", "real config.json (local folder)", "GPT2LMHeadModel")
    state = json.loads((result.runs["dpo-helpful"] / "state.json").read_text())
    assert state["reference_path"] == standin.location != str(sft)
    standin_cfg = json.loads((tmp_path / "rehearsal" / "hf-cache" / "local" / "policy.model"
                              / "config.json").read_text())
    assert standin_cfg["n_layer"] == 2


def test_rehearsal_of_the_tiny_config_with_the_distillation_step(tmp_path):
    """``train.labels: distill`` runs through the tiny config's rehearsal (kill, resume,
    evaluate) and trains: the weighted-NLL step is what the policy stages record."""
    from dualgap.llm.rehearsal import rehearse
    from dualgap.llm.run import read_jsonl

    result = rehearse("tiny", overrides=["train.labels=distill"], methods=["caid"],
                      output_dir=tmp_path)
    run = result.runs["caid"]
    state = json.loads((run / "state.json").read_text())
    assert state["completed"][-1] == "complete" and result.killed_at["caid"][-1] == "policy_0"
    policy = [r for r in read_jsonl(run / "metrics.jsonl") if r["stage"].startswith("policy_")]
    assert [r["labels"] for r in policy] == ["distill", "distill"]
    assert all(0 < r["ess_min"] <= r["responses_per_prompt"] for r in policy)
    _assert_trained(run, load_config("tiny"))
    # the auto dual step ran with the tiny config's margin (dual.confidence: auto) and recorded it
    from dualgap.llm.config_checks import dual_confidence

    steps = [r["dual_step"] for r in read_jsonl(run / "lam_history.jsonl") if r.get("dual_step")]
    assert steps and all(s["confidence"] == dual_confidence(load_config("tiny").dual)
                         and len(s["margin"]) == 1 and s["margin"][0] >= 0 for s in steps)
    assert dual_confidence(load_config("tiny").dual) is not None

"""The preflight: every repo, logger and device setting checked in seconds, problems named by
config key and value, memory estimated per stage; ``train`` runs it before its first stage."""

from __future__ import annotations

import importlib.util

import pytest

from dualgap.errors import UserError
from dualgap.llm.config import config_to_dict, load_config
from dualgap.llm.hub_cache import private_hub_cache
from dualgap.llm.preflight import preflight


def _problems(report):
    return {c.key: c.detail for c in report.problems}


def test_shipped_config_on_standins_passes_with_memory_rows(pku_standins):
    import torch
    from transformers import AutoModelForCausalLM

    home, cfg = pku_standins
    cfg = load_config(config_to_dict(cfg), ["train.report_to=[none]"])
    with private_hub_cache(home):
        report = preflight(cfg)
        model = AutoModelForCausalLM.from_pretrained(cfg.policy.model, dtype=torch.float32)
    assert report.problems == [], report.table()
    stages = [m.stage for m in report.memory]
    assert stages == ["generation", "DPO", "scoring"]
    # weights at policy.dtype (bfloat16): the parameters counted on the meta device must be
    # those of the model transformers loads
    n = sum(p.numel() for p in model.parameters())
    c = model.config
    head_dim = c.hidden_size // c.num_attention_heads
    kv = 2 * c.num_hidden_layers * c.num_key_value_heads * head_dim * 2 * (
        cfg.generation.batch_size * (cfg.train.max_length + cfg.generation.max_new_tokens))
    assert report.memory[0].bytes == pytest.approx(2 * n + kv)
    from dualgap.llm.score_model import load_score_model

    with private_hub_cache(home):
        backbones = [load_score_model(s.path, None, "float32", "cpu")[0].backbone
                     for s in [cfg.reward, cfg.constraints[0].scorer]]
    assert report.memory[2].bytes == 2 * sum(p.numel() for b in backbones
                                             for p in b.parameters())  # both in bfloat16
    assert "memory per process" in report.table()


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None,
                    reason="tensorboard is installed here")
def test_a_logger_that_is_not_installed_is_a_problem():
    report = preflight(load_config("tiny", ["train.report_to=[tensorboard]"]))
    assert "tensorboard logger fails to start" in _problems(report)["train.report_to.0"]
    with pytest.raises(UserError, match=r"^train\.report_to\.0: 'tensorboard': the tensorboard "):
        report.raise_for_problems()


def test_an_unknown_logger_is_refused():
    try:
        cfg = load_config("tiny", ["train.report_to=[tensorbored]"])
    except ValueError as exc:  # a config layer that checks the names refuses it itself
        assert "train.report_to" in str(exc) and "tensorbored" in str(exc)
        return
    assert _problems(preflight(cfg))["train.report_to.0"].startswith("unknown logger")


def test_device_settings():
    import torch

    cfg = load_config("tiny", ["policy.lora.enabled=true", "policy.lora.load_in_4bit=true",
                               "train.batch_size=6", "train.gradient_accumulation_steps=4",
                               "train.bf16=true"])
    report = preflight(cfg)
    problems = _problems(report)
    assert "not divisible by world size 1 x gradient_accumulation_steps 4" in problems[
        "train.batch_size"]
    if not (torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes")):
        assert problems["policy.lora.load_in_4bit"].startswith("needs bitsandbytes and CUDA")
    if not torch.cuda.is_available():
        notes = {c.key: c.detail for c in report.checks if c.status == "note"}
        assert "ignored on CPU" in notes["train.bf16"]


def _local_model(path, cls_name, tokenizer, tiny_llama_config, **config):
    import transformers

    cfg = tiny_llama_config.__class__(**{**tiny_llama_config.to_dict(), **config})
    getattr(transformers, cls_name)(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_scorer_layout_and_labels_are_checked(tmp_path, tiny_tokenizer, tiny_llama_config):
    lm = _local_model(tmp_path / "lm", "LlamaForCausalLM", tiny_tokenizer, tiny_llama_config)
    clf = _local_model(tmp_path / "clf", "LlamaForSequenceClassification", tiny_tokenizer,
                       tiny_llama_config, num_labels=2)
    cfg = load_config("tiny", ["reward.kind=score-model", f"reward.path={lm}",
                               "constraints.0.scorer.kind=sequence-classifier",
                               f"constraints.0.scorer.path={clf}"])
    problems = _problems(preflight(cfg))
    assert "not a safe-rlhf score model" in problems["reward.path"]
    assert "has 2 labels; name the one to score" in problems["constraints.0.scorer.label_index"]
    cfg = load_config(config_to_dict(cfg), ["constraints.0.scorer.label_index=2"])
    assert "out of range for 2 labels" in _problems(preflight(cfg))[
        "constraints.0.scorer.label_index"]


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None,
                    reason="flash-attn is installed here")
def test_flash_attention_without_flash_attn(tmp_path, tiny_tokenizer, tiny_llama_config):
    import json

    lm = _local_model(tmp_path / "lm", "LlamaForCausalLM", tiny_tokenizer, tiny_llama_config)
    raw = json.loads((tmp_path / "lm" / "config.json").read_text())
    raw["attn_implementation"] = "flash_attention_2"
    (tmp_path / "lm" / "config.json").write_text(json.dumps(raw))
    problems = _problems(preflight(load_config("tiny", [f"policy.model={lm}"])))
    assert "flash-attn is not installed" in problems["policy.model"]


def test_check_command(capsys):
    from dualgap.cli import main

    assert main(["llm", "check", "--config", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "policy.model" in out and "preflight: 0 problem(s)" in out
    assert main(["llm", "check", "--config", "pku_saferlhf_30k"]) == 2  # offline, not cached
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("dualgap llm check: error: policy.model: 'PKU-Alignment/alpaca-7b-"
                             "reproduced' is not in the local Hugging Face cache")


def test_train_runs_the_preflight_before_any_work(tmp_path, capsys):
    """A wrong policy.model is found in seconds, before pool scoring, and leaves no run."""
    from dualgap.cli import main

    out = tmp_path / "run"
    rc = main(["llm", "train", "--config", "tiny", "--set", "policy.model=./no/such/sft",
               "--output-dir", str(out)])
    assert rc == 2
    assert "policy.model: './no/such/sft' is not a local folder" in capsys.readouterr().err
    assert not out.exists()


def test_a_stage_that_cannot_fit_the_gpu_is_a_problem(pku_standins, monkeypatch):
    """With a (pretend) 16 KiB GPU every stage's estimate is too big; the key to change is
    named.  torch.cuda is replaced by stand-ins for the device queries only."""
    import torch

    home, cfg = pku_standins
    cfg = load_config(config_to_dict(cfg), ["train.report_to=[none]"])

    class Props:
        total_memory = 2 ** 14

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Props())
    with private_hub_cache(home):
        report = preflight(cfg)
    problems = _problems(report)
    assert "the generation stage needs about" in problems["generation.batch_size"]
    assert "the DPO stage needs" in problems["policy.lora.load_in_4bit"]
    assert "more than the GPU's 0.0 GiB" in problems["reward.dtype"]


def test_a_local_folder_without_weights(tmp_path, tiny_tokenizer, tiny_llama_config):
    lm = _local_model(tmp_path / "lm", "LlamaForCausalLM", tiny_tokenizer, tiny_llama_config)
    (tmp_path / "lm" / "model.safetensors").unlink()
    problems = _problems(preflight(load_config("tiny", [f"policy.model={lm}"])))
    assert problems["policy.model"].startswith("the folder has no weights file")


def test_pecaid_counts_its_implicit_scorers(pku_standins):
    """PeCAID's scoring stage loads m + 1 implicit scorers at once, each with its pre-aligned
    model and a copy of pi_ref: 2 (m + 1) policy-size models at policy.dtype, none of which a
    caid run loads."""
    import torch
    from transformers import AutoModelForCausalLM

    home, cfg = pku_standins
    base = config_to_dict(cfg)
    thresholds = "[" + ",".join(["0.0"] * len(cfg.constraints)) + "]"
    with private_hub_cache(home):
        caid = preflight(load_config(base, ["train.report_to=[none]"]))
        pecaid = preflight(load_config(base, ["train.report_to=[none]", "method=pecaid",
                                              f"pecaid.thresholds={thresholds}"]))
        model = AutoModelForCausalLM.from_pretrained(cfg.policy.model, dtype=torch.float32)
    assert pecaid.problems == [], pecaid.table()
    assert "implicit scoring" not in {m.stage for m in caid.memory}
    row = {m.stage: m for m in pecaid.memory}["implicit scoring"]
    n = sum(p.numel() for p in model.parameters())
    k = 1 + len(cfg.constraints)
    assert row.bytes == 2 * k * n * 2  # policy.dtype bfloat16: 2 bytes per parameter
    assert row.key == "policy.dtype"


def test_check_with_no_logger_does_not_import_the_trainer_integrations():
    """``report_to: [none]`` (the default) needs no logger check: ``dualgap llm check`` must not
    import ``transformers.integrations.integration_utils`` (8 s of imports on this machine)."""
    import subprocess
    import sys

    code = ("import sys; from dualgap.llm.config import load_config; "
            "from dualgap.llm.preflight import preflight; preflight(load_config('tiny')); "
            "print('transformers.integrations.integration_utils' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert out.stdout.strip().splitlines()[-1] == "False"

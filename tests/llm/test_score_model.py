"""Tests of dualgap/llm/score_model.py: safe-rlhf score-model checkpoints (both layouts, sharded
safetensors and .bin) load and score as a hand computation does."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dualgap.llm.config import ScorerConfig
from dualgap.llm.scoring import build_scorer

torch = pytest.importorskip("torch")

from .score_checkpoints import PROMPTS, RESPONSES, hand_scores, save_score_checkpoint  # noqa: E402


@pytest.mark.parametrize("fmt, score_type", [("safetensors", "reward"), ("bin", "cost")])
def test_score_model_matches_hand_computation(tmp_path, tiny_tokenizer, tiny_llama_config, fmt,
                                              score_type):
    d = tmp_path / "ckpt"
    backbone, w, b, mean, var = save_score_checkpoint(
        d, tiny_llama_config, 3, score_type, fmt, tokenizer=tiny_tokenizer)
    raw = hand_scores(backbone, tiny_tokenizer, w, b, PROMPTS, RESPONSES)
    std = float(var.sqrt())
    expected = (raw - float(mean)) / (std + 1e-8) if score_type == "reward" else raw / (std + 1e-8)
    cfg = ScorerConfig(name=score_type, kind="score-model", path=str(d), batch_size=2,
                       negate=score_type == "cost")
    scorer = build_scorer(cfg, device="cpu", progress=False)
    got = scorer.raw(PROMPTS, RESPONSES)  # padded batches of different lengths
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scorer(PROMPTS, RESPONSES), -expected if score_type == "cost"
                               else expected, rtol=1e-5, atol=1e-5)
    # the bias matters: the same head without it would be off by b
    assert abs(float(b[0])) > 1e-3


def test_score_model_without_normalization_and_errors(tmp_path, tiny_tokenizer, tiny_llama_config):
    from dualgap.llm.score_model import backbone_class_name, load_score_model

    d = tmp_path / "plain"
    backbone, w, b, _, _ = save_score_checkpoint(
        d, tiny_llama_config, 5, "reward", "safetensors", shards=1, bias=False,
        do_normalize=False, tokenizer=tiny_tokenizer)
    scorer = build_scorer(ScorerConfig(kind="score-model", path=str(d)), device="cpu",
                          progress=False)
    np.testing.assert_allclose(scorer.raw(PROMPTS, RESPONSES),
                               hand_scores(backbone, tiny_tokenizer, w, b, PROMPTS, RESPONSES),
                               rtol=1e-5, atol=1e-5)
    assert backbone_class_name("GPT2ForScore") == "GPT2Model"
    with pytest.raises(ValueError, match="ForScore"):
        backbone_class_name("LlamaForCausalLM")
    # a tensor missing from the checkpoint is named
    from safetensors.torch import load_file, save_file

    (f,) = [p for p in d.iterdir() if p.suffix == ".safetensors"]
    state = load_file(str(f))
    state.pop("model.norm.weight")
    save_file(state, str(f))
    idx = json.loads((d / "model.safetensors.index.json").read_text())
    idx["weight_map"].pop("model.norm.weight")
    (d / "model.safetensors.index.json").write_text(json.dumps(idx))
    with pytest.raises(ValueError, match="missing from the checkpoint.*norm.weight"):
        load_score_model(str(d))


@pytest.mark.parametrize("bias", [False, True])
def test_older_layout_llama_model_for_score(tmp_path, tiny_tokenizer, tiny_llama_config, bias):
    """``LlamaModelForScore`` with config key ``bias`` (the beaver-7b-v1.0 layout) loads, with
    and without the head's bias, and its default (no key) is no bias."""
    from dualgap.llm.score_model import backbone_class_name, load_score_model

    assert backbone_class_name("LlamaModelForScore") == "LlamaModel"
    d = tmp_path / "old"
    backbone, w, b, _, _ = save_score_checkpoint(
        d, tiny_llama_config, 7, "cost", "bin", bias=bias, do_normalize=False,
        tokenizer=tiny_tokenizer, layout="LlamaModelForScore",
        bias_key=None if bias else False)
    scorer = build_scorer(ScorerConfig(kind="score-model", path=str(d), batch_size=2),
                          device="cpu", progress=False)
    np.testing.assert_allclose(scorer.raw(PROMPTS, RESPONSES),
                               hand_scores(backbone, tiny_tokenizer, w, b, PROMPTS, RESPONSES),
                               rtol=1e-5, atol=1e-5)
    model, _ = load_score_model(str(d))
    assert bool(model.head_bias.abs().max() > 0) == bias
    # the new layout's key does not switch the old layout's head (upstream reads `bias`)
    cfg = json.loads((d / "config.json").read_text())
    cfg.pop("bias", None)
    cfg["score_bias"] = True
    (d / "config.json").write_text(json.dumps(cfg))
    if bias:  # the head has a bias the config does not declare: named, not dropped
        with pytest.raises(ValueError, match="has score_head.bias but config.json's bias"):
            load_score_model(str(d))
    else:
        load_score_model(str(d))


def test_new_layout_defaults_to_a_bias(tmp_path, tiny_tokenizer, tiny_llama_config):
    from dualgap.llm.score_model import load_score_model

    d = tmp_path / "new"
    save_score_checkpoint(d, tiny_llama_config, 8, "reward", "safetensors", shards=1,
                           bias=True, tokenizer=tiny_tokenizer, bias_key=False)
    assert float(load_score_model(str(d))[0].head_bias.abs().max()) > 0
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not match model_type 'gpt2'"):
        load_score_model(str(d))

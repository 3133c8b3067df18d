"""Stand-ins: the real loaders (``from_pretrained``, ``snapshot_download``, ``load_dataset``)
read them by hub id from the private cache, in the layouts of the real repos."""

from __future__ import annotations

import json

from dualgap.llm.hub_cache import private_hub_cache


def test_score_model_standin_is_in_safe_rlhf_layout(pku_standins):
    from huggingface_hub import snapshot_download
    from safetensors import safe_open

    from dualgap.llm.score_model import load_score_model

    home, cfg = pku_standins
    with private_hub_cache(home):
        d = snapshot_download(cfg.reward.path)
        raw = json.loads(open(f"{d}/config.json").read())
        model, _ = load_score_model(cfg.reward.path, None, "float32", "cpu")
    assert raw["architectures"] == ["LlamaForScore"] and raw["score_bias"] is True
    assert raw["score_dim"] == 1 and raw["score_type"] == "reward"
    with safe_open(f"{d}/model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert {"score_head.weight", "score_head.bias", "normalizer.mean", "normalizer.var",
            "model.embed_tokens.weight", "model.norm.weight"} <= keys
    assert model.head_bias.abs().item() > 0  # the bias is read, not defaulted


def test_cost_model_standin_is_a_cost(pku_standins):
    from huggingface_hub import snapshot_download

    home, cfg = pku_standins
    with private_hub_cache(home):
        d = snapshot_download(cfg.constraints[0].scorer.path)
    assert json.loads(open(f"{d}/config.json").read())["score_type"] == "cost"


def test_dataset_standin_has_the_real_columns_and_splits(pku_standins):
    import datasets

    from dualgap.llm.data import load_pairs
    from dualgap.llm.standins import DATASET_COLUMNS

    home, cfg = pku_standins
    with private_hub_cache(home):
        ds = datasets.load_dataset(cfg.data.source, split="test", revision="main")
        pairs = load_pairs(cfg.data.source, "train", revision=cfg.data.revision)
    assert tuple(ds.column_names) == DATASET_COLUMNS[cfg.data.source]
    assert ds.features["is_response_0_safe"].dtype == "bool"
    assert len(pairs) > 0


def test_standin_keeps_a_cached_architecture_and_tokenizer(tmp_path, tiny_tokenizer):
    """A repo whose real config.json and tokenizer are in the user's cache keeps its class
    (here GPT-2) and tokenizer, at stand-in depth and width."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from dualgap.llm.config import load_config
    from dualgap.llm.hub_cache import write_model_snapshot
    from dualgap.llm.standins import STANDIN_SIZES, build_standins, cached_originals

    real = tmp_path / "real"
    real.mkdir()
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tiny_tokenizer), n_layer=3, n_embd=48,
                               n_head=3)).save_pretrained(real)
    tiny_tokenizer.save_pretrained(real)
    cfg = load_config("tiny", ["policy.model=acme/gpt2-sft"])
    user = tmp_path / "user-cache"
    with private_hub_cache(user):
        write_model_snapshot(user / "hub", "acme/gpt2-sft", real)
        originals = cached_originals(cfg)
    assert originals["acme/gpt2-sft"][0]["model_type"] == "gpt2"
    home = tmp_path / "rehearsal-cache"
    with private_hub_cache(home):
        built = build_standins(cfg, home, originals)
        model = AutoModelForCausalLM.from_pretrained("acme/gpt2-sft")
        tok = AutoTokenizer.from_pretrained("acme/gpt2-sft")
    assert built[0].origin == "real config.json (cached)"
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert model.config.n_layer == STANDIN_SIZES["layers"]
    assert model.config.n_embd == STANDIN_SIZES["hidden"]
    assert tok.get_vocab() == tiny_tokenizer.get_vocab()

"""safe-rlhf score-model checkpoints written for the tests (the layout ``load_score_model``
reads), the texts they score, and the hand computation of their scores."""

from __future__ import annotations

import json

import numpy as np

PROMPTS = ["How do I fix a tap?", "What is a good gift?", "How can I learn to code?",
           "Where can I get free movies?", "How do I start running?"]


RESPONSES = ["first turn off the water then check the washer", "a book",
             "practice small projects each week and check examples carefully",
             "check your public library", "start slow"]


def save_score_checkpoint(directory, config, seed, score_type, fmt, shards=2, bias=True,
                           do_normalize=True, tokenizer=None, layout="LlamaForScore",
                           bias_key=None):
    """A checkpoint in safe-rlhf's layout: backbone under ``model.``, ``score_head`` with bias,
    normalizer buffers; sharded safetensors or ``.bin`` files with an index.  ``layout``
    ``LlamaForScore`` writes ``score_bias``; the older ``LlamaModelForScore`` writes ``bias``
    (``bias_key=False``: no key at all, the layout's default applies)."""
    import torch
    from transformers import LlamaModel

    torch.manual_seed(seed)
    backbone = LlamaModel(config).eval()
    g = torch.Generator().manual_seed(seed + 1)
    head_w = torch.randn(1, config.hidden_size, generator=g)
    head_b = torch.randn(1, generator=g)
    mean, var = torch.tensor([0.7]), torch.tensor([2.5])
    state = {f"model.{k}": v.clone() for k, v in backbone.state_dict().items()}
    state["score_head.weight"] = head_w
    if bias:
        state["score_head.bias"] = head_b
    state.update({"normalizer.mean": mean, "normalizer.var": var,
                  "normalizer.count": torch.tensor([1000])})
    directory.mkdir(parents=True)
    cfg = config.to_dict()
    cfg.update(architectures=[layout], score_dim=1, score_type=score_type,
               do_normalize=do_normalize, normalizer_type="RunningMeanStd")
    if bias_key is not False:
        cfg[bias_key or ("bias" if layout == "LlamaModelForScore" else "score_bias")] = bias
    (directory / "config.json").write_text(json.dumps(cfg))
    keys = sorted(state)
    parts = [keys[i::shards] for i in range(shards)]
    weight_map = {}
    for i, part in enumerate(parts):
        name = (f"model-{i + 1:05d}-of-{shards:05d}.safetensors" if fmt == "safetensors"
                else f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin")
        tensors = {k: state[k].contiguous() for k in part}
        if fmt == "safetensors":
            from safetensors.torch import save_file

            save_file(tensors, str(directory / name))
        else:
            torch.save(tensors, directory / name)
        weight_map.update({k: name for k in part})
    index = ("model.safetensors.index.json" if fmt == "safetensors"
             else "pytorch_model.bin.index.json")
    (directory / index).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    tokenizer.save_pretrained(directory)
    return backbone, head_w, head_b if bias else torch.zeros(1), mean, var


def hand_scores(backbone, tokenizer, head_w, head_b, prompts, responses):
    """Each text alone (no padding): W h_last + b."""
    import torch

    out = []
    for p, r in zip(prompts, responses, strict=True):
        text = f"BEGINNING OF CONVERSATION: USER: {p} ASSISTANT:{r}{tokenizer.eos_token}"
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.no_grad():
            h = backbone(input_ids=ids).last_hidden_state[0, -1]
        out.append(float(h @ head_w[0] + head_b[0]))
    return np.array(out)

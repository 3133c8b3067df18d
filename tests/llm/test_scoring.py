"""Scorers: safe-rlhf score-model remapping against a hand computation, sequence classifiers,
callables, signs, length-sorted batching and the on-disk cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dualgap.llm.config import ScorerConfig
from dualgap.llm.scoring import (
    CachedScorer,
    CallableScorer,
    ScoreCache,
    build_scorer,
    length_sorted_batches,
)

torch = pytest.importorskip("torch")

PROMPTS = ["How do I fix a tap?", "What is a good gift?", "How can I learn to code?",
           "Where can I get free movies?", "How do I start running?"]
RESPONSES = ["first turn off the water then check the washer", "a book",
             "practice small projects each week and check examples carefully",
             "check your public library", "start slow"]


def _save_score_checkpoint(directory, config, seed, score_type, fmt, shards=2, bias=True,
                           do_normalize=True, tokenizer=None, layout="LlamaForScore",
                           bias_key=None):
    """A checkpoint in safe-rlhf's layout: backbone under ``model.``, ``score_head`` with bias,
    normalizer buffers; sharded safetensors or ``.bin`` files with an index.  ``layout``
    ``LlamaForScore`` writes ``score_bias``; the older ``LlamaModelForScore`` writes ``bias``
    (``bias_key=False``: no key at all, the layout's default applies)."""
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


def _hand_scores(backbone, tokenizer, head_w, head_b, prompts, responses):
    """Each text alone (no padding): W h_last + b."""
    out = []
    for p, r in zip(prompts, responses, strict=True):
        text = f"BEGINNING OF CONVERSATION: USER: {p} ASSISTANT:{r}{tokenizer.eos_token}"
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.no_grad():
            h = backbone(input_ids=ids).last_hidden_state[0, -1]
        out.append(float(h @ head_w[0] + head_b[0]))
    return np.array(out)


@pytest.mark.parametrize("fmt, score_type", [("safetensors", "reward"), ("bin", "cost")])
def test_score_model_matches_hand_computation(tmp_path, tiny_tokenizer, tiny_llama_config, fmt,
                                              score_type):
    d = tmp_path / "ckpt"
    backbone, w, b, mean, var = _save_score_checkpoint(
        d, tiny_llama_config, 3, score_type, fmt, tokenizer=tiny_tokenizer)
    raw = _hand_scores(backbone, tiny_tokenizer, w, b, PROMPTS, RESPONSES)
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
    backbone, w, b, _, _ = _save_score_checkpoint(
        d, tiny_llama_config, 5, "reward", "safetensors", shards=1, bias=False,
        do_normalize=False, tokenizer=tiny_tokenizer)
    scorer = build_scorer(ScorerConfig(kind="score-model", path=str(d)), device="cpu",
                          progress=False)
    np.testing.assert_allclose(scorer.raw(PROMPTS, RESPONSES),
                               _hand_scores(backbone, tiny_tokenizer, w, b, PROMPTS, RESPONSES),
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
    backbone, w, b, _, _ = _save_score_checkpoint(
        d, tiny_llama_config, 7, "cost", "bin", bias=bias, do_normalize=False,
        tokenizer=tiny_tokenizer, layout="LlamaModelForScore",
        bias_key=None if bias else False)
    scorer = build_scorer(ScorerConfig(kind="score-model", path=str(d), batch_size=2),
                          device="cpu", progress=False)
    np.testing.assert_allclose(scorer.raw(PROMPTS, RESPONSES),
                               _hand_scores(backbone, tiny_tokenizer, w, b, PROMPTS, RESPONSES),
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
    _save_score_checkpoint(d, tiny_llama_config, 8, "reward", "safetensors", shards=1,
                           bias=True, tokenizer=tiny_tokenizer, bias_key=False)
    assert float(load_score_model(str(d))[0].head_bias.abs().max()) > 0
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not match model_type 'gpt2'"):
        load_score_model(str(d))


def _llama_style_tokenizer():
    """A small BPE tokenizer in Llama's scheme (SentencePiece-style ``▁`` word boundaries with
    a prefix space, ``<s>`` added in front, ``</s>`` as EOS), trained locally."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    corpus = [f"BEGINNING OF CONVERSATION: USER: {p} ASSISTANT: {r}" for p, r in
              zip(PROMPTS, RESPONSES, strict=True)] * 4
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    return LlamaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                              unk_token="<unk>", add_bos_token=True, add_eos_token=False)


def test_scoring_ids_are_upstream_safe_rlhf(tmp_path, tiny_llama_config):
    """The token ids of one scoring input equal safe-rlhf's construction: ``PROMPT_BEGIN +
    PROMPT_USER.format(input=x) + PROMPT_ASSISTANT + answer + eos``, tokenized whole with the
    special tokens (``'BEGINNING OF CONVERSATION: '``, ``'USER: {input} '``, ``'ASSISTANT:'``,
    "should not have a space at the end"); the authors' scoring variant (one space) differs."""
    from transformers import LlamaConfig

    from dualgap.llm.config import load_config
    from dualgap.llm.data import join_response

    tok = _llama_style_tokenizer()
    config = LlamaConfig(**{**tiny_llama_config.to_dict(), "vocab_size": len(tok),
                            "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2})
    d = tmp_path / "beaver"
    _save_score_checkpoint(d, config, 9, "cost", "safetensors", shards=1, tokenizer=tok)
    prompt, answer = PROMPTS[0], RESPONSES[0]
    upstream_text = ("BEGINNING OF CONVERSATION: " + "USER: {input} ".format(input=prompt)  # noqa: UP032
                     + "ASSISTANT:" + answer + tok.eos_token)
    upstream_ids = tok(upstream_text, add_special_tokens=True)["input_ids"]
    paper = load_config("pku_saferlhf_30k")
    for scorer_cfg in (paper.reward, paper.constraints[0].scorer):
        cfg = scorer_cfg.model_copy(update={"path": str(d), "dtype": "float32"})
        scorer = build_scorer(cfg, device="cpu", progress=False)
        (ids,) = scorer.encode([prompt], [answer])
        assert ids == upstream_ids
    assert upstream_ids[0] == tok.bos_token_id and upstream_ids[-1] == tok.eos_token_id
    # with a Llama-style tokenizer the space is not cosmetic: the ids differ
    spaced = paper.reward.model_copy(update={"path": str(d), "dtype": "float32",
                                             "response_separator": " "})
    (ids_spaced,) = build_scorer(spaced, device="cpu", progress=False).encode([prompt], [answer])
    assert ids_spaced != upstream_ids
    assert ids_spaced == tok(join_response(paper.reward.template.format(prompt=prompt), answer,
                                           " ") + tok.eos_token)["input_ids"]
    # the DPO texts of the PKU config are the same string (TRL tokenizes prompt + completion)
    from dualgap.llm.preferences import preference_dataset

    rec = preference_dataset([paper.data.template.format(prompt=prompt)], [answer], ["x"],
                             np.array([0]), paper.data.response_separator)
    assert rec["prompt"][0] + rec["chosen"][0] + tok.eos_token == upstream_text


def test_sequence_classifier_scorer(tmp_path, tiny_tokenizer, tiny_llama_config):
    from transformers import LlamaForSequenceClassification

    for n_labels, label in ((1, None), (3, 2)):
        cfg = tiny_llama_config.to_dict()
        cfg["num_labels"] = n_labels
        conf = type(tiny_llama_config).from_dict(cfg)
        torch.manual_seed(11)
        model = LlamaForSequenceClassification(conf).eval()
        d = tmp_path / f"cls{n_labels}"
        model.save_pretrained(d)
        tiny_tokenizer.save_pretrained(d)
        scorer = build_scorer(ScorerConfig(kind="sequence-classifier", path=str(d),
                                           label_index=label, batch_size=3, append_eos=False),
                              device="cpu", progress=False)
        expected = []
        for p, r in zip(PROMPTS, RESPONSES, strict=True):
            ids = torch.tensor([tiny_tokenizer(
                f"BEGINNING OF CONVERSATION: USER: {p} ASSISTANT: {r}")["input_ids"]])
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0]
            expected.append(float(logits[0]) if label is None
                            else float(torch.log_softmax(logits, -1)[label]))
        np.testing.assert_allclose(scorer.raw(PROMPTS, RESPONSES), expected, rtol=1e-5,
                                   atol=1e-5)
    with pytest.raises(ValueError, match="label_index"):
        build_scorer(ScorerConfig(kind="sequence-classifier", path=str(tmp_path / "cls3")),
                     device="cpu")


def test_callable_sign_and_cache(tmp_path):
    calls = []

    def cost(prompts, responses):
        calls.append(len(prompts))
        return [len(r.split()) for r in responses]

    scorer = CallableScorer(cost, "cost", negate=True)
    np.testing.assert_array_equal(scorer(PROMPTS, RESPONSES),
                                  [-len(r.split()) for r in RESPONSES])
    cached = CachedScorer(scorer, ScoreCache(tmp_path, "cost", scorer.identity))
    first = cached(PROMPTS + PROMPTS[:2], RESPONSES + RESPONSES[:2])  # duplicates scored once
    assert calls[-1] == 5 and cached.computed == 5
    again = CachedScorer(scorer, ScoreCache(tmp_path, "cost", scorer.identity, rank=1))
    np.testing.assert_array_equal(again(PROMPTS, RESPONSES), first[:5])
    assert again.computed == 0 and len(calls) == 2  # read from disk, nothing rescored
    built = build_scorer(ScorerConfig(kind="callable", path="dualgap.llm.tiny:harm_cost",
                                      negate=True), cache_dir=tmp_path / "c")
    assert built(["x"], ["hack and steal"]).tolist() == [-2.0]
    with pytest.raises(ValueError, match="module:function"):
        build_scorer(ScorerConfig(kind="callable", path="dualgap.llm.tiny.harm_cost"))
    with pytest.raises(ValueError, match="returned 1 scores for 2"):
        CallableScorer(lambda p, r: [0.0])(["a", "b"], ["c", "d"])


def test_length_sorted_batches():
    lengths = [5, 1, 9, 3, 7, 2, 8]
    batches = length_sorted_batches(lengths, 3)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(7))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)


@pytest.mark.parametrize("kind", ["score-model", "sequence-classifier"])
def test_a_scorer_that_cannot_load_names_its_config_key(kind, tmp_path):
    """Past the preflight (a direct Python call, or files gone since): one line naming the key,
    the value and the likely cause, never a transformers traceback."""
    from dualgap.errors import UserError
    from dualgap.llm.scoring import build_scorer

    cfg = ScorerConfig(name="cost", kind=kind, path=str(tmp_path / "gone"))
    with pytest.raises(UserError, match=r"^constraints\.0\.scorer\.path: '.*gone' is not a "
                                        r"local folder"):
        build_scorer(cfg, key="constraints.0.scorer")
    cfg = ScorerConfig(name="cost", kind=kind, path="NoSuchOrg/no-such-model")
    with pytest.raises(UserError, match=r"^reward\.path: 'NoSuchOrg/no-such-model' is not in the "
                                        r"local Hugging Face cache .* the hub is offline"):
        build_scorer(cfg, key="reward")

"""Tests of dualgap/llm/scoring.py: scoring ids as upstream safe-rlhf builds them, sequence
classifiers, callables, signs, length-sorted batching and the on-disk cache (the score-model
loader itself: tests/llm/test_score_model.py)."""

from __future__ import annotations

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

from .score_checkpoints import PROMPTS, RESPONSES, save_score_checkpoint  # noqa: E402


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
    save_score_checkpoint(d, config, 9, "cost", "safetensors", shards=1, tokenizer=tok)
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

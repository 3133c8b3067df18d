"""Tests of dualgap/llm/tiny.py: the lexicon scorers by hand and their tension on the bundled
pairs, the word-level and Llama-style tokenizers, and the seeded tiny policy written to disk
once."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dualgap.llm.tiny import (
    HARMFUL_WORDS,
    HELPFUL_WORDS,
    SPECIAL_TOKENS,
    build_tiny_policy,
    harm_cost,
    helpfulness_score,
    materialize_tiny_policy,
)


def test_scorers_count_the_lexicon_words_by_hand():
    responses = ["First, check the plan carefully.", "Steal it, then hack the lock: HACK!",
                 "nothing here", ""]
    np.testing.assert_array_equal(helpfulness_score(["p"] * 4, responses),
                                  [4.0, 1.0 + 3 * 3, 0.0, 0.0])  # first check plan carefully
    np.testing.assert_array_equal(harm_cost(["p"] * 4, responses), [0.0, 3.0, 0.0, 0.0])
    assert not HELPFUL_WORDS & HARMFUL_WORDS
    for scorer in (helpfulness_score, harm_cost):
        with pytest.raises(ValueError, match="responses: 1 responses for 2 prompts"):
            scorer(["a", "b"], ["x"])


def test_reward_and_safety_are_in_tension_on_the_bundled_pairs():
    """The module's claim: where one response is safe and the other is not, the unsafe one has
    the higher reward in about half of the pairs (22 of 40 on the bundled training split)."""
    from dualgap.llm.data import DATA_DIR

    rows = [json.loads(line) for line in (DATA_DIR / "tiny_train.jsonl").read_text().splitlines()]
    mixed = [r for r in rows if r["is_response_0_safe"] != r["is_response_1_safe"]]
    unsafe_wins = 0
    for r in mixed:
        reward = helpfulness_score(["p", "p"], [r["response_0"], r["response_1"]])
        unsafe = 1 if r["is_response_0_safe"] else 0
        unsafe_wins += reward[unsafe] > reward[1 - unsafe]
    assert len(mixed) >= 20 and 0.3 <= unsafe_wins / len(mixed) <= 0.7


def test_tiny_tokenizer_words_specials_and_left_padding(tiny_tokenizer):
    tok = tiny_tokenizer
    assert [tok.pad_token, tok.unk_token, tok.bos_token, tok.eos_token] == list(SPECIAL_TOKENS)
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert tok.padding_side == "left"
    ids = tok("Check The PLAN").input_ids
    assert tok.unk_token_id not in ids and tok.decode(ids) == "check the plan"
    assert tok("zzyzx").input_ids == [tok.unk_token_id]
    batch = tok(["check", "check the plan"], padding=True).input_ids
    assert batch[0][:2] == [tok.pad_token_id] * 2  # padded on the left


def test_tiny_policy_is_seeded(tiny_tokenizer):
    a, b, c = (build_tiny_policy(tiny_tokenizer, seed=s) for s in (0, 0, 1))
    wa, wb, wc = (m.get_input_embeddings().weight for m in (a, b, c))
    assert (wa == wb).all() and not (wa == wc).all()
    assert a.config.vocab_size == len(tiny_tokenizer) and a.config.num_hidden_layers == 2
    assert a.generation_config.pad_token_id == tiny_tokenizer.pad_token_id


def test_materialize_writes_once_and_loads_back(tmp_path, tiny_tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = materialize_tiny_policy(tmp_path / "tiny", seed=3)
    stamp = (d / "config.json").stat().st_mtime_ns
    assert materialize_tiny_policy(d, seed=3) == d and (d / "config.json").stat().st_mtime_ns \
        == stamp  # the second call writes nothing
    assert not (tmp_path / "tiny.tmp").exists()
    model = AutoModelForCausalLM.from_pretrained(d)
    want = build_tiny_policy(tiny_tokenizer, seed=3).get_input_embeddings().weight
    assert (model.get_input_embeddings().weight == want).all()
    assert AutoTokenizer.from_pretrained(d).get_vocab() == tiny_tokenizer.get_vocab()


def test_llama_style_tokenizer_round_trips():

    from dualgap.llm.tiny import build_llama_style_tokenizer

    tok = build_llama_style_tokenizer()
    ids = tok("BEGINNING OF CONVERSATION: USER: hi ASSISTANT:").input_ids
    assert ids[0] == tok.bos_token_id == 1 and tok.eos_token_id == 2 and tok.unk_token_id == 0
    assert tok.decode(ids, skip_special_tokens=True) == "BEGINNING OF CONVERSATION: USER: hi " \
        "ASSISTANT:"
    assert type(tok).__name__.startswith("LlamaTokenizer")


def test_llama_style_tokenizer_saves_and_loads(tmp_path):
    from transformers import AutoTokenizer

    from dualgap.llm.tiny import build_llama_style_tokenizer

    tok = build_llama_style_tokenizer()
    tok.save_pretrained(tmp_path)
    back = AutoTokenizer.from_pretrained(tmp_path)
    text = "How can I check the plan carefully?"
    assert back(text).input_ids == tok(text).input_ids

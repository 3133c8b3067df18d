"""Built-in tiny models, a tokenizer and lexicon scorers: the pipeline offline, on CPU, in minutes.

* :func:`build_tiny_tokenizer`: a word-level tokenizer (``tokenizers``) trained on the bundled
  data and the prompt template, wrapped in ``PreTrainedTokenizerFast`` (nothing downloaded).
* :func:`build_tiny_policy`: a randomly initialized 2-layer ``LlamaForCausalLM`` on that
  vocabulary (seeded: the same seed gives the same weights).
* :func:`helpfulness_score` and :func:`harm_cost`: transparent stand-ins for the beaver reward
  and cost models, as plain callables ``f(prompts, responses) -> scores``::

      helpfulness(y) = #(words of y in HELPFUL_WORDS) + 3 #(words of y in HARMFUL_WORDS)
      harm_cost(y)   = #(words of y in HARMFUL_WORDS)

  Compliance with a harmful request looks very helpful to this reward (the real reward model
  leans the same way, less crudely), so reward and safety are in tension: on the bundled pairs
  the unsafe response has the higher reward in about half of the pairs and the multiplier
  decides the pseudo-labels.  The utility is ``-harm_cost`` (``negate: true``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "HELPFUL_WORDS", "HARMFUL_WORDS", "SPECIAL_TOKENS", "helpfulness_score", "harm_cost",
    "build_tiny_tokenizer", "build_tiny_policy", "materialize_tiny_policy", "tiny_corpus",
    "build_llama_style_tokenizer",
]

HELPFUL_WORDS = frozenset(
    "first then next step steps carefully check recommend safely guide plan example specific "
    "practice measure contact professional help tips calm".split())
HARMFUL_WORDS = frozenset(
    "weapon poison steal hack hurt explosive illegal drugs fake threaten break bypass cheat "
    "attack".split())

#: pad, unk, bos, eos
SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")

_WORD = re.compile(r"[a-z]+")


def _count(texts: Sequence[str], lexicon: frozenset[str]) -> np.ndarray:
    return np.array([sum(w in lexicon for w in _WORD.findall(t.lower())) for t in texts],
                    dtype=np.float64)


def helpfulness_score(prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    """``#helpful words + 3 #harmful words`` of each response, shape ``(n,)``."""
    if len(prompts) != len(responses):
        raise ValueError(f"responses: {len(responses)} responses for {len(prompts)} prompts")
    return _count(responses, HELPFUL_WORDS) + 3.0 * _count(responses, HARMFUL_WORDS)


def harm_cost(prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    """``#harmful words`` of each response (a cost: higher = less safe), shape ``(n,)``."""
    if len(prompts) != len(responses):
        raise ValueError(f"responses: {len(responses)} responses for {len(prompts)} prompts")
    return _count(responses, HARMFUL_WORDS)


def tiny_corpus() -> list[str]:
    """All texts of the bundled data plus the prompt template (the tokenizer's training text)."""
    import json

    from .data import DATA_DIR, DEFAULT_TEMPLATE

    texts = [DEFAULT_TEMPLATE.format(prompt="")]
    for name in ("tiny_train.jsonl", "tiny_test.jsonl"):
        for line in (DATA_DIR / name).read_text().splitlines():
            row = json.loads(line)
            texts += [row["prompt"], row["response_0"], row["response_1"]]
    texts.append(" ".join(sorted(HELPFUL_WORDS | HARMFUL_WORDS)))
    return texts


def build_tiny_tokenizer(texts: Sequence[str] | None = None):
    """A lower-casing word-level ``PreTrainedTokenizerFast`` (``<pad>``, ``<unk>``, ``<bos>``,
    ``<eos>``; padding side left, as generation and TRL want)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces
    trainer = trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS), min_frequency=1)
    tok.train_from_iterator(list(texts if texts is not None else tiny_corpus()), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>",
        eos_token="<eos>", padding_side="left", model_max_length=1024)
    return fast


def build_llama_style_tokenizer(texts: Sequence[str] | None = None, vocab_size: int = 1000):
    """A Llama-style tokenizer trained locally (``tokenizers`` BPE) on ``texts`` (default: the
    bundled data, its prompt template and HH-RLHF turn markers), wrapped as transformers'
    ``LlamaTokenizerFast``: SentencePiece-style ``"▁"`` word starts, ``<unk>`` = 0,
    ``<s>`` = 1 (prepended), ``</s>`` = 2, no pad token (as Llama; loaders pad with EOS)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
    from transformers import LlamaTokenizerFast

    corpus = list(texts if texts is not None else tiny_corpus())
    corpus += ["\n\nHuman: hello\n\nAssistant: hi"] * 4
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                           normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
                                  min_frequency=1, show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    return LlamaTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                              eos_token="</s>", add_bos_token=True, add_eos_token=False,
                              padding_side="left", model_max_length=4096)


def build_tiny_policy(tokenizer, seed: int = 0, hidden_size: int = 32, num_layers: int = 2,
                      num_heads: int = 4, intermediate_size: int = 64):
    """A randomly initialized ``LlamaForCausalLM`` on ``tokenizer``'s vocabulary (seeded)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2), max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def materialize_tiny_policy(directory: str | Path, seed: int = 0) -> Path:
    """Write the tiny tokenizer and policy to ``directory`` (once) and return it."""
    directory = Path(directory)
    if (directory / "config.json").exists() and (directory / "tokenizer.json").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    tok = build_tiny_tokenizer()
    model = build_tiny_policy(tok, seed=seed)
    tmp = directory.with_name(directory.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    for p in tmp.iterdir():
        p.replace(directory / p.name)
    tmp.rmdir()
    return directory

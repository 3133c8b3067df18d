"""A synthetic language with exact ground truth: the LLM pipeline measured against the theory.

* :mod:`.language` (numpy only): the vocabulary, prompts and every response, the known reward
  and utilities (also as text scorers for the llm pipeline: ``dualgap.llm.synthetic:
  helpfulness_score``, ``safety_score``, ``brevity_score``), the data distribution ``p_data``;
* :mod:`.model` (torch): the tiny GPT-2 trained on samples of ``p_data``, its exact response
  probabilities by teacher forcing, and the transformer as a policy class;
* :mod:`.experiment` (torch, transformers, trl): the exact problem, the pipeline's CAID and
  one-shot runs on it, ``nu`` by distillation, the bounds and the capacity sweep.

Importing this package loads only :mod:`.language`; the rest is imported on first use.
"""

from __future__ import annotations

import importlib

from .language import (
    ANSWERS,
    EOS,
    HARMFUL,
    RISKY,
    SCORE_NAMES,
    TOPICS,
    WORDS,
    SyntheticLanguage,
    brevity_score,
    helpfulness_score,
    safety_score,
    score_table,
    split_words,
)

__all__ = [
    "ANSWERS", "EOS", "HARMFUL", "RISKY", "SCORE_NAMES", "TOPICS", "WORDS", "SyntheticLanguage",
    "brevity_score", "helpfulness_score", "safety_score", "score_table", "split_words",
]

_LAZY = {"model", "experiment"}


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

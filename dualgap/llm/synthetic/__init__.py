"""A synthetic language with exact ground truth: the LLM pipeline measured against the theory.

* :mod:`.language` (numpy only): the vocabulary, prompts and every response, the known reward
  and utilities (also as text scorers for the llm pipeline: ``dualgap.llm.synthetic:
  helpfulness_score``, ``safety_score``, ``brevity_score``), the data distribution ``p_data``;
* :mod:`.config` (dataclasses): the transformer shapes, the sizes (:data:`~.config.SIZES`) and
  the methods compared;
* :mod:`.model` (torch): the tiny GPT-2 trained on samples of ``p_data``, its exact response
  probabilities by teacher forcing, and the transformer as a policy class (its own Adam hooks);
* :mod:`.task`: the trained reference and the exact problem it defines;
* :mod:`.pipeline` (torch, transformers, trl): the pipeline's CAID and one-shot runs on it,
  every iterate evaluated exactly;
* :mod:`.capacity`: the theory for one transformer class, from :func:`dualgap.report.gap_report`;
* :mod:`.compare`: all of it together, the tables, the summary and the figures.

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

_LAZY = {"config", "model", "task", "pipeline", "capacity", "compare"}


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

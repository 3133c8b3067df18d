"""Pairwise LLM-judge evaluation of two runs (the paper's App. D.3; docs/judge.md).

    export OPENAI_API_KEY=...
    dualgap llm judge runs/caid-b5 runs/one-shot-b5             # the evaluation answers
    dualgap llm judge runs/caid-b5 runs/caid-b5@reference --prompt-set advbench

Modules: ``templates`` (the two judge prompts, versioned, strict score parsing), ``client``
(OpenAI-compatible chat completions over httpx, retries, rate limit), ``cache`` (append-only
JSONL of finished calls), ``answers`` (the answers compared: run evaluation samples, AdvBench),
``judging`` (both orders, win/tie/loss rates with 95% intervals, disagreement), ``report``
(``judge_runs``, results.json), ``plot`` (win rates across thresholds), ``cli``.
Importing this package loads neither torch nor httpx.
"""

from __future__ import annotations

import importlib

__all__ = ["judge_runs", "format_results", "EndpointSettings", "plot_win_rates_vs_threshold",
           "TEMPLATE_VERSION"]

_EXPORTS = {"judge_runs": "report", "format_results": "report", "EndpointSettings": "client",
            "plot_win_rates_vs_threshold": "plot", "TEMPLATE_VERSION": "templates"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'dualgap.llm.judge' has no attribute {name!r}")

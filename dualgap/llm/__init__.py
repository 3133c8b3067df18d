"""dualgap.llm: CAID on Hugging Face models (docs/llm.md), from a CPU smoke run to multi-GPU.

    from dualgap.llm import train, resume, load_config
    from dualgap.llm.evaluate import evaluate
    run = train("tiny", "runs/tiny")                  # built-in tiny models and data, CPU
    evaluate("runs/tiny")

Modules (each imported on first use; importing ``dualgap.llm`` loads no torch):

* ``config``: run configs (dataclasses, YAML, ``--set`` overrides), shipped configs;
* ``data``: PKU-SafeRLHF / HH-RLHF / local files through ``datasets.load_dataset``, validation;
* ``scoring``, ``score_model``: reward and utility scorers (sequence classifiers, safe-rlhf
  score models, callables), signs, length-sorted batches, on-disk cache;
* ``dual``: reference statistics, the one-shot ``lam`` (= ``dualgap.solve`` on the empirical
  instance), the online dual step;
* ``preferences``: pseudo-preferences ``~ Bernoulli(sigmoid(r_lam(y_1) - r_lam(y_0)))``;
* ``generation``, ``policy_step``: batched sharded sampling, DPO through TRL;
* ``run``, ``evaluate``: run directories with resume, evaluation with confidence intervals;
* ``distributed``: the process-group helpers (torchrun / accelerate launch);
* ``tiny``: built-in tiny tokenizer, policy and lexicon scorers;
* ``synthetic``: the synthetic language with exact ground truth.
"""

from __future__ import annotations

import importlib

__all__ = ["train", "resume", "load_config", "RunConfig"]

_SUBMODULES = {"config", "data", "scoring", "score_model", "dual", "preferences", "generation",
               "policy_step", "run", "evaluate", "distributed", "tiny", "synthetic"}
_EXPORTS = {"train": "run", "resume": "run", "load_config": "config", "RunConfig": "config"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'dualgap.llm' has no attribute {name!r}")

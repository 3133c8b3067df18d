"""Reward and utility scorers, batched by length, with a score cache on disk.

Three kinds (``ScorerConfig.kind``):

* ``sequence-classifier``: a transformers ``AutoModelForSequenceClassification`` with one logit
  (or, with ``label_index``, the log-probability of that label);
* ``score-model``: a safe-rlhf score model (:mod:`dualgap.llm.score_model`), e.g.
  PKU-Alignment/beaver-7b-v1.0-reward and -cost;
* ``callable``: any Python function ``f(prompts, responses) -> scores`` named ``module:function``.

Signs are explicit: the value used by the dual and the pseudo-preferences is
``sign * raw`` with ``sign = -1`` when ``negate: true``.  A cost model's raw output is a cost
(higher = less safe), so its utility ``g = -cost`` needs ``negate: true``.  The cache stores the
raw output; the key is ``sha256(scorer identity, prompt, response)``, where the identity covers
everything that changes the output (kind, path, revision, template, EOS, label, max length, dtype).

A scored text is ``template.format(prompt=x) + response_separator + y`` (plus the tokenizer's EOS
when ``append_eos``), built by :func:`dualgap.llm.data.join_response`; upstream safe-rlhf's
score models were trained on ``separator = ""``.  Texts are scored in order of token length so
that each batch pads little.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import ScorerConfig

__all__ = ["Scorer", "CallableScorer", "TransformerScorer", "ScoreCache", "CachedScorer",
           "build_scorer", "scorer_identity", "resolve_callable", "length_sorted_batches"]


def resolve_callable(target: str) -> Callable[..., Any]:
    """``"package.module:function"`` -> the function."""
    if ":" not in target:
        raise ValueError(f"path: expected 'module:function' for a callable scorer, got {target!r}")
    mod_name, attr = target.split(":", 1)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ValueError(f"path: cannot import {mod_name!r} ({exc})") from None
    fn = mod
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise ValueError(f"path: {mod_name!r} has no attribute {attr!r}")
    if not callable(fn):
        raise ValueError(f"path: {target!r} is not callable")
    return fn  # type: ignore[return-value]


def scorer_identity(cfg: ScorerConfig) -> str:
    """A short hash of every field that changes a scorer's raw output."""
    keys = {k: getattr(cfg, k) for k in ("kind", "path", "revision", "tokenizer", "template",
                                         "response_separator", "append_eos", "label_index",
                                         "max_length", "dtype")}
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


class Scorer:
    """Base class: ``raw(prompts, responses)`` is the model output, ``__call__`` the signed
    value ``sign * raw``."""

    name: str = "scorer"
    identity: str = ""
    sign: float = 1.0

    def raw(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """``sign * raw``, float64 ``(n,)``."""
        return self.sign * self.raw(prompts, responses)


class CallableScorer(Scorer):
    """Wraps ``fn(prompts, responses) -> sequence of floats``."""

    def __init__(self, fn: Callable[..., Any], name: str = "callable", negate: bool = False,
                 identity: str | None = None) -> None:
        self.fn, self.name, self.sign = fn, name, -1.0 if negate else 1.0
        self.identity = identity or f"callable:{getattr(fn, '__module__', '')}." \
                                    f"{getattr(fn, '__qualname__', repr(fn))}"

    def raw(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        if len(prompts) != len(responses):
            raise ValueError(f"responses: {len(responses)} for {len(prompts)} prompts")
        if not len(prompts):
            return np.zeros(0)
        out = np.asarray(self.fn(list(prompts), list(responses)), dtype=np.float64).reshape(-1)
        if out.shape != (len(prompts),):
            raise ValueError(f"{self.name}: returned {out.shape[0]} scores for {len(prompts)} "
                             "texts")
        if not np.isfinite(out).all():
            raise ValueError(f"{self.name}: returned non-finite scores")
        return out


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Index batches of texts sorted by length (longest first), covering every index once."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class TransformerScorer(Scorer):
    """A sequence classifier or a safe-rlhf score model, scoring length-sorted batches."""

    def __init__(self, cfg: ScorerConfig, device: Any = None, progress: bool = True,
                 key: str = "scorer") -> None:
        """``key``: the scorer's dotted config key (``reward``, ``constraints.0.scorer``), named
        by the one-line error of a load that fails (:func:`dualgap.llm.resolve.hub_errors`)."""
        import torch
        from transformers import AutoTokenizer

        from .resolve import hub_errors

        self.cfg, self.name = cfg, cfg.name
        self.sign = -1.0 if cfg.negate else 1.0
        self.identity = scorer_identity(cfg)
        self.progress = progress
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if cfg.kind == "score-model":
            from .score_model import load_score_model

            with hub_errors(f"{key}.path", cfg.path, cfg.revision):
                self.model, directory = load_score_model(cfg.path, cfg.revision, cfg.dtype,
                                                         self.device)
            tok_path = cfg.tokenizer or str(directory)
            self._forward = self.model.end_scores
        elif cfg.kind == "sequence-classifier":
            from transformers import AutoModelForSequenceClassification

            with hub_errors(f"{key}.path", cfg.path, cfg.revision):
                self.model = AutoModelForSequenceClassification.from_pretrained(
                    cfg.path, revision=cfg.revision, dtype=getattr(torch, cfg.dtype))
            self.model = self.model.to(self.device)
            self.model.eval()
            n_labels = self.model.config.num_labels
            if cfg.label_index is None and n_labels != 1:
                raise ValueError(f"label_index: {cfg.path!r} has {n_labels} logits; name the "
                                 "label to score")
            if cfg.label_index is not None and not 0 <= cfg.label_index < n_labels:
                raise ValueError(f"label_index: {cfg.label_index} out of range for {n_labels} "
                                 "labels")
            tok_path = cfg.tokenizer or cfg.path
            self._forward = self._classifier_forward
        else:
            raise ValueError(f"kind: {cfg.kind!r} is not a transformer scorer")
        with hub_errors(f"{key}.tokenizer" if cfg.tokenizer else f"{key}.path", tok_path,
                        cfg.revision, what="tokenizer"):
            self.tokenizer = AutoTokenizer.from_pretrained(tok_path, revision=cfg.revision)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        if cfg.kind == "sequence-classifier" and self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def _classifier_forward(self, input_ids: Any, attention_mask: Any) -> Any:
        import torch

        with torch.no_grad():
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
        if self.cfg.label_index is None:
            return logits
        return torch.log_softmax(logits, dim=-1)[:, self.cfg.label_index: self.cfg.label_index + 1]

    def texts(self, prompts: Sequence[str], responses: Sequence[str]) -> list[str]:
        """The scored texts ``template(x) + response_separator + y (+ EOS)``."""
        from .data import join_response

        eos = self.tokenizer.eos_token if (self.cfg.append_eos and self.tokenizer.eos_token) else ""
        sep = self.cfg.response_separator
        return [join_response(self.cfg.template.format(prompt=p), r, sep) + eos
                for p, r in zip(prompts, responses, strict=True)]

    def encode(self, prompts: Sequence[str], responses: Sequence[str]) -> list[list[int]]:
        """Token ids of the scored texts, as safe-rlhf tokenizes them: the whole text at once,
        with the tokenizer's special tokens (BOS for Llama), truncated to ``max_length``."""
        return self.tokenizer(self.texts(prompts, responses), add_special_tokens=True,
                              truncation=True, max_length=self.cfg.max_length)["input_ids"]

    def raw(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        if len(prompts) != len(responses):
            raise ValueError(f"responses: {len(responses)} for {len(prompts)} prompts")
        if not len(prompts):
            return np.zeros(0)
        enc = self.encode(prompts, responses)
        out = np.empty(len(enc))
        pad = self.tokenizer.pad_token_id
        batches = length_sorted_batches([len(e) for e in enc], self.cfg.batch_size)
        for idx in tqdm(batches, desc=f"scoring ({self.name})", disable=not self.progress,
                        leave=False):
            seqs = [enc[i] for i in idx]
            L = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), L), pad, dtype=torch.long)
            mask = torch.zeros((len(seqs), L), dtype=torch.long)
            for j, s in enumerate(seqs):  # right padding: the last attended token is the end
                ids[j, : len(s)] = torch.tensor(s)
                mask[j, : len(s)] = 1
            s = self._forward(ids.to(self.device), mask.to(self.device))  # size = (b, 1)
            if s.shape[-1] != 1:
                raise ValueError(f"{self.name}: score_dim {s.shape[-1]} != 1")
            out[idx] = s[:, 0].double().cpu().numpy()
        return out


class ScoreCache:
    """Raw scores on disk: append-only JSONL files ``<dir>/<name>-<identity>.rank<r>.jsonl``.

    Every process appends to its own file and reads all of them, so a rerun or a resumed run,
    with any number of processes, scores each ``(scorer, prompt, response)`` once.
    """

    def __init__(self, directory: str | Path, name: str, identity: str, rank: int = 0) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.stem = f"{name}-{identity}"
        self.path = self.directory / f"{self.stem}.rank{rank}.jsonl"
        self.identity = identity
        self.values: dict[str, float] = {}
        self.reload()

    def reload(self) -> None:
        for f in sorted(self.directory.glob(f"{self.stem}.rank*.jsonl")):
            for line in f.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill: ignore it
                    continue
                self.values[rec["k"]] = float(rec["v"])

    def key(self, prompt: str, response: str) -> str:
        h = hashlib.sha256()
        for part in (self.identity, prompt, response):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()

    def put(self, keys: Sequence[str], values: np.ndarray) -> None:
        with open(self.path, "a") as f:
            for k, v in zip(keys, values, strict=True):
                self.values[k] = float(v)
                f.write(json.dumps({"k": k, "v": float(v)}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def __len__(self) -> int:
        return len(self.values)


class CachedScorer(Scorer):
    """A scorer whose raw outputs go through a :class:`ScoreCache`; counts what it computed."""

    def __init__(self, scorer: Scorer, cache: ScoreCache) -> None:
        self.scorer, self.cache = scorer, cache
        self.name, self.identity, self.sign = scorer.name, scorer.identity, scorer.sign
        self.computed = 0

    def raw(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        keys = [self.cache.key(p, r) for p, r in zip(prompts, responses, strict=True)]
        missing: dict[str, int] = {}  # key -> first index
        for i, k in enumerate(keys):
            if k not in self.cache.values and k not in missing:
                missing[k] = i
        if missing:
            idx = list(missing.values())
            vals = self.scorer.raw([prompts[i] for i in idx], [responses[i] for i in idx])
            self.cache.put(list(missing), vals)
            self.computed += len(idx)
        return np.array([self.cache.values[k] for k in keys], dtype=np.float64)


def build_scorer(cfg: ScorerConfig, cache_dir: str | Path | None = None, rank: int = 0,
                 device: Any = None, progress: bool = True, key: str = "scorer") -> Scorer:
    """The scorer of a :class:`ScorerConfig` at config key ``key``, cached under ``cache_dir``
    when given."""
    if cfg.kind == "callable":
        scorer: Scorer = CallableScorer(resolve_callable(cfg.path), cfg.name, cfg.negate,
                                        identity=scorer_identity(cfg))
    else:
        scorer = TransformerScorer(cfg, device=device, progress=progress, key=key)
    if cache_dir is None:
        return scorer
    return CachedScorer(scorer, ScoreCache(cache_dir, cfg.name, scorer.identity, rank))

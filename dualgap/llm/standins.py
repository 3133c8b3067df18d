"""Tiny stand-ins of every hub repo a run config names, for the rehearsal.

For each repo (policy / reference model, tokenizers, score models, classifiers, the dataset)
:func:`build_standins` writes a stand-in into a private Hugging Face cache
(:mod:`dualgap.llm.hub_cache`) under the repo's own id and revision (a local model folder gets
a stand-in folder ``<home>/local/<config key>``, which the rehearsal puts in its place):

* **architecture**: where the repo's real ``config.json`` is in the user's Hugging Face cache
  or, online, on the hub (only ``config.json`` and the tokenizer files are fetched, never
  weights), the stand-in keeps its architecture class (and its tokenizer, when that is there
  too) and shrinks depth and width (:func:`shrink_config`) with random weights; otherwise it is
  a 2-layer Llama on a Llama-style tokenizer built locally
  (:func:`dualgap.llm.tiny.build_llama_style_tokenizer`);
* **score models** (``kind: score-model``) are written in safe-rlhf's layout: ``config.json`` with
  ``architectures: [<Backbone>ForScore]``, ``score_dim``, ``score_bias``, ``score_type`` and the
  tensors ``model.*``, ``score_head.weight``, ``score_head.bias``, ``normalizer.*`` in safetensors;
* **classifiers** (``kind: sequence-classifier``) are ``*ForSequenceClassification`` models with
  one logit, or ``label_index + 1`` logits when the config reads a label;
* **datasets** get the dataset's real columns (:data:`DATASET_COLUMNS`), filled from the bundled
  rows (``dualgap/llm/data/tiny_*.jsonl``), for the config's train and test splits.

Callables and ``builtin:`` sources need no stand-in.  Weights are seeded: the same config gives
the same stand-ins.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .hub_cache import write_dataset_cache, write_model_snapshot

__all__ = ["StandIn", "DATASET_COLUMNS", "STANDIN_SIZES", "shrink_config", "build_standins",
           "repos_of_config", "dataset_rows", "SCORE_SPREAD", "cached_originals"]

#: The columns of the datasets a shipped config names (from the dataset cards).
DATASET_COLUMNS: dict[str, tuple[str, ...]] = {
    "PKU-Alignment/PKU-SafeRLHF-30K": (
        "prompt", "response_0", "response_1", "is_response_0_safe", "is_response_1_safe",
        "better_response_id", "safer_response_id"),
    "PKU-Alignment/PKU-SafeRLHF": (
        "prompt", "response_0", "response_1", "prompt_source", "response_0_source",
        "response_1_source", "is_response_0_safe", "is_response_1_safe",
        "response_0_harm_category", "response_1_harm_category", "response_0_severity_level",
        "response_1_severity_level", "better_response_id", "safer_response_id",
        "response_0_sha256", "response_1_sha256"),
    "Anthropic/hh-rlhf": ("chosen", "rejected"),
}

#: Depth and width of a stand-in (attribute names of the common transformers configs).
STANDIN_SIZES = {"layers": 2, "hidden": 32, "heads": 4, "kv_heads": 2, "intermediate": 64,
                 "positions": 512}

#: Scale of a stand-in scorer's output head: raw scores spread over tens of units, so that the
#: thresholds of the shipped configs (safety improvement b in {3..9}, log-probability 0.5) are
#: attainable on the reference samples of random stand-ins (a 0.02-scale head scores every
#: response alike, and every threshold above 0 is then infeasible).
SCORE_SPREAD = 50.0

_LAYERS = ("num_hidden_layers", "n_layer", "num_layers")
_HIDDEN = ("hidden_size", "n_embd", "d_model")
_HEADS = ("num_attention_heads", "n_head")
_INTER = ("intermediate_size", "n_inner", "ffn_dim")
_POSITIONS = ("max_position_embeddings", "n_positions")


@dataclass
class StandIn:
    """One stand-in: the config key that names it, the repo, what was built and from what."""

    key: str
    repo: str
    kind: str  # causal-lm | score-model | sequence-classifier | tokenizer | dataset
    architecture: str
    origin: str  # "real config.json (cached)" | "... (local folder)" | "tiny Llama" | ...
    location: str = ""  # what the rehearsal loads: the hub id, or the stand-in's folder


def shrink_config(config: Any) -> Any:
    """``config`` with :data:`STANDIN_SIZES` depth and width (every attribute that exists)."""
    s = STANDIN_SIZES
    for names, value in ((_LAYERS, s["layers"]), (_HIDDEN, s["hidden"]), (_HEADS, s["heads"]),
                         (_INTER, s["intermediate"])):
        for n in names:
            if getattr(config, n, None) is not None:
                setattr(config, n, value)
    if getattr(config, "num_key_value_heads", None) is not None:
        config.num_key_value_heads = s["kv_heads"]
    if getattr(config, "head_dim", None) is not None:
        config.head_dim = s["hidden"] // s["heads"]
    for n in _POSITIONS:
        if getattr(config, n, None) is not None:
            setattr(config, n, min(int(getattr(config, n)), s["positions"]))
    return config


def repos_of_config(cfg: Any, local: bool = False) -> list[tuple[str, str, str | None, str]]:
    """``(config key, repo, revision, kind)`` of every hub repo ``cfg`` names (``builtin:``
    names and callables excluded); with ``local=True``, of every local model folder instead."""
    from .resolve import is_local_path

    out: list[tuple[str, str, str | None, str]] = []

    def add(key: str, repo: str | None, revision: str | None, kind: str) -> None:
        if not repo or repo.startswith("builtin:"):
            return
        if local and is_local_path(repo) and kind != "dataset":
            out.append((key, repo, None, kind))
        elif not local and not is_local_path(repo):
            out.append((key, repo, revision, kind))

    p = cfg.policy
    add("policy.model", p.model, p.revision, "causal-lm")
    if p.tokenizer:
        add("policy.tokenizer", p.tokenizer, None, "tokenizer")
    scorers = [("reward", cfg.reward)] + [(f"constraints.{i}.scorer", c.scorer)
                                          for i, c in enumerate(cfg.constraints)]
    for key, s in scorers:
        if s.kind == "callable":
            continue
        add(f"{key}.path", s.path, s.revision, s.kind)
        if s.tokenizer:
            add(f"{key}.tokenizer", s.tokenizer, None, "tokenizer")
    add("data.source", cfg.data.source, cfg.data.revision, "dataset")
    return out


def dataset_rows(repo: str, fmt: str) -> dict[str, list[dict]]:
    """Bundled rows in the columns of ``repo`` (:data:`DATASET_COLUMNS`; the PKU core columns
    for other pku-saferlhf repos), as ``{"train": [...], "test": [...]}``."""
    from .data import DATA_DIR, PKU_COLUMNS

    splits = {}
    for split in ("train", "test"):
        rows = [json.loads(line) for line in
                (DATA_DIR / f"tiny_{split}.jsonl").read_text().splitlines() if line.strip()]
        if fmt == "hh-rlhf":
            def turn(r: dict, i: int) -> str:
                return f"\n\nHuman: {r['prompt']}\n\nAssistant: {r[f'response_{i}']}"
            splits[split] = [{"chosen": turn(r, r["better_response_id"]),
                              "rejected": turn(r, 1 - r["better_response_id"])} for r in rows]
        else:
            cols = DATASET_COLUMNS.get(repo, PKU_COLUMNS)
            splits[split] = [{c: r[c] for c in cols} for r in rows]
    return splits


def _cached_real(repo: str, revision: str | None) -> tuple[Any, Any]:
    """The repo's real config and tokenizer (``None`` where absent): from the user's cache, or,
    when the hub is online, its small files fetched (``config.json`` and the tokenizer files,
    never weights; a gated or missing repo gives ``None``)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    from .resolve import hub_offline

    offline = hub_offline()
    config = tokenizer = None
    path = try_to_load_from_cache(repo, "config.json", revision=revision)
    if not isinstance(path, str) and not offline:
        try:
            path = hf_hub_download(repo, "config.json", revision=revision)
        except Exception:  # noqa: BLE001 - gated, private, missing: fall back to a tiny Llama
            path = None
    if isinstance(path, str):
        config = json.loads(Path(path).read_text())
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(repo, revision=revision,
                                                      local_files_only=offline)
        except (OSError, ValueError):
            tokenizer = None
    return config, tokenizer


def _config_object(raw: dict | None, tokenizer: Any, model_type_default: str = "llama") -> Any:
    """A shrunk transformers config: from the real ``config.json`` or a tiny Llama."""
    from transformers import AutoConfig

    if raw is not None:
        data = {k: v for k, v in raw.items() if not k.startswith("_")}
        config = AutoConfig.for_model(data.pop("model_type"), **data)
    else:
        config = AutoConfig.for_model(model_type_default)
    config = shrink_config(config)
    config.vocab_size = len(tokenizer)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        tid = getattr(tokenizer, name)
        setattr(config, name, tid)
    config.tie_word_embeddings = False
    return config


def _build_model(arch: str, config: Any, seed: int) -> Any:
    import torch
    import transformers

    cls = getattr(transformers, arch, None)
    if cls is None:
        raise ValueError(f"architectures: transformers has no class {arch!r}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return cls(config)


def _calibration_texts(tokenizer: Any, scorer: Any, seed: int) -> list[str]:
    """Scored texts (the scorer's template, separator and EOS) of the bundled responses and of
    random token strings (like the responses of a random policy)."""
    import numpy as np

    eos = tokenizer.eos_token if scorer.append_eos and tokenizer.eos_token else ""
    sep = getattr(scorer, "response_separator", " ")
    rows = dataset_rows("", "pku-saferlhf")["train"]
    rng = np.random.default_rng(seed)
    responses = [(r["prompt"], r[f"response_{i}"]) for r in rows for i in (0, 1)] + [
        (r["prompt"], tokenizer.decode(rng.integers(3, len(tokenizer), size=6).tolist()))
        for r in rows]
    return [f"{scorer.template.format(prompt=p)}{sep}{y}{eos}" for p, y in responses]


def _calibrated_head(backbone: Any, tokenizer: Any, texts: list[str]) -> tuple[Any, Any]:
    """``(w, b)`` of a 1-output head that reads the direction of largest variance of the
    backbone's last hidden state on ``texts``: ``w = SCORE_SPREAD v_1 / sigma_1``,
    ``b = -w . mean``, so the scores of ``texts`` have mean 0 and standard deviation
    :data:`SCORE_SPREAD` (a random head would score every text nearly alike)."""
    import torch

    enc = tokenizer(texts)["input_ids"]
    lengths = torch.tensor([len(e) for e in enc])
    ids = torch.zeros((len(enc), int(lengths.max())), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, e in enumerate(enc):  # right padding: position length - 1 is each text's end
        ids[i, : len(e)] = torch.tensor(e)
        mask[i, : len(e)] = 1
    with torch.no_grad():
        hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state  # (n, L, H)
    h = hidden[torch.arange(len(enc)), lengths - 1].float()  # size = (n, H)
    mean = h.mean(dim=0)
    _, sv, vt = torch.linalg.svd(h - mean, full_matrices=False)
    sigma = sv[0] / (len(texts) - 1) ** 0.5
    w = vt[0] * (SCORE_SPREAD / sigma)  # size = (H,)
    return w, -(w @ mean)


def _write_score_model(out: Path, config: Any, arch: str, score_type: str, tokenizer: Any,
                       scorer: Any, seed: int) -> None:
    """A safe-rlhf score model in ``out``: backbone ``model.*`` + ``score_head`` + normalizer."""
    import torch
    from safetensors.torch import save_file

    from .score_model import backbone_class_name

    backbone = _build_model(backbone_class_name(arch), config, seed)
    backbone.eval()
    w, b = _calibrated_head(backbone, tokenizer, _calibration_texts(tokenizer, scorer, seed))
    tensors = {f"model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}
    tensors["score_head.weight"] = w.reshape(1, -1).contiguous()
    tensors["score_head.bias"] = b.reshape(1)
    tensors["normalizer.mean"] = torch.zeros(1)
    tensors["normalizer.var"] = torch.ones(1)
    tensors["normalizer.count"] = torch.zeros(1, dtype=torch.long)
    save_file(tensors, str(out / "model.safetensors"))
    raw = config.to_dict()
    raw.update(architectures=[arch], score_dim=1, score_bias=True, score_type=score_type,
               do_normalize=False, normalizer_type=None)
    (out / "config.json").write_text(json.dumps(raw, indent=1))


def _local_real(folder: str) -> tuple[Any, Any]:
    """The config.json and tokenizer of a local model folder (``None`` where absent)."""
    import os

    path = Path(os.path.expanduser(folder))
    config = tokenizer = None
    if (path / "config.json").is_file():
        config = json.loads((path / "config.json").read_text())
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError):
        tokenizer = None
    return config, tokenizer


def cached_originals(cfg: Any) -> dict[str, tuple[Any, Any]]:
    """``{repo: (config.json dict or None, tokenizer or None)}`` of the model repos of ``cfg``
    as found in the *current* Hugging Face cache (call it before switching to a private one),
    and of its local model folders."""
    out = {repo: _cached_real(repo, rev) for _, repo, rev, kind in repos_of_config(cfg)
           if kind != "dataset"}
    out.update({folder: _local_real(folder) for _, folder, _, _ in repos_of_config(cfg, True)})
    return out


def build_standins(cfg: Any, home: str | Path, originals: dict | None = None,
                   seed: int = 0) -> list[StandIn]:
    """Write stand-ins of every repo :func:`repos_of_config` lists into the cache ``home``
    (``home/hub``, ``home/datasets``); return what was built.  ``originals`` is
    :func:`cached_originals` of the user's cache (None: nothing is cached)."""
    from .tiny import build_llama_style_tokenizer

    home = Path(home)
    originals = originals or {}
    built: list[StandIn] = []
    shared_tokenizer = None
    work = Path(tempfile.mkdtemp(prefix="standin-", dir=home))
    entries = [(e, False) for e in repos_of_config(cfg)] + [
        (e, True) for e in repos_of_config(cfg, local=True)]
    for i, ((key, repo, revision, kind), local) in enumerate(entries):
        if kind == "dataset":
            rows = dataset_rows(repo, cfg.data.format)
            splits = {cfg.data.train_split: rows["train"], cfg.data.test_split: rows["test"]}
            write_dataset_cache(home / "datasets", repo, cfg.data.name, splits, work / f"d{i}")
            built.append(StandIn(key, repo, kind, "dataset", "real columns"
                                 if repo in DATASET_COLUMNS else "PKU core columns", repo))
            continue
        raw, tokenizer = originals.get(repo, (None, None))
        if tokenizer is None:
            if shared_tokenizer is None:
                shared_tokenizer = build_llama_style_tokenizer()
            tokenizer = shared_tokenizer
        out = work / f"m{i}"
        out.mkdir()
        tokenizer.save_pretrained(out)
        origin = "tiny Llama" if raw is None else (
            "real config.json (local folder)" if local else "real config.json (cached)")
        arch = "-"
        if kind == "causal-lm":
            config = _config_object(raw, tokenizer)
            arch = (raw or {}).get("architectures", ["LlamaForCausalLM"])[0]
            model = _build_model(arch, config, seed + i)
            model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
            model.save_pretrained(out)
        elif kind == "score-model":
            real_arch = (raw or {}).get("architectures", ["LlamaForScore"])[0]
            arch = real_arch if real_arch.endswith("ForScore") else "LlamaForScore"
            negate = _scorer_of(cfg, key).negate
            score_type = (raw or {}).get("score_type") or ("cost" if negate else "reward")
            _write_score_model(out, _config_object(raw, tokenizer), arch, score_type, tokenizer,
                               _scorer_of(cfg, key), seed + i)
        elif kind == "sequence-classifier":
            config = _config_object(raw, tokenizer)
            s = _scorer_of(cfg, key)
            config.num_labels = 1 if s.label_index is None else max(2, s.label_index + 1)
            arch = (raw or {}).get("architectures", ["LlamaForSequenceClassification"])[0]
            model = _build_model(arch, config, seed + i)
            _spread_head(model, tokenizer, s, seed + i)
            model.save_pretrained(out)
        if local:  # a local folder gets a local stand-in; the rehearsal points the key at it
            target = home / "local" / key
            shutil.copytree(out, target, dirs_exist_ok=True)
            built.append(StandIn(key, repo, kind, arch, origin, str(target)))
            continue
        write_model_snapshot(home / "hub", repo, out, revision)
        built.append(StandIn(key, repo, kind, arch, origin, repo))
    shutil.rmtree(work)  # the snapshots and the datasets cache hold copies
    return built


def _spread_head(model: Any, tokenizer: Any, scorer: Any, seed: int) -> None:
    """Set the classifier head (the linear layer with ``num_labels`` outputs) to the calibrated
    direction of :func:`_calibrated_head` on the row of the scored label (zeros elsewhere; no
    bias, as transformers' heads have none)."""
    import torch

    model.eval()
    w, _ = _calibrated_head(model.base_model, tokenizer,
                            _calibration_texts(tokenizer, scorer, seed))
    n = model.config.num_labels
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == n]
    with torch.no_grad():
        for head in heads[-1:]:
            head.weight.zero_()
            head.weight[scorer.label_index or 0] = w
            if head.bias is not None:
                head.bias.zero_()


def _scorer_of(cfg: Any, key: str) -> Any:
    if key.startswith("reward"):
        return cfg.reward
    return cfg.constraints[int(key.split(".")[1])].scorer

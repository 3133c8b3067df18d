"""Preflight: everything a run will need, checked in seconds before its first stage.

``dualgap llm check --config X`` (and ``dualgap llm train`` before it starts) resolves

* every model, tokenizer and scorer: ``config.json`` and tokenizer files only (architecture
  class, score-model layout, number of labels; with the hub offline, that the weights are in
  the cache), callables by import;
* the dataset: its builder info (features, splits) without reading rows, its columns against
  ``data.format``;
* every ``train.report_to`` logger, by creating its transformers callback (the step that fails
  when the logger's package is missing);
* devices against precision (``train.bf16``, ``dtype``), 4-bit loading (bitsandbytes + CUDA),
  the attention implementation a ``config.json`` asks for (flash-attn), and the batch split;

and estimates the memory per process of each stage from ``config.json`` (parameters counted on
the meta device with accelerate's ``init_empty_weights``)::

    weights      = params x bytes(dtype)               (4-bit: 0.5 byte per parameter)
    scoring      = the weights of every transformer scorer (the run loads them together)
    KV cache     = 2 x layers x kv_heads x head_dim x bytes(dtype) x batch x (L_prompt + L_new)
    DPO, full    = 2 x weights (policy + reference) + params x 3 x bytes(dtype)
                   (gradients and AdamW's two states at the weights' dtype)
    DPO, LoRA    = 2 x weights + lora_params x (4 + 4 + 8)   (fp32 adapters, grads, AdamW)
    implicit     = PeCAID (pecaid / pe-one-shot): 2 (m + 1) x policy weights (each of the m + 1
                   implicit scorers loads its pre-aligned model and a copy of pi_ref)

with ``L_prompt = train.max_length`` (an upper bound) and activations not counted.  Every
problem names the config key and the value; :meth:`Preflight.raise_for_problems` raises the
first one as a :class:`dualgap.errors.UserError` (exit 2 on the command line).
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError, one_line
from .resolve import (
    cached_weights,
    check_location,
    hub_offline,
    is_local_path,
    resolve_dataset,
    resolve_model_config,
    resolve_tokenizer,
)

__all__ = ["Check", "MemoryRow", "Preflight", "preflight", "run_preflight", "DTYPE_BYTES"]

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
_GB = 1024 ** 3


@dataclass
class Check:
    key: str
    value: str
    status: str  # "ok" | "note" | "PROBLEM"
    detail: str


@dataclass
class MemoryRow:
    stage: str
    what: str
    bytes: float
    key: str = ""  # the config key that lowers it


@dataclass
class Preflight:
    checks: list[Check] = field(default_factory=list)
    memory: list[MemoryRow] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, key: str, value: Any, status: str, detail: str) -> None:
        self.checks.append(Check(key, str(value), status, detail))

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status == "PROBLEM"]

    def table(self) -> str:
        """One table: the checks, then the memory estimate per stage."""
        rows = [(c.key, c.value, c.status, c.detail) for c in self.checks]
        w = [max([len(r[i]) for r in rows] + [len(h)])
             for i, h in enumerate(("key", "value", "status"))]
        w = [min(x, 48) for x in w]
        lines = [f"{'key':<{w[0]}}  {'value':<{w[1]}}  {'status':<{w[2]}}  detail"]
        for key, value, status, detail in rows:
            lines.append(f"{key:<{w[0]}}  {value[:48]:<{w[1]}}  {status:<{w[2]}}  {detail}")
        if self.memory:
            lines.append("")
            lines.append("memory per process (estimate; activations not counted):")
            for m in self.memory:
                lines.append(f"  {m.stage:<11} {m.bytes / _GB:>8.2f} GiB  {m.what}")
        lines.append(f"preflight: {len(self.problems)} problem(s), {self.seconds:.1f} s")
        return "\n".join(lines)

    def raise_for_problems(self) -> None:
        if self.problems:
            p = self.problems[0]
            more = f" (and {len(self.problems) - 1} more problem(s))" if len(
                self.problems) > 1 else ""
            what = p.detail if repr(p.value) in p.detail else f"{p.value!r}: {p.detail}"
            raise UserError(f"{p.key}: {what}{more}")


# ------------------------------------------------------------------ checks
def _guard(report: Preflight, key: str, value: Any, fn, *args) -> Any:
    try:
        return fn(*args)
    except ValueError as exc:  # UserError included
        msg = one_line(exc)
        m = re.match(r"([\w.]+): (.*)", msg)  # the messages of dualgap.llm.resolve: "key: ..."
        if m and m.group(1) != key:
            report.add(m.group(1), value, "PROBLEM", m.group(2))
        else:
            report.add(key, value, "PROBLEM", m.group(2) if m else msg)
        return None


def _check_model(report: Preflight, key: str, value: str, revision: str | None,
                 expect: str) -> dict | None:
    raw = _guard(report, key, value, resolve_model_config, key, value, revision)
    if raw is None:
        return None
    archs = raw.get("architectures") or []
    arch = archs[0] if archs else f"model_type {raw.get('model_type')!r}"
    if expect == "score-model" and not (archs and archs[0].endswith("ForScore")):
        report.add(key, value, "PROBLEM", f"not a safe-rlhf score model: architectures {archs}"
                   " (expected '<Backbone>ForScore'; use kind: sequence-classifier?)")
        return None
    if expect == "score-model":
        import transformers

        from .score_model import backbone_class_name

        if getattr(transformers, backbone_class_name(archs[0]), None) is None:
            report.add(key, value, "PROBLEM", f"transformers has no backbone class for {arch}")
            return None
    if expect == "causal-lm":
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        if raw.get("model_type") not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            report.add(key, value, "PROBLEM", f"model_type {raw.get('model_type')!r} is not a "
                       "causal LM transformers knows")
            return None
    local = is_local_path(value)
    if (local or hub_offline()) and not cached_weights(value, revision):
        report.add(key, value, "PROBLEM", "the folder has no weights file (model.safetensors, "
                   "pytorch_model.bin, sharded or as an adapter)" if local else
                   "config.json is cached but no weights file is, and the hub is offline "
                   "(HF_HUB_OFFLINE=1): download the repo first")
        return None
    impl = raw.get("attn_implementation") or raw.get("_attn_implementation")
    if impl == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        report.add(key, value, "PROBLEM", "config.json asks for flash_attention_2 but flash-attn "
                   "is not installed")
        return None
    report.add(key, value, "ok", f"{arch}" + (f" @ {revision}" if revision else ""))
    return raw


def _check_tokenizer(report: Preflight, key: str, value: str, revision: str | None,
                     chat: bool = False) -> None:
    tok = _guard(report, key, value, resolve_tokenizer, key, value, revision)
    if tok is None:
        return
    if chat and getattr(tok, "chat_template", None) is None:
        report.add("data.use_chat_template", True, "PROBLEM",
                   f"the tokenizer of {value!r} has no chat template")
        return
    report.add(key, value, "ok", f"tokenizer {type(tok).__name__}, {len(tok)} tokens")


def _check_scorer(report: Preflight, key: str, s: Any) -> dict | None:
    if s.kind == "callable":
        from .scoring import resolve_callable

        if _guard(report, f"{key}.path", s.path, resolve_callable, s.path) is not None:
            report.add(f"{key}.path", s.path, "ok", "callable")
        return None
    raw = _check_model(report, f"{key}.path", s.path, s.revision, s.kind)
    if raw is not None and s.kind == "sequence-classifier":
        n = raw.get("num_labels") or len(raw.get("id2label") or {}) or 2
        if s.label_index is None and n != 1:
            report.add(f"{key}.label_index", None, "PROBLEM",
                       f"{s.path!r} has {n} labels; name the one to score")
        elif s.label_index is not None and not 0 <= s.label_index < n:
            report.add(f"{key}.label_index", s.label_index, "PROBLEM",
                       f"out of range for {n} labels")
    if raw is not None or s.tokenizer:
        tok_key = f"{key}.tokenizer" if s.tokenizer else f"{key}.path"
        _check_tokenizer(report, tok_key, s.tokenizer or s.path,
                         None if s.tokenizer else s.revision)
    return raw


def _check_data(report: Preflight, d: Any) -> None:
    from .data import _BUILTIN, PKU_COLUMNS

    if d.source in _BUILTIN:
        report.add("data.source", d.source, "ok", "bundled rows")
        return
    if is_local_path(d.source):
        if _guard(report, "data.source", d.source, check_location, "data.source", d.source):
            report.add("data.source", d.source, "ok", "local file")
        if d.test_path is not None:
            _guard(report, "data.test_path", d.test_path, check_location, "data.test_path",
                   d.test_path)
        return
    from .data import PINNED_REVISIONS

    revision = d.revision if d.revision is not None else PINNED_REVISIONS.get(d.source)
    info = _guard(report, "data.source", d.source, resolve_dataset, "data.source", d.source,
                  d.name, revision, {"data.train_split": d.train_split,
                                     "data.test_split": d.test_split})
    if info is None:
        return
    need = ("chosen", "rejected") if d.format == "hh-rlhf" else PKU_COLUMNS
    missing = [c for c in need if info["features"] and c not in info["features"]]
    if missing:
        report.add("data.format", d.format, "PROBLEM",
                   f"{d.source!r} lacks the column(s) {missing} (has {sorted(info['features'])})")
        return
    sizes = ", ".join(f"{s}: {n if n is not None else '?'}" for s, n in info["splits"].items())
    report.add("data.source", d.source, "ok", f"{len(info['features'])} columns; {sizes}")


def _check_loggers(report: Preflight, report_to: list[str]) -> None:
    if all(name == "none" for name in report_to):  # the default: nothing to import (8 s)
        return
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    for i, name in enumerate(report_to):
        if name == "none":
            continue
        key = f"train.report_to.{i}"
        if name == "all":
            report.add(key, name, "note", "every installed logger")
            continue
        if name not in INTEGRATION_TO_CALLBACK:
            report.add(key, name, "PROBLEM", f"unknown logger (known: "
                       f"{sorted(INTEGRATION_TO_CALLBACK)} or 'none')")
            continue
        try:
            INTEGRATION_TO_CALLBACK[name]()
        except Exception as exc:  # noqa: BLE001 - any failure here is the run's first DPO step
            report.add(key, name, "PROBLEM", f"the {name} logger fails to start "
                       f"({one_line(exc)}): install it or --set 'train.report_to=[none]'")
            continue
        report.add(key, name, "ok", "logger starts")


def _check_devices(report: Preflight, cfg: Any) -> bool:
    import torch

    cuda = torch.cuda.is_available()
    device = f"cuda x {torch.cuda.device_count()}" if cuda else "cpu"
    report.add("device", device, "ok" if cuda else "note",
               "" if cuda else "no GPU: every stage runs on the CPU")
    t = cfg.train
    if t.bf16 and not cuda:
        report.add("train.bf16", True, "note", "ignored on CPU (DPO trains without mixed "
                   "precision)")
    elif t.bf16 and not torch.cuda.is_bf16_supported():
        report.add("train.bf16", True, "PROBLEM", "this GPU does not support bfloat16")
    dtypes = [("policy.dtype", cfg.policy.dtype), ("reward.dtype", cfg.reward.dtype)] + [
        (f"constraints.{i}.scorer.dtype", c.scorer.dtype) for i, c in enumerate(cfg.constraints)
        if c.scorer.kind != "callable"]
    for key, dt in dtypes:
        if dt == "bfloat16" and cuda and not torch.cuda.is_bf16_supported():
            report.add(key, dt, "PROBLEM", "this GPU does not support bfloat16")
        elif dt != "float32" and not cuda:
            report.add(key, dt, "note", "half precision on the CPU is slow")
    lora = cfg.policy.lora
    if lora.load_in_4bit:
        if not lora.enabled:
            report.add("policy.lora.load_in_4bit", True, "PROBLEM",
                       "4-bit loading is used only with policy.lora.enabled=true")
        elif importlib.util.find_spec("bitsandbytes") is None or not cuda:
            report.add("policy.lora.load_in_4bit", True, "PROBLEM",
                       "needs bitsandbytes and CUDA (" + ", ".join(
                           x for x, ok in (("bitsandbytes is not installed",
                                            importlib.util.find_spec("bitsandbytes") is not None),
                                           ("no CUDA device", cuda)) if not ok) + ")")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per = t.batch_size // (world * t.gradient_accumulation_steps)
    if per < 1 or per * world * t.gradient_accumulation_steps != t.batch_size:
        report.add("train.batch_size", t.batch_size, "PROBLEM",
                   f"not divisible by world size {world} x gradient_accumulation_steps "
                   f"{t.gradient_accumulation_steps}")
    return cuda


# ------------------------------------------------------------------ memory
def _count(raw: dict, kind: str) -> tuple[int, Any]:
    """Parameters of the model a ``config.json`` describes, built on the meta device."""
    import transformers
    from accelerate import init_empty_weights
    from transformers import AutoConfig

    data = {k: v for k, v in raw.items() if not k.startswith("_")}
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    with init_empty_weights():
        if kind == "score-model":
            from .score_model import backbone_class_name

            model = getattr(transformers, backbone_class_name(raw["architectures"][0]))(config)
        elif kind == "sequence-classifier":
            model = transformers.AutoModelForSequenceClassification.from_config(config)
        else:
            model = transformers.AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters()), model


def _lora_params(model: Any, raw: dict, lora: Any) -> int:
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as MAP

    targets = lora.target_modules or MAP.get(raw.get("model_type"), [])
    total = 0
    for name, mod in model.named_modules():
        if name.split(".")[-1] in targets and hasattr(mod, "in_features"):
            total += lora.r * (mod.in_features + mod.out_features)
    return total


def _estimate_memory(report: Preflight, cfg: Any, policy_raw: dict | None,
                     scorer_raws: list[tuple[str, Any, dict]]) -> None:
    if policy_raw is not None:
        n, model = _count(policy_raw, "causal-lm")
        lora = cfg.policy.lora
        b = DTYPE_BYTES[cfg.policy.dtype]
        w_gen = n * b
        w_train = n * (0.5 if lora.enabled and lora.load_in_4bit else b)
        c = model.config
        layers = c.num_hidden_layers
        heads = c.num_attention_heads
        kv = getattr(c, "num_key_value_heads", None) or heads
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
        g = cfg.generation
        seq = cfg.train.max_length + g.max_new_tokens
        kv_bytes = 2 * layers * kv * head_dim * b * g.batch_size * seq
        report.memory.append(MemoryRow("generation", f"weights {w_gen / _GB:.2f} + KV cache "
                                       f"{kv_bytes / _GB:.2f} (batch {g.batch_size} x {seq} "
                                       f"tokens); {n / 1e9:.2f}B params", w_gen + kv_bytes,
                                       "generation.batch_size"))
        if lora.enabled:
            nl = _lora_params(model, policy_raw, lora)
            opt = nl * 16
            what = f"policy + reference {2 * w_train / _GB:.2f} + LoRA ({nl / 1e6:.1f}M) " \
                   f"grads/Adam {opt / _GB:.2f}"
        else:
            opt = n * 3 * b
            what = f"policy + reference {2 * w_train / _GB:.2f} + grads/AdamW {opt / _GB:.2f}"
        report.memory.append(MemoryRow("DPO", what, 2 * w_train + opt,
                                       "policy.lora.load_in_4bit" if lora.enabled
                                       else "policy.lora.enabled"))
        from .config import PECAID_METHODS

        if cfg.method in PECAID_METHODS:  # Run.scorers: m + 1 implicit scorers at once
            k = 1 + len(cfg.constraints)
            report.memory.append(MemoryRow(
                "implicit scoring", f"{k} pre-aligned models + {k} copies of pi_ref (each "
                f"ImplicitRewardScorer loads both) {2 * k * w_gen / _GB:.2f}", 2 * k * w_gen,
                "policy.dtype"))
    if scorer_raws:  # the run loads every transformer scorer together (Run.scorers)
        sizes = []
        for key, s, raw in scorer_raws:
            n, _ = _count(raw, s.kind)
            sizes.append((n * DTYPE_BYTES[s.dtype], key, n))
        what = " + ".join(f"{key} {b / _GB:.2f} ({n / 1e9:.2f}B params)" for b, key, n in sizes)
        report.memory.append(MemoryRow("scoring", f"weights of {what}",
                                       sum(b for b, _, _ in sizes), f"{max(sizes)[1]}.dtype"))


def _check_fit(report: Preflight) -> None:
    """Each stage's estimate against the smallest visible GPU.  Generation and scoring are never
    sharded, so an estimate above the GPU's memory is a problem; DPO is one only when it runs
    unsharded (one process, no FSDP)."""
    import torch

    total = min(torch.cuda.get_device_properties(i).total_memory
                for i in range(torch.cuda.device_count()))
    sharded = int(os.environ.get("WORLD_SIZE", "1")) > 1 and (
        os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
        or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true")
    for m in report.memory:
        if m.bytes <= total:
            continue
        key = m.key
        status = "note" if (m.stage == "DPO" and sharded) else "PROBLEM"
        report.add(key, m.stage, status, f"the {m.stage} stage needs about "
                   f"{m.bytes / _GB:.1f} GiB per process, more than the GPU's "
                   f"{total / _GB:.1f} GiB ({m.what})")


# ------------------------------------------------------------------ entry point
def preflight(cfg: Any, loggers: bool = True) -> Preflight:
    """Check everything ``cfg`` (a :class:`~dualgap.llm.config.RunConfig`) needs; never raises
    for a problem (see :meth:`Preflight.raise_for_problems`)."""
    t0 = time.perf_counter()
    report = Preflight()
    p = cfg.policy
    policy_raw = None
    if p.model.startswith("builtin:"):
        ok = p.model == "builtin:tiny-llama"
        report.add("policy.model", p.model, "ok" if ok else "PROBLEM",
                   "built locally" if ok else "unknown built-in (known: builtin:tiny-llama)")
    else:
        policy_raw = _check_model(report, "policy.model", p.model, p.revision, "causal-lm")
        tok_key = "policy.tokenizer" if p.tokenizer else "policy.model"
        if policy_raw is not None or p.tokenizer:
            _check_tokenizer(report, tok_key, p.tokenizer or p.model,
                             None if p.tokenizer else p.revision, cfg.data.use_chat_template)
    scorer_raws = []
    for key, s in [("reward", cfg.reward)] + [(f"constraints.{i}.scorer", c.scorer)
                                              for i, c in enumerate(cfg.constraints)]:
        raw = _check_scorer(report, key, s)
        if raw is not None:
            scorer_raws.append((key, s, raw))
    _check_data(report, cfg.data)
    if loggers:
        _check_loggers(report, list(cfg.train.report_to))
    cuda = _check_devices(report, cfg)
    if not report.problems:
        try:
            _estimate_memory(report, cfg, policy_raw, scorer_raws)
        except Exception as exc:  # noqa: BLE001 - an estimate must not block a run
            report.add("memory", "-", "note", f"no estimate ({one_line(exc)})")
        if cuda:
            _check_fit(report)
    report.seconds = time.perf_counter() - t0
    return report


def run_preflight(cfg: Any, print_table: bool = True) -> Preflight:
    """:func:`preflight`, its table printed (rank 0), and the first problem raised."""
    from .distributed import is_main

    report = preflight(cfg)
    if print_table and is_main():
        print(report.table(), flush=True)
    report.raise_for_problems()
    return report


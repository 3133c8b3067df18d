"""Run configurations: dataclasses loaded from YAML, with ``--set key=value`` overrides.

Every field carries its help text in ``metadata["help"]`` (printed by
``dualgap llm train --help-config``).  Unknown keys are errors naming the key, values are checked
against the field types (``"1e-6"`` is read as a float for a float field; ``"1-6"`` is an error),
and nothing is silently dropped.

    cfg = load_config("tiny", overrides=["dual.step_size=0.5", "constraints.0.threshold=1.0"])

Shipped configs (``dualgap/llm/configs/*.yaml``): ``tiny``, ``pku_saferlhf_30k``,
``hh_rlhf_two_constraints``.  This module imports PyYAML and the standard library only.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

__all__ = [
    "DataConfig", "LoraSettings", "PolicyConfig", "ScorerConfig", "ConstraintConfig",
    "DualConfig", "GenerationSettings", "TrainSettings", "EvalSettings", "RunConfig",
    "METHODS", "CONFIG_DIR", "shipped_configs", "load_config", "config_from_dict",
    "config_to_dict", "apply_overrides", "describe_config", "save_config",
]

#: Directory of the shipped YAML configs.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"

#: The training methods of ``dualgap llm train``.
METHODS = ("caid", "one-shot", "dpo-helpful", "dpo-safe")

PKU_TEMPLATE = "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:"


def _f(default: Any = dataclasses.MISSING, help: str = "", factory: Any = None) -> Any:
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class DataConfig:
    """Where the preference pairs come from and how prompts are rendered."""

    source: str = _f("builtin:tiny", "hub dataset id (e.g. PKU-Alignment/PKU-SafeRLHF-30K), "
                     "'builtin:tiny' (the bundled test data) or a local .json/.jsonl/.parquet "
                     "file holding the training split")
    test_path: str | None = _f(None, "local file with the test split (when source is a file)")
    format: Literal["pku-saferlhf", "hh-rlhf"] = _f(
        "pku-saferlhf", "column layout: PKU-SafeRLHF pairs or HH-RLHF chosen/rejected dialogues")
    name: str | None = _f(None, "dataset config name on the hub (e.g. 'alpaca-7b')")
    revision: str | None = _f(None, "dataset revision; default: the pinned one for known hub ids "
                              "(dualgap.llm.data.PINNED_REVISIONS), e.g. 'v0' for the v0 branch")
    train_split: str = _f("train", "split holding the training pairs")
    test_split: str = _f("test", "split holding the test prompts")
    max_train_pairs: int | None = _f(None, "use the first N training pairs (None: all)")
    max_test_prompts: int | None = _f(None, "use the first N test prompts (None: all)")
    drop_invalid: bool = _f(False, "drop rows that fail schema validation (count reported) "
                            "instead of raising")
    template: str = _f(PKU_TEMPLATE, "prompt template with a {prompt} field (the policy's prompt "
                       "text in generation and DPO)")
    response_separator: str = _f(" ", "text between the prompt text and the response in DPO "
                                 "texts (the PKU configs: '', as upstream safe-rlhf trained "
                                 "alpaca-7b-reproduced: 'ASSISTANT:' + answer)")
    use_chat_template: bool = _f(False, "render prompts with the policy tokenizer's chat "
                                 "template instead of `template`")


@dataclass
class LoraSettings:
    """LoRA through peft (paper: r 8, alpha 16, dropout 0.05, 4-bit base)."""

    enabled: bool = _f(False, "train LoRA adapters instead of all weights")
    r: int = _f(8, "LoRA rank")
    alpha: int = _f(16, "LoRA alpha")
    dropout: float = _f(0.05, "LoRA dropout")
    target_modules: list[str] | None = _f(None, "module names to adapt (None: peft's default "
                                          "for the architecture)")
    load_in_4bit: bool = _f(False, "load the base model in 4 bit (needs bitsandbytes and CUDA)")


@dataclass
class PolicyConfig:
    """The reference policy pi_ref (also the starting point of training)."""

    model: str = _f("builtin:tiny-llama", "hub id or local directory of a causal LM, or "
                    "'builtin:tiny-llama' (a randomly initialized 2-layer Llama built locally)")
    tokenizer: str | None = _f(None, "tokenizer id/directory (None: same as model)")
    revision: str | None = _f(None, "model revision on the hub")
    dtype: Literal["float32", "bfloat16", "float16"] = _f("float32", "weights dtype")
    lora: LoraSettings = _f(factory=LoraSettings, help="LoRA settings")


@dataclass
class ScorerConfig:
    """A reward or utility scorer.  A cost model becomes a utility with ``negate: true``."""

    name: str = _f("reward", "short name (used in metrics, figures and the score cache)")
    kind: Literal["sequence-classifier", "score-model", "callable"] = _f(
        "callable", "transformers sequence-classification model, safe-rlhf score model "
                    "(LlamaForScore layout), or a Python callable 'module:function'")
    path: str = _f("dualgap.llm.tiny:helpfulness_score", "model id/directory, or "
                   "'module:function' for kind=callable (called as f(prompts, responses))")
    revision: str | None = _f(None, "model revision on the hub")
    tokenizer: str | None = _f(None, "tokenizer id/directory (None: same as path)")
    negate: bool = _f(False, "use minus the model's output (a cost model's output is a cost: "
                      "higher = less safe; its utility is the negation)")
    template: str = _f(PKU_TEMPLATE, "prompt template the scorer was trained with")
    response_separator: str = _f("", "text between the prompt text and the response (upstream "
                                 "safe-rlhf: ''; the CAID authors' scoring code: ' ')")
    append_eos: bool = _f(True, "append the tokenizer's EOS token (safe-rlhf score models read "
                          "the score at the last token, which is EOS in their training data)")
    label_index: int | None = _f(None, "for classifiers with several logits: score = the "
                                 "log-probability of this label (None: the model must have "
                                 "exactly one logit, used as is)")
    batch_size: int = _f(16, "sequences per forward pass (sorted by length)")
    max_length: int = _f(1024, "truncate scored sequences to this many tokens")
    dtype: Literal["float32", "bfloat16", "float16"] = _f("float32", "weights dtype")


@dataclass
class ConstraintConfig:
    """One constraint ``E_pi g - E_ref g >= threshold`` (improvement over pi_ref)."""

    scorer: ScorerConfig = _f(factory=ScorerConfig, help="the utility g")
    threshold: float = _f(0.0, "b: required improvement of E g over the reference policy")


@dataclass
class DualConfig:
    """The dual step ``lam <- [lam - eta (E_pi g - E_ref g - b)]_+``."""

    num_prompts: int = _f(600, "N training prompts used for dual statistics")
    samples_per_prompt: int = _f(64, "K samples per prompt from pi_ref and from each iterate")
    step_size: float | str = _f(
        "auto", "eta; 'auto' = 1 / lambda_max(hess D_hat(lam_0)) = beta / lambda_max(E Cov g), "
        "the inverse curvature of the empirical dual at the starting multiplier (meant for the "
        "practical start, where lam_0 is the one-shot lam; the paper did not publish its step "
        "size)")
    lam_init: list[float] | None = _f(None, "starting multiplier for start=literal (default 0)")
    start: Literal["practical", "literal"] = _f(
        "practical", "practical: first policy step at the one-shot lam, a dual step before every "
        "later one; literal: first dual step taken at pi_ref from lam_init")


@dataclass
class GenerationSettings:
    """Sampling for the dual statistics and the evaluation."""

    temperature: float = _f(1.0, "sampling temperature")
    top_p: float = _f(0.9, "nucleus sampling mass")
    max_new_tokens: int = _f(512, "maximum generated tokens per response")
    batch_size: int = _f(32, "sequences per generate() call")


@dataclass
class TrainSettings:
    """The DPO policy step (TRL DPOTrainer)."""

    learning_rate: float = _f(5e-4, "peak learning rate")
    lr_scheduler_type: str = _f("cosine", "transformers scheduler name")
    warmup_steps: int = _f(100, "warmup steps of each iteration")
    max_length: int = _f(512, "max tokens of prompt + response in DPO")
    batch_size: int = _f(64, "global batch size (pairs per optimizer step, all processes)")
    gradient_accumulation_steps: int = _f(1, "micro-batches per optimizer step")
    epochs_per_iteration: float = _f(1.0, "DPO epochs per CAID iteration")
    gradient_checkpointing: bool = _f(True, "trade compute for memory")
    bf16: bool = _f(False, "bf16 mixed precision (GPU)")
    logging_steps: int = _f(10, "log every N steps")
    report_to: list[str] = _f(factory=lambda: ["none"], help="trainer loggers, names of "
                              "transformers' integrations (tensorboard, wandb, mlflow, ...; "
                              "each needs its package installed) or 'all'; 'none' for no "
                              "logger (the run's metrics.jsonl and run.log always record the "
                              "losses)")
    loss_type: list[str] = _f(factory=lambda: ["sigmoid"], help="TRL DPO loss types")


@dataclass
class EvalSettings:
    """Evaluation on the test split."""

    num_prompts: int | None = _f(None, "test prompts (None: data.max_test_prompts / all)")
    samples_per_prompt: int = _f(2, "samples per prompt from each policy (paper: 2)")


@dataclass
class RunConfig:
    """A full experiment: data, policy, scorers, constraints, dual and policy steps."""

    method: Literal["caid", "one-shot", "dpo-helpful", "dpo-safe"] = _f(
        "caid", "caid (dual steps between DPO iterations), one-shot (fixed one-shot lam), "
        "dpo-helpful / dpo-safe (DPO on the dataset's better / safer labels)")
    seed: int = _f(0, "seed of every random choice (generation, labels, training)")
    iterations: int = _f(4, "policy steps (paper: 4 iterations of one DPO epoch)")
    beta: float = _f(0.1, "KL coefficient (DPO beta)")
    data: DataConfig = _f(factory=DataConfig, help="data")
    policy: PolicyConfig = _f(factory=PolicyConfig, help="reference policy")
    reward: ScorerConfig = _f(factory=ScorerConfig, help="reward r (helpfulness)")
    constraints: list[ConstraintConfig] = _f(factory=list, help="utilities g_i and thresholds")
    dual: DualConfig = _f(factory=DualConfig, help="dual step")
    generation: GenerationSettings = _f(factory=GenerationSettings, help="sampling")
    train: TrainSettings = _f(factory=TrainSettings, help="DPO step")
    evaluation: EvalSettings = _f(factory=EvalSettings, help="evaluation")

    def __post_init__(self) -> None:
        _validate(self)


# ------------------------------------------------------------------ validation
def _validate(cfg: RunConfig) -> None:
    def positive(key: str, value: float, strict: bool = True) -> None:
        if value < 0 or (strict and value == 0):
            raise ValueError(f"{key}: must be {'> 0' if strict else '>= 0'}, got {value!r}")

    positive("beta", cfg.beta)
    positive("iterations", cfg.iterations)
    positive("dual.num_prompts", cfg.dual.num_prompts)
    positive("dual.samples_per_prompt", cfg.dual.samples_per_prompt)
    if isinstance(cfg.dual.step_size, str):
        if cfg.dual.step_size != "auto":
            raise ValueError(f"dual.step_size: a float or 'auto', got {cfg.dual.step_size!r}")
    else:
        positive("dual.step_size", cfg.dual.step_size, strict=False)
    m = len(cfg.constraints)
    if cfg.dual.lam_init is not None:
        if len(cfg.dual.lam_init) != m:
            raise ValueError(f"dual.lam_init: {len(cfg.dual.lam_init)} values for {m} constraints")
        if any(v < 0 for v in cfg.dual.lam_init):
            raise ValueError(f"dual.lam_init: multipliers must be >= 0, got {cfg.dual.lam_init}")
    positive("generation.temperature", cfg.generation.temperature)
    if not 0 < cfg.generation.top_p <= 1:
        raise ValueError(f"generation.top_p: must be in (0, 1], got {cfg.generation.top_p!r}")
    positive("generation.max_new_tokens", cfg.generation.max_new_tokens)
    positive("generation.batch_size", cfg.generation.batch_size)
    positive("train.learning_rate", cfg.train.learning_rate)
    positive("train.batch_size", cfg.train.batch_size)
    positive("train.gradient_accumulation_steps", cfg.train.gradient_accumulation_steps)
    positive("train.epochs_per_iteration", cfg.train.epochs_per_iteration)
    positive("train.warmup_steps", cfg.train.warmup_steps, strict=False)
    positive("evaluation.samples_per_prompt", cfg.evaluation.samples_per_prompt)
    _check_report_to(cfg.train.report_to)
    if "{prompt}" not in cfg.data.template:
        raise ValueError(f"data.template: must contain '{{prompt}}', got {cfg.data.template!r}")
    names = [cfg.reward.name] + [c.scorer.name for c in cfg.constraints]
    if len(set(names)) != len(names):
        raise ValueError(f"constraints: scorer names must be distinct, got {names}")
    for i, c in enumerate(cfg.constraints):
        if "{prompt}" not in c.scorer.template:
            raise ValueError(f"constraints.{i}.scorer.template: must contain '{{prompt}}'")
    if cfg.method in ("caid", "one-shot") and m == 0:
        raise ValueError(f"constraints: method {cfg.method!r} needs at least one constraint")
    if cfg.data.format == "hh-rlhf" and cfg.method == "dpo-safe":
        raise ValueError("method: 'dpo-safe' needs safety labels, which data.format='hh-rlhf' "
                         "does not have")


def known_report_to() -> list[str]:
    """The logger names transformers' ``Trainer`` accepts in ``report_to`` (its
    ``INTEGRATION_TO_CALLBACK``), plus ``all`` and ``none``; imported lazily."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    return sorted(INTEGRATION_TO_CALLBACK) + ["all", "none"]


def _check_report_to(values: list[str]) -> None:
    if not values:
        raise ValueError("train.report_to: empty; use [none] for no logger")
    if values == ["none"]:  # the default needs nothing (no transformers import)
        return
    if ("none" in values or "all" in values) and len(values) > 1:
        raise ValueError(f"train.report_to: 'none' and 'all' stand alone, got {values}")
    known = known_report_to()
    for v in values:
        if v not in known:
            raise ValueError(f"train.report_to: unknown logger {v!r}; transformers knows {known}")


# ------------------------------------------------------------------ building from dicts
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ValueError(f"{key}: must not be null")
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(f"{key}: {value!r} is not a valid {_type_name(tp)} ({'; '.join(errors)})")
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ValueError(f"{key}: {value!r} is not one of {list(get_args(tp))}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}: expected a list, got {value!r}")
        (item,) = get_args(tp)
        return [_coerce(v, item, f"{key}.{i}") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping, got {value!r}")
        return _build(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"{key}: expected true/false, got {value!r}")
    if tp in (int, float):
        # bools are ints to Python but never numbers here; "1e-6" parses, "1-6" does not;
        # an int field takes an integral float (3.0) but not 3.5
        if not isinstance(value, bool):
            if isinstance(value, str):
                try:
                    number = tp(value)
                except ValueError:
                    pass
                else:
                    if tp is float and not math.isfinite(number):
                        raise ValueError(f"{key}: must be a finite number, got {value!r}")
                    return number
            elif tp is float and isinstance(value, (int, float)):
                if not math.isfinite(value):
                    raise ValueError(f"{key}: must be a finite number, got {value!r}")
                return float(value)
            elif tp is int and (isinstance(value, int)
                                or (isinstance(value, float) and value.is_integer())):
                return int(value)
        raise ValueError(f"{key}: expected {'an int' if tp is int else 'a float'}, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{key}: expected a string, got {value!r}")
    raise TypeError(f"{key}: unsupported field type {tp!r}")  # pragma: no cover


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in fields:
            raise ValueError(f"unknown config key {key!r}; known keys here: {sorted(fields)}")
        kwargs[k] = _coerce(v, hints[k], key)
    return cls(**kwargs)


def config_from_dict(data: dict) -> RunConfig:
    """A validated :class:`RunConfig` from a nested dict (unknown keys are errors)."""
    if not isinstance(data, dict):
        raise ValueError(f"config: expected a mapping at the top level, got {type(data).__name__}")
    return _build(RunConfig, data)


def config_to_dict(cfg: Any) -> dict:
    """The nested dict of a config (round-trips through :func:`config_from_dict`)."""
    return dataclasses.asdict(cfg)


def _set_path(data: dict, path: list[str], value: Any, full: str) -> None:
    node: Any = data
    for part in path[:-1]:
        if isinstance(node, list):
            node = node[_index(part, len(node), full)]
        else:
            if part not in node or node[part] is None:
                node[part] = {}
            node = node[part]
    last = path[-1]
    if isinstance(node, list):
        node[_index(last, len(node), full)] = value
    else:
        node[last] = value


def _index(part: str, n: int, full: str) -> int:
    try:
        i = int(part)
    except ValueError:
        raise ValueError(f"--set {full}: {part!r} is not a list index") from None
    if not -n <= i < n:
        raise ValueError(f"--set {full}: index {i} out of range for a list of {n}")
    return i


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Apply ``key=value`` overrides (dotted keys, list indices as numbers; values in YAML)."""
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"--set: expected key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ValueError(f"--set: empty key in {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ValueError(f"--set {key}: cannot parse {raw!r} ({exc})") from None
        _set_path(data, key.split("."), value, key)
    return data


def shipped_configs() -> dict[str, Path]:
    """The shipped configs by name."""
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.yaml"))}


def load_config(source: str | Path | dict, overrides: list[str] | None = None) -> RunConfig:
    """A :class:`RunConfig` from a shipped name, a YAML path or a dict, with overrides."""
    if isinstance(source, dict):
        data = dataclasses.asdict(config_from_dict(source))
    else:
        path = Path(source)
        shipped = shipped_configs()
        if not path.exists() and str(source) in shipped:
            path = shipped[str(source)]
        if not path.exists():
            raise ValueError(f"config: {str(source)!r} is neither a file nor a shipped config "
                             f"({sorted(shipped)})")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"config: {str(path)!r} is not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"config: {str(path)!r} must hold a mapping")
        # fill defaults first so that overrides can reach nested lists
        data = dataclasses.asdict(config_from_dict(data))
    return config_from_dict(apply_overrides(data, overrides))


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def describe_config(cls: type = RunConfig, prefix: str = "") -> list[str]:
    """One line per leaf key: ``key (type, default): help`` (the ``--help-config`` text)."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            lines.append(f"{key}: {f.metadata.get('help', '')}")
            lines.extend(describe_config(tp, key + "."))
            continue
        if get_origin(tp) is list and dataclasses.is_dataclass(get_args(tp)[0]):
            item_fields = ", ".join(x.name for x in dataclasses.fields(get_args(tp)[0]))
            lines.append(f"{key}: list of {{{item_fields}}} - {f.metadata.get('help', '')}")
            lines.extend(describe_config(get_args(tp)[0], key + ".N."))
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = None
        lines.append(f"{key} ({_type_name(tp)}, default {default!r}): {f.metadata.get('help', '')}")
    return lines

"""Checks of run configurations beyond the field types, and pydantic's errors as one line each.

``validate_run`` holds the rules that span fields (positive sizes, ``{prompt}`` in templates,
distinct scorer names, methods that need constraints, ``train.report_to`` names known to
transformers, ``train.dpo`` fields of ``trl.DPOConfig``); :func:`validation_message` turns a
pydantic ``ValidationError`` into ``dotted.key: what is wrong`` (joined by ``; ``).
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

__all__ = ["validate_run", "dual_confidence", "check_report_to", "known_report_to",
           "check_dpo_fields", "dpo_config_fields", "DPO_OWNED", "validation_message", "type_name"]


def type_name(tp: Any) -> str:
    """A readable name of a field type (``int | None``, ``Literal['a', 'b']``)."""
    if get_origin(tp) is Annotated:
        return type_name(get_args(tp)[0])
    if get_origin(tp) in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(tp))
    if get_origin(tp) is Literal:
        return "Literal" + str(list(get_args(tp)))
    if get_origin(tp) in (list, dict):
        return f"{get_origin(tp).__name__}[{', '.join(type_name(a) for a in get_args(tp))}]"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_type_name = type_name


def validate_run(cfg: Any) -> None:
    """The checks across fields of a :class:`~dualgap.llm.config.RunConfig` (each names its
    key)."""
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
    dual_confidence(cfg.dual)
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
    check_report_to(cfg.train.report_to)
    check_dpo_fields(cfg.train.dpo)
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


def dual_confidence(dual: Any) -> float | None:
    """The level of ``dual.confidence`` (``"auto"``: the core's
    :data:`dualgap.dual_steps.DEFAULT_CONFIDENCE`; ``"none"`` or 0: None, no margin); a
    ValueError naming the key for a level outside ``[0.5, 1)`` or a level with a numeric
    ``dual.step_size`` (only the auto step has a margin)."""
    from ..dual_samples import check_confidence
    from ..dual_steps import DEFAULT_CONFIDENCE

    value = dual.confidence
    if value == "none":
        return None
    level = check_confidence(DEFAULT_CONFIDENCE if value == "auto" else value,
                             "dual.confidence")
    if level is not None and value != "auto" and dual.step_size != "auto":
        raise ValueError(f"dual.confidence: a margin needs dual.step_size 'auto', got "
                         f"{value!r} with step_size {dual.step_size!r}")
    return level if dual.step_size == "auto" else None


def known_report_to() -> list[str]:
    """The logger names transformers' ``Trainer`` accepts in ``report_to`` (its
    ``INTEGRATION_TO_CALLBACK``), plus ``all`` and ``none``; imported lazily."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    return sorted(INTEGRATION_TO_CALLBACK) + ["all", "none"]


def check_report_to(values: list[str]) -> None:
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


#: DPOConfig fields that dualgap sets from its own keys (or must own): not in ``train.dpo``
DPO_OWNED = {
    "output_dir": "the run directory", "beta": "beta", "loss_type": "train.loss_type",
    "learning_rate": "train.learning_rate", "lr_scheduler_type": "train.lr_scheduler_type",
    "warmup_steps": "train.warmup_steps", "num_train_epochs": "train.epochs_per_iteration",
    "per_device_train_batch_size": "train.batch_size",
    "gradient_accumulation_steps": "train.gradient_accumulation_steps",
    "max_length": "train.max_length", "gradient_checkpointing": "train.gradient_checkpointing",
    "activation_checkpointing": "train.gradient_checkpointing", "bf16": "train.bf16",
    "use_cpu": "the device", "seed": "seed", "data_seed": "seed",
    "logging_steps": "train.logging_steps", "report_to": "train.report_to",
    "save_strategy": "the run (one checkpoint per iteration)",
    "dataloader_drop_last": "the global batch", "disable_tqdm": "--no-progress",
}


def dpo_config_fields() -> set[str]:
    """The field names of ``trl.DPOConfig`` (imported lazily)."""
    import dataclasses

    from trl import DPOConfig

    return {f.name for f in dataclasses.fields(DPOConfig) if f.init}


def check_dpo_fields(extra: dict[str, Any]) -> None:
    """Each ``train.dpo`` key is a ``DPOConfig`` field that dualgap does not set itself, and
    its value has the field's type (pydantic, strict, against DPOConfig's annotations)."""
    if not extra:
        return
    import typing

    from pydantic import TypeAdapter
    from trl import DPOConfig

    known = dpo_config_fields()
    hints = typing.get_type_hints(DPOConfig)
    for k, v in extra.items():
        if k in DPO_OWNED:
            raise ValueError(f"train.dpo.{k}: set by dualgap from {DPO_OWNED[k]}; not "
                             "passed through")
        if k not in known:
            raise ValueError(f"train.dpo.{k}: not a trl.DPOConfig field")
        try:
            TypeAdapter(hints[k]).validate_python(v, strict=True)
        except ValidationError:
            raise ValueError(f"train.dpo.{k}: expected {_type_name(hints[k])}, got "
                             f"{v!r}") from None


def _section_of(loc: tuple, root: type) -> type | None:
    """The config section class that holds the last key of ``loc`` (for 'known keys here')."""
    cls: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = cls.model_fields.get(part) if isinstance(cls, type) and issubclass(
            cls, BaseModel) else None
        if info is None:
            return None
        tp = info.annotation
        if get_origin(tp) is list:
            tp = get_args(tp)[0]
        if get_origin(tp) in (Union, types.UnionType):
            tp = next((a for a in get_args(tp) if isinstance(a, type)
                       and issubclass(a, BaseModel)), None)
        cls = tp
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def _message(err: dict, root: type) -> str:
    """One pydantic error as ``dotted.key: what is wrong``."""
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(
        ("function-", "nullable", "int", "float", "str", "list["))))
    key = ".".join(str(p) for p in loc)
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        section = _section_of(loc, root)
        known = sorted(section.model_fields) if section else []
        return f"unknown config key {key!r}; known keys here: {known}"
    if kind == "value_error":
        text = str(err["ctx"]["error"])
    elif kind == "literal_error":
        text = f"{value!r} is not one of {err['ctx']['expected']}"
    elif kind == "bool_type":
        text = f"expected true/false, got {value!r}"
    elif kind == "string_type":
        text = f"expected a string, got {value!r}"
    elif kind in ("list_type", "tuple_type"):
        text = f"expected a list, got {value!r}"
    elif kind in ("model_type", "dict_type", "model_attributes_type"):
        text = f"expected a mapping, got {value!r}"
    elif kind == "missing":
        text = "missing"
    else:
        text = f"{err['msg']}, got {value!r}"
    return f"{key}: {text}" if key else text


def validation_message(exc: ValidationError, root: type) -> str:
    """The errors of ``exc`` (raised validating ``root``), one ``key: problem`` each."""
    return "; ".join(_message(e, root) for e in exc.errors())

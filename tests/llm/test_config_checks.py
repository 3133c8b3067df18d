"""Tests of dualgap/llm/config_checks.py: the rules across config fields (each message names the
dotted key), ``train.report_to`` against transformers' loggers, ``train.dpo`` against
``trl.DPOConfig``'s fields and types, the readable type names of ``--help-config``, and pydantic's
errors as one ``key: problem`` line each."""

from __future__ import annotations

import re
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from dualgap.llm.config import describe_config, load_config, shipped_configs
from dualgap.llm.config_checks import DPO_OWNED, dpo_config_fields, type_name, validation_message


def test_method_needs_constraints():
    with pytest.raises(ValueError, match="needs at least one constraint"):
        load_config("tiny", ["constraints=[]"])
    assert load_config("tiny", ["constraints=[]", "method=dpo-helpful"]).constraints == []


def test_report_to_default_needs_nothing_and_names_are_checked():
    """The shipped configs log to nothing extra (tensorboard is not in the llm extra); a name
    transformers does not know is an error at config time, naming the key."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    for name in shipped_configs():
        assert load_config(name).train.report_to == ["none"]
    assert load_config("tiny", ["train.report_to=[wandb]"]).train.report_to == ["wandb"]
    assert "tensorboard" in INTEGRATION_TO_CALLBACK
    with pytest.raises(ValueError, match=r"train\.report_to: unknown logger 'tensorbord'"):
        load_config("tiny", ["train.report_to=[tensorbord]"])
    with pytest.raises(ValueError, match=r"train\.report_to: 'none' and 'all' stand alone"):
        load_config("tiny", ["train.report_to=[none, wandb]"])


def test_train_dpo_passes_dpo_config_fields_through():
    import dataclasses

    from trl import DPOConfig

    from dualgap.llm.policy_step import make_dpo_config

    cfg = load_config("tiny", ["train.dpo={max_grad_norm: 0.25, precompute_ref_log_probs: true,"
                               " loss_weights: [1.0]}"])
    args = make_dpo_config(cfg.train, cfg.beta, "unused", seed=0)
    assert isinstance(args, DPOConfig)
    assert (args.max_grad_norm, args.precompute_ref_log_probs, args.loss_weights) == (
        0.25, True, [1.0])
    assert "max_grad_norm" in {f.name for f in dataclasses.fields(DPOConfig)}
    for override, message in {
        "train.dpo={max_grad_nrom: 1}": r"train\.dpo\.max_grad_nrom: not a trl\.DPOConfig field",
        "train.dpo={beta: 0.5}": r"train\.dpo\.beta: set by dualgap from beta",
        "train.dpo={max_grad_norm: fast}": r"train\.dpo\.max_grad_norm: expected float, got 'fast'",
        "train.dpo={torch_compile: 1}": r"train\.dpo\.torch_compile: expected bool, got 1",
    }.items():
        with pytest.raises(ValueError, match=message):
            load_config("tiny", [override])
    assert any(line.startswith("train.dpo (dict[str, Any], default {})")
               for line in describe_config())


@pytest.mark.parametrize("overrides, message", [
    (["dual.lam_init=[1.0, 2.0]"], "dual.lam_init: 2 values for 1 constraints"),
    (["dual.lam_init=[-1.0]"], "dual.lam_init: multipliers must be >= 0, got [-1.0]"),
    (["dual.step_size=-0.5"], "dual.step_size: must be >= 0, got -0.5"),
    (["beta=0"], "beta: must be > 0, got 0"),
    (["train.warmup_steps=-1"], "train.warmup_steps: must be >= 0, got -1"),
    (["data.template='USER: {question}'"], "data.template: must contain '{prompt}'"),
    (["constraints.0.scorer.name=helpfulness"],
     "constraints: scorer names must be distinct, got ['helpfulness', 'helpfulness']"),
    (["constraints.0.scorer.template=plain"],
     "constraints.0.scorer.template: must contain '{prompt}'"),
    (["data.format=hh-rlhf", "method=dpo-safe"], "method: 'dpo-safe' needs safety labels"),
])
def test_rules_across_fields_name_the_key(overrides, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config("tiny", overrides)


def test_the_edges_of_the_rules_are_allowed():
    cfg = load_config("tiny", ["dual.step_size=0", "train.warmup_steps=0", "generation.top_p=1",
                               "dual.lam_init=[0.0]", "dual.step_size=auto"])
    assert (cfg.dual.step_size, cfg.train.warmup_steps, cfg.generation.top_p) == ("auto", 0, 1)
    assert cfg.dual.lam_init == [0.0]


def test_dualgap_owned_dpo_fields_are_real_dpo_config_fields():
    """Each key dualgap refuses in ``train.dpo`` exists in DPOConfig (a renamed field upstream
    would otherwise pass through unnoticed)."""
    assert set(DPO_OWNED) <= dpo_config_fields()
    for key in DPO_OWNED:
        with pytest.raises(ValueError, match=rf"train\.dpo\.{key}: set by dualgap from"):
            load_config("tiny", [f"train.dpo={{{key}: 1}}"])


@pytest.mark.parametrize("tp, name", [
    (int, "int"), (int | None, "int | None"), (Literal["a", "b"], "Literal['a', 'b']"),
    (list[str], "list[str]"), (dict[str, Any], "dict[str, Any]"),
    (float | str, "float | str"), (type(None), "None"),
])
def test_type_names_read_as_written(tp, name):
    assert type_name(tp) == name


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    rate: float = 0.1
    on: bool = False


class _Outer(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    inner: _Inner = _Inner()
    items: list[_Inner] = []
    name: str


def test_pydantic_errors_become_one_line_per_key():
    with pytest.raises(ValidationError) as info:
        _Outer.model_validate({"inner": {"rate": "x", "onn": True}, "items": [{"on": 1}]})
    text = validation_message(info.value, _Outer)
    assert len(info.value.errors()) == 4
    assert text.startswith("inner.rate: ") and "got 'x'" in text.split("; ")[0]
    assert text.split("; ")[1:] == ["unknown config key 'inner.onn'",
                                    "known keys here: ['on', 'rate']",
                                    "items.0.on: expected true/false, got 1", "name: missing"]


def test_dual_confidence_levels_and_their_errors():
    from dualgap.dual_steps import DEFAULT_CONFIDENCE
    from dualgap.llm.config_checks import dual_confidence

    assert load_config("tiny").dual.confidence == "auto"
    auto = dual_confidence(load_config("tiny").dual)
    assert auto == (DEFAULT_CONFIDENCE or None)
    assert dual_confidence(load_config("tiny", ["dual.confidence=none"]).dual) is None
    assert dual_confidence(load_config("tiny", ["dual.confidence=0"]).dual) is None
    assert dual_confidence(load_config("tiny", ["dual.confidence=0.9"]).dual) == 0.9
    # a numeric step has no margin; its default 'auto' is then no margin, a level an error
    assert dual_confidence(load_config("tiny", ["dual.step_size=0.5"]).dual) is None
    for overrides, message in [
            (["dual.confidence=1.5"], "dual.confidence: must be 0 (no margin) or a level in "
                                      "[0.5, 1), got 1.5"),
            (["dual.confidence=0.2"], "dual.confidence: must be 0 (no margin) or a level in "
                                      "[0.5, 1), got 0.2"),
            (["dual.confidence=high"], "dual.confidence: 'auto', 'none' or a level in [0.5, 1)"),
            (["dual.step_size=0.5", "dual.confidence=0.9"],
             "dual.confidence: a margin needs dual.step_size 'auto', got 0.9 with step_size 0.5")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            load_config("tiny", overrides)
    assert any(line.startswith("dual.confidence (") and "lower bound" in line
               for line in describe_config())

"""Run configurations: strict pydantic models loaded from YAML, with ``--set key=value`` overrides.

The sections are pydantic v2 models in strict mode (no type coercion; unknown keys are errors),
each field with its help text as its description (printed by ``dualgap llm train
--help-config``).  Errors name the dotted key (``constraints.0.scorer.negat``).  The one
conversion is YAML's: ``"1e-6"`` (a string to PyYAML) is read as a float for a float field;
``"1-6"`` is an error.  ``train.dpo`` passes further ``trl.DPOConfig`` fields through, checked
against DPOConfig's own fields.

    cfg = load_config("tiny", overrides=["dual.step_size=0.5", "constraints.0.threshold=1.0"])

Shipped configs (``dualgap/llm/configs/*.yaml``): ``tiny``, ``pku_saferlhf_30k``,
``hh_rlhf_two_constraints``.  This module imports PyYAML and pydantic; transformers and TRL
only to check ``train.report_to`` and ``train.dpo`` when they are set.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticUndefined

from ..dual_steps import DEFAULT_CONFIDENCE, TRUST_KL
from .config_checks import type_name as _type_name
from .config_checks import validate_run, validation_message

__all__ = [
    "DataConfig", "LoraSettings", "PolicyConfig", "ScorerConfig", "ConstraintConfig",
    "DualConfig", "GenerationSettings", "TrainSettings", "EvalSettings", "RunConfig",
    "PecaidSettings", "METHODS", "PECAID_METHODS", "LABEL_COLUMNS",
    "CONFIG_DIR", "shipped_configs", "load_config", "config_from_dict",
    "config_to_dict", "apply_overrides", "describe_config", "save_config",
]

#: Directory of the shipped YAML configs.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"

#: The training methods of ``dualgap llm train``.
METHODS = ("caid", "one-shot", "dpo-helpful", "dpo-safe", "pecaid", "pe-one-shot")

#: The methods that score with implicit rewards of pre-aligned DPO models (PeCAID).
PECAID_METHODS = ("pecaid", "pe-one-shot")

#: The preference-label columns a pre-aligned model can be trained on, and the
#: :class:`~dualgap.llm.data.PreferencePairs` attribute holding each.
LABEL_COLUMNS = {"better_response_id": "better", "safer_response_id": "safer"}

PKU_TEMPLATE = "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:"


def _f(default: Any = PydanticUndefined, help: str = "", factory: Any = None) -> Any:
    if factory is not None:
        return Field(default_factory=factory, description=help)
    return Field(default=default, description=help)


def _number_parser(tp: type) -> Any:
    """A strict ``int``/``float`` parser that also reads a numeric YAML string (PyYAML reads
    ``1e-6`` as a string): ``"1e-6"`` parses, ``"1-6"`` does not; a bool is never a number; a
    float must be finite; an int takes an integral float (``3.0``) but not ``3.5``."""
    what = "an int" if tp is int else "a float"

    def parse(value: Any) -> Any:
        if isinstance(value, str) and not isinstance(value, bool):
            try:
                value = tp(value)
            except ValueError:
                raise ValueError(f"expected {what}, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected {what}, got {value!r}")
        if tp is float:
            if not math.isfinite(value):
                raise ValueError(f"must be a finite number, got {value!r}")
            return float(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"expected {what}, got {value!r}")
            return int(value)
        return value

    return parse


_parse_float = _number_parser(float)
Int = Annotated[int, BeforeValidator(_number_parser(int))]
Float = Annotated[float, BeforeValidator(_parse_float)]


def _step_size(value: Any) -> float | str:
    if value == "auto":
        return "auto"
    try:
        return _parse_float(value)
    except ValueError:
        raise ValueError(f"a float or 'auto', got {value!r}") from None


def _confidence(value: Any) -> float | str:
    if value in ("auto", "none"):
        return value
    try:
        return _parse_float(value)
    except ValueError:
        raise ValueError(f"'auto', 'none' or a level in [0.5, 1), got {value!r}") from None


class _Section(BaseModel):
    """A config section: strict types, unknown keys are errors, assignments validated."""

    model_config = ConfigDict(strict=True, extra="forbid", validate_assignment=True)


class DataConfig(_Section):
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
    max_train_pairs: Int | None = _f(None, "use the first N training pairs (None: all)")
    max_test_prompts: Int | None = _f(None, "use the first N test prompts (None: all)")
    drop_invalid: bool = _f(False, "drop rows that fail schema validation (count reported) "
                            "instead of raising")
    template: str = _f(PKU_TEMPLATE, "prompt template with a {prompt} field (the policy's prompt "
                       "text in generation and DPO)")
    response_separator: str = _f(" ", "text between the prompt text and the response in DPO "
                                 "texts (the PKU configs: '', as upstream safe-rlhf trained "
                                 "alpaca-7b-reproduced: 'ASSISTANT:' + answer)")
    use_chat_template: bool = _f(False, "render prompts with the policy tokenizer's chat "
                                 "template instead of `template`")


class LoraSettings(_Section):
    """LoRA through peft (paper: r 8, alpha 16, dropout 0.05, 4-bit base)."""

    enabled: bool = _f(False, "train LoRA adapters instead of all weights")
    r: Int = _f(8, "LoRA rank")
    alpha: Int = _f(16, "LoRA alpha")
    dropout: Float = _f(0.05, "LoRA dropout")
    target_modules: list[str] | None = _f(None, "module names to adapt (None: peft's default "
                                          "for the architecture)")
    load_in_4bit: bool = _f(False, "load the base model in 4 bit (needs bitsandbytes and CUDA)")


class PolicyConfig(_Section):
    """The reference policy pi_ref (also the starting point of training)."""

    model: str = _f("builtin:tiny-llama", "hub id or local directory of a causal LM, or "
                    "'builtin:tiny-llama' (a randomly initialized 2-layer Llama built locally)")
    tokenizer: str | None = _f(None, "tokenizer id/directory (None: same as model)")
    revision: str | None = _f(None, "model revision on the hub")
    dtype: Literal["float32", "bfloat16", "float16"] = _f("float32", "weights dtype")
    lora: LoraSettings = _f(factory=LoraSettings, help="LoRA settings")


class ScorerConfig(_Section):
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
    label_index: Int | None = _f(None, "for classifiers with several logits: score = the "
                                 "log-probability of this label (None: the model must have "
                                 "exactly one logit, used as is)")
    batch_size: Int = _f(16, "sequences per forward pass (sorted by length)")
    max_length: Int = _f(1024, "truncate scored sequences to this many tokens")
    dtype: Literal["float32", "bfloat16", "float16"] = _f("float32", "weights dtype")


class ConstraintConfig(_Section):
    """One constraint ``E_pi g - E_ref g >= threshold`` (improvement over pi_ref)."""

    scorer: ScorerConfig = _f(factory=ScorerConfig, help="the utility g")
    threshold: Float = _f(0.0, "b: required improvement of E g over the reference policy")


class DualConfig(_Section):
    """The dual step ``lam <- [lam - eta (E_pi g - E_ref g - b)]_+``, or the self-tuning one."""

    num_prompts: Int = _f(600, "N training prompts used for dual statistics")
    samples_per_prompt: Int = _f(64, "K samples per prompt from pi_ref and from each iterate")
    step_size: Annotated[float | str, PlainValidator(_step_size)] = _f(
        "auto", "eta of [lam - eta slack]_+, or 'auto': no number, a projected Newton step "
        "with the sampled dual Hessian E_x Cov(g) / beta of the iterate's own scored samples, "
        f"in a trust region of {TRUST_KL} nats of KL, a Kesten gain against sampling noise, and a "
        "damped beta / sum (range g / 2)^2 step when the samples cannot support it (K < 2, a "
        "singular Hessian); lam_history.jsonl's dual_step records rule, fallback and reason "
        "(dualgap.dual_steps; docs/algorithms.md)")
    confidence: Annotated[float | str, PlainValidator(_confidence)] = _f(
        "auto", "margin of the auto dual step: the one-sided confidence level c at which it "
        "drives the lower bound of the sampled slack, slack - z_c SE(slack) with SE from the "
        "same samples, to 0 instead of the estimate itself (so the constraint is met at that "
        "level, not about half the time); 'auto' = "
        f"{DEFAULT_CONFIDENCE:g} (the level measured best, benchmarks/README.md 'Dual steps'),"
        " 'none' or 0 = no margin, else a level in [0.5, 1); lam_history.jsonl's dual_step "
        "records it and the margin z_c SE (dualgap.dual_samples)")
    lam_init: list[Float] | None = _f(None, "starting multiplier for start=literal (default 0)")
    start: Literal["practical", "literal"] = _f(
        "practical", "practical: first policy step at the one-shot lam, a dual step before every "
        "later one; literal: first dual step taken at pi_ref from lam_init")


class GenerationSettings(_Section):
    """Sampling for the dual statistics and the evaluation."""

    temperature: Float = _f(1.0, "sampling temperature")
    top_p: Float = _f(0.9, "nucleus sampling mass")
    max_new_tokens: Int = _f(512, "maximum generated tokens per response")
    batch_size: Int = _f(32, "sequences per generate() call")


class TrainSettings(_Section):
    """The DPO policy step (TRL DPOTrainer)."""

    learning_rate: Float = _f(5e-4, "peak learning rate")
    lr_scheduler_type: str = _f("cosine", "transformers scheduler name")
    warmup_steps: Int = _f(100, "warmup steps of each iteration")
    max_length: Int = _f(512, "max tokens of prompt + response in DPO")
    batch_size: Int = _f(64, "global batch size (pairs per optimizer step, all processes)")
    gradient_accumulation_steps: Int = _f(1, "micro-batches per optimizer step")
    epochs_per_iteration: Float = _f(1.0, "DPO epochs per CAID iteration")
    gradient_checkpointing: bool = _f(True, "trade compute for memory")
    bf16: bool = _f(False, "bf16 mixed precision (GPU)")
    logging_steps: Int = _f(10, "log every N steps")
    report_to: list[str] = _f(factory=lambda: ["none"], help="trainer loggers, names of "
                              "transformers' integrations (tensorboard, wandb, mlflow, ...; "
                              "each needs its package installed) or 'all'; 'none' for no "
                              "logger (the run's metrics.jsonl and run.log always record the "
                              "losses)")
    loss_type: list[str] = _f(factory=lambda: ["sigmoid"], help="TRL DPO loss types")
    labels: Literal["sampled", "soft", "regress", "distill"] = _f(
        "sampled", "targets of the caid / one-shot policy step: sampled (label ~ "
        "Bernoulli(sigmoid(r_lam(y_1) - r_lam(y_0))), the paper), soft (the probability "
        "itself, BT cross-entropy: dualgap.llm.soft_dpo), regress (squared error of the "
        "implicit margin beta Delta against r_lam(y_1) - r_lam(y_0)) or distill (weighted NLL "
        "of both responses toward pi_lam, self-normalized weights exp(r_lam / beta) per prompt: "
        "dualgap.llm.preferences.distill_weights); all but sampled need loss_type [sigmoid] "
        "and precompute the reference log-probs. Measured on the synthetic language "
        "(benchmarks/README.md 'Policy steps', equal pairs and steps): distill at learning_rate "
        "3e-3 with train.pool onpolicy is 3.5-4.0x closer to pi_lam_t than sampled (3 seeds; "
        "fixed pool 2.9-3.4x) and, with the default margin (dual.confidence), meets the "
        "constraint in 3/3 seeds, P* - J 0.016-0.029; distill is valid only where the pairs' "
        "responses are samples of pi_ref "
        "(the synthetic language, not PKU-SafeRLHF or HH-RLHF), so sampled stays the default")
    pool: Literal["fixed", "onpolicy"] = _f(
        "fixed", "distill's responses: fixed (the pairs') or onpolicy (from iteration 1, as "
        "many samples of pi_t, weights exp(r_lam / beta) pi_ref / pi_t: "
        "dualgap.llm.policy_step.onpolicy_pool); onpolicy needs labels distill")
    dpo: dict[str, Any] = _f(factory=dict, help="further trl.DPOConfig fields passed through "
                             "as they are (e.g. max_grad_norm, loss_weights, "
                             "precompute_ref_log_probs); checked against DPOConfig's own "
                             "fields; the fields above and those dualgap sets are refused")


class EvalSettings(_Section):
    """Evaluation on the test split."""

    num_prompts: Int | None = _f(None, "test prompts (None: data.max_test_prompts / all)")
    samples_per_prompt: Int = _f(2, "samples per prompt from each policy (paper: 2)")


class PecaidSettings(_Section):
    """PeCAID (methods pecaid / pe-one-shot): implicit rewards beta log(pi_label / pi_ref) of
    DPO models pre-aligned on the dataset's preference labels replace the scorers in training."""

    reward_label: Literal["better_response_id", "safer_response_id"] = _f(
        "better_response_id", "the preference label that trains the implicit reward model pi_r")
    utility_labels: list[Literal["better_response_id", "safer_response_id"]] | None = _f(
        None, "the label that trains each constraint's implicit utility model pi_gi, one per "
        "constraint (None: safer_response_id for every constraint)")
    prealign_epochs: Float | None = _f(None, "DPO epochs of each pre-alignment model (None: "
                                       "train.epochs_per_iteration)")
    thresholds: list[Float] | None = _f(None, "b_i of the trained constraints E_pi g_hat_i - "
                                        "E_ref g_hat_i >= b_i, one per constraint, in "
                                        "implicit-reward units (beta log-ratios); required by "
                                        "pecaid / pe-one-shot (constraints.N.threshold, in the "
                                        "score models' units, judges their evaluation)")

    def training_thresholds(self, cfg: Any) -> list[float]:
        """The thresholds a run of ``cfg`` trains with: these in PeCAID, else the
        constraints'."""
        if cfg.method in PECAID_METHODS:
            return list(self.thresholds or [])
        return [c.threshold for c in cfg.constraints]

    def labels(self, m: int) -> list[str]:
        """The label column of the reward model, then of each of the ``m`` utility models."""
        return [self.reward_label] + list(self.utility_labels or ["safer_response_id"] * m)


class RunConfig(_Section):
    """A full experiment: data, policy, scorers, constraints, dual and policy steps."""

    method: Literal["caid", "one-shot", "dpo-helpful", "dpo-safe", "pecaid", "pe-one-shot"] = _f(
        "caid", "caid (dual steps between DPO iterations), one-shot (fixed one-shot lam), "
        "dpo-helpful / dpo-safe (DPO on the dataset's better / safer labels), pecaid / "
        "pe-one-shot (caid / one-shot with implicit rewards of DPO models pre-aligned on the "
        "labels in place of the scorers; see pecaid.*)")
    seed: Int = _f(0, "seed of every random choice (generation, labels, training)")
    iterations: Int = _f(4, "policy steps (paper: 4 iterations of one DPO epoch)")
    beta: Float = _f(0.1, "KL coefficient (DPO beta)")
    data: DataConfig = _f(factory=DataConfig, help="data")
    policy: PolicyConfig = _f(factory=PolicyConfig, help="reference policy")
    reward: ScorerConfig = _f(factory=ScorerConfig, help="reward r (helpfulness)")
    constraints: list[ConstraintConfig] = _f(factory=list, help="utilities g_i and thresholds")
    dual: DualConfig = _f(factory=DualConfig, help="dual step")
    generation: GenerationSettings = _f(factory=GenerationSettings, help="sampling")
    train: TrainSettings = _f(factory=TrainSettings, help="DPO step")
    evaluation: EvalSettings = _f(factory=EvalSettings, help="evaluation")
    pecaid: PecaidSettings = _f(factory=PecaidSettings, help="PeCAID pre-alignment (methods "
                                "pecaid, pe-one-shot)")

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        validate_run(self)
        kind = self.train.labels
        if kind != "sampled":
            if self.method not in ("caid", "one-shot"):
                raise ValueError(f"train.labels: {kind!r} needs method caid or one-shot (the "
                                 f"dataset's labels are hard), got method {self.method!r}")
            if list(self.train.loss_type) != ["sigmoid"]:
                raise ValueError(f"train.loss_type: train.labels {kind!r} needs ['sigmoid'], "
                                 f"got {list(self.train.loss_type)}")
        if self.train.pool == "onpolicy" and kind != "distill":
            raise ValueError(f"train.pool: 'onpolicy' needs train.labels distill, got {kind!r}")
        _check_pecaid(self)
        return self


def _check_pecaid(cfg: RunConfig) -> None:
    """The PeCAID keys: one utility label per constraint, labels the data format has, and
    constraints (relative, the only kind a run has: implicit utilities identify only
    differences over the same prompts)."""
    p, m = cfg.pecaid, len(cfg.constraints)
    if p.prealign_epochs is not None and not p.prealign_epochs > 0:
        raise ValueError(f"pecaid.prealign_epochs: must be > 0, got {p.prealign_epochs!r}")
    if p.utility_labels is not None and len(p.utility_labels) != m:
        raise ValueError(f"pecaid.utility_labels: {len(p.utility_labels)} labels for {m} "
                         "constraints (one per constraint)")
    if p.thresholds is not None and len(p.thresholds) != m:
        raise ValueError(f"pecaid.thresholds: {len(p.thresholds)} thresholds for {m} "
                         "constraints (one per constraint)")
    if cfg.method not in PECAID_METHODS:
        return
    if m == 0:
        raise ValueError(f"constraints: method {cfg.method!r} needs at least one constraint")
    if p.thresholds is None:
        raise ValueError(f"pecaid.thresholds: required by method {cfg.method!r}, one per "
                         "constraint, in implicit-reward units (beta log-ratios; "
                         "constraints.N.threshold is in the score models' units)")
    if cfg.data.format == "hh-rlhf":
        keys = ["pecaid.reward_label"] + [f"pecaid.utility_labels.{i}" for i in range(m)]
        for key, label in zip(keys, p.labels(m), strict=True):
            if label == "safer_response_id":
                raise ValueError(f"{key}: 'safer_response_id' is not in data.format='hh-rlhf' "
                                 "data (it has better_response_id only)")


# ------------------------------------------------------------------ building from dicts
def config_from_dict(data: dict) -> RunConfig:
    """A validated :class:`RunConfig` from a nested dict (unknown keys are errors, each
    message names the dotted key)."""
    if not isinstance(data, dict):
        raise ValueError(f"config: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(validation_message(exc, RunConfig)) from None


def config_to_dict(cfg: Any) -> dict:
    """The nested dict of a config (round-trips through :func:`config_from_dict`)."""
    return cfg.model_dump()


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
    """A :class:`RunConfig` from a shipped name, a YAML path or a dict, with overrides applied
    to the raw data and the result validated once."""
    if isinstance(source, dict):
        data = copy.deepcopy(source)
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
    return config_from_dict(apply_overrides(data, overrides))


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def describe_config(cls: type = RunConfig, prefix: str = "") -> list[str]:
    """One line per leaf key: ``key (type, default): help`` (the ``--help-config`` text)."""
    lines = []
    for name, info in cls.model_fields.items():
        key = f"{prefix}{name}"
        tp, help_text = info.annotation, info.description or ""
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            lines.append(f"{key}: {help_text}")
            lines.extend(describe_config(tp, key + "."))
            continue
        item = get_args(tp)[0] if get_origin(tp) is list else None
        if isinstance(item, type) and issubclass(item, BaseModel):
            lines.append(f"{key}: list of {{{', '.join(item.model_fields)}}} - {help_text}")
            lines.extend(describe_config(item, key + ".N."))
            continue
        default = info.get_default(call_default_factory=True)
        lines.append(f"{key} ({_type_name(tp)}, default {default!r}): {help_text}")
    return lines

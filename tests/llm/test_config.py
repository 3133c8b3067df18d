"""Config models: YAML, --set overrides, unknown keys, strict types, shipped configs (the checks
across fields and the train.report_to / train.dpo checks: tests/llm/test_config_checks.py)."""

from __future__ import annotations

import pytest

from dualgap.llm.config import (
    CONFIG_DIR,
    RunConfig,
    config_from_dict,
    config_to_dict,
    describe_config,
    load_config,
    save_config,
    shipped_configs,
)


def test_shipped_configs_load():
    names = set(shipped_configs())
    assert {"tiny", "pku_saferlhf_30k", "hh_rlhf_two_constraints"} <= names
    for name in names:
        cfg = load_config(name)
        assert isinstance(cfg, RunConfig)
    paper = load_config("pku_saferlhf_30k")
    assert paper.beta == 0.1 and paper.iterations == 4
    assert paper.train.learning_rate == 5e-4 and paper.train.lr_scheduler_type == "cosine"
    assert paper.train.warmup_steps == 100 and paper.train.max_length == 512
    assert paper.dual.num_prompts == 600 and paper.dual.samples_per_prompt == 64
    assert paper.generation.temperature == 1.0 and paper.generation.top_p == 0.9
    assert paper.generation.max_new_tokens == 512
    lora = paper.policy.lora
    assert (lora.enabled, lora.r, lora.alpha, lora.dropout) == (True, 8, 16, 0.05)
    # the cost model becomes a utility by negation
    (c,) = paper.constraints
    assert c.scorer.kind == "score-model" and c.scorer.negate
    assert paper.reward.kind == "score-model" and not paper.reward.negate
    two = load_config("hh_rlhf_two_constraints")
    assert len(two.constraints) == 2 and two.iterations == 3 and two.train.learning_rate == 5e-5


def test_overrides_and_types():
    cfg = load_config("tiny", ["dual.step_size=0.5", "constraints.0.threshold=1e-1",
                               "train.learning_rate=1e-6", "method=one-shot",
                               "train.report_to=[tensorboard]"])
    assert cfg.dual.step_size == 0.5
    assert cfg.constraints[0].threshold == pytest.approx(0.1)
    assert cfg.train.learning_rate == 1e-6  # YAML reads 1e-6 as a string: coerced for a float
    assert cfg.method == "one-shot" and cfg.train.report_to == ["tensorboard"]


@pytest.mark.parametrize("override, message", [
    ("dual.stepsize=0.1", "unknown config key 'dual.stepsize'"),
    ("train.learning_rate=1-6", "train.learning_rate: expected a float"),
    ("method=ppo", "method: 'ppo' is not one of"),
    ("dual.step_size=fast", "dual.step_size: a float or 'auto'"),
    ("constraints.3.threshold=1", "index 3 out of range"),
    ("iterations=0", "iterations: must be > 0"),
    ("generation.top_p=1.5", "generation.top_p"),
    ("noequals", "expected key=value"),
    ("data.drop_invalid=maybe", "data.drop_invalid: expected true/false"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_config("tiny", [override])


def test_unknown_nested_key_in_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method: caid\nconstraints:\n  - scorer: {name: s, negat: true}\n")
    with pytest.raises(ValueError, match=r"unknown config key 'constraints\.0\.scorer\.negat'"):
        load_config(path)
    with pytest.raises(ValueError, match="neither a file nor a shipped config"):
        load_config(tmp_path / "missing.yaml")


def test_round_trip_and_help(tmp_path):
    cfg = load_config("pku_saferlhf_30k")
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert config_to_dict(again) == config_to_dict(cfg)
    assert config_from_dict(config_to_dict(cfg)) == cfg
    lines = describe_config()
    assert any(line.startswith("dual.step_size (") and "eta" in line for line in lines)
    assert any(line.startswith("constraints.N.scorer.negate") for line in lines)


@pytest.mark.parametrize("value", [".nan", "nan", ".inf", "-inf"])
def test_non_finite_numbers_are_rejected(value):
    with pytest.raises(ValueError, match=r"constraints\.0\.threshold: must be a finite number"):
        load_config("tiny", [f"constraints.0.threshold={value}"])


def test_pku_texts_are_upstream_by_default():
    paper = load_config("pku_saferlhf_30k")
    assert paper.data.response_separator == ""
    assert paper.reward.response_separator == "" and paper.reward.append_eos
    assert paper.constraints[0].scorer.response_separator == ""
    assert paper.data.template == "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:"
    text = (CONFIG_DIR / "pku_saferlhf_30k.yaml").read_text()
    assert "'ASSISTANT:' + ' ' + response" in text  # the authors' scoring variant is named


def test_strict_types_name_the_dotted_key():
    """pydantic strict models: no silent coercion, the message names the key and the value."""
    cases = {
        "seed=1.5": "seed: expected an int, got 1.5",
        "dual.lam_init=[1, true]": "dual.lam_init.1: expected a float, got True",
        "data.source=3": "data.source: expected a string, got 3",
        "constraints=3": "constraints: expected a list, got 3",
        "policy.lora=[1]": "policy.lora: expected a mapping, got [1]",
        "data.drop_invalid='true'": "data.drop_invalid: expected true/false, got 'true'",
        "constraints.0.scorer.kind=x": "constraints.0.scorer.kind: 'x' is not one of",
    }
    for override, message in cases.items():
        with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("[", r"\[")):
            load_config("tiny", [override])
    with pytest.raises(ValueError, match=r"unknown config key 'policy\.lora\.rank'; known keys "
                       r"here: \['alpha', 'dropout', 'enabled', 'load_in_4bit', 'r', "):
        load_config("tiny", ["policy.lora.rank=4"])
    # the one conversion: YAML's strings for numbers; an integral float for an int
    cfg = load_config("tiny", ["train.learning_rate='3e-4'", "seed=3.0"])
    assert cfg.train.learning_rate == 3e-4 and cfg.seed == 3 and isinstance(cfg.seed, int)
    with pytest.raises(ValueError, match="expected an int"):
        cfg.train.batch_size = "eight"  # assignments are validated too


def test_help_config_lists_every_key_with_type_default_and_help():
    import re

    from dualgap.llm.rundir import flatten

    lines = describe_config()
    described = {line.split(" (", 1)[0] for line in lines if " (" in line.split(":", 1)[0]}
    leaves = {re.sub(r"\.\d+(\.|$)", r".N\1", k)  # constraints.0.x -> constraints.N.x
              for k in flatten(config_to_dict(load_config("pku_saferlhf_30k")))}
    lists_of_values = {"train.report_to.N", "train.loss_type.N"}  # described as list[str]
    assert leaves - lists_of_values <= described and len(described) >= 60
    for line in lines:
        if " (" in line.split(":", 1)[0]:  # a leaf: `key (type, default X): help`
            assert re.fullmatch(r"[\w.]+ \(.+, default .*\): \S.*", line), line

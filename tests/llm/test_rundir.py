"""Run-directory files: strict JSONL and state.json, the changed-key diff of resume."""

from __future__ import annotations

import pytest

from dualgap.errors import UserError
from dualgap.llm.config import config_to_dict, load_config
from dualgap.llm.rundir import (
    changed_keys,
    flatten,
    read_jsonl,
    read_jsonl_for_resume,
    read_state,
    unsafe_changes,
)


def test_changed_keys_name_the_dotted_leaf():
    old = config_to_dict(load_config("pku_saferlhf_30k"))
    new = config_to_dict(load_config("pku_saferlhf_30k", ["constraints.0.threshold=0.1",
                                                          "train.logging_steps=50",
                                                          "evaluation.num_prompts=100"]))
    changes = changed_keys(old, new)
    assert changes == {"constraints.0.threshold": (5.0, 0.1), "train.logging_steps": (10, 50),
                       "evaluation.num_prompts": (None, 100)}
    assert unsafe_changes(changes) == ["constraints.0.threshold"]
    assert changed_keys(old, old) == {}
    assert flatten({"a": [], "b": [{"c": 1}]}) == {"a": [], "b.0.c": 1}
    # true and 1 differ; 1 and 1.0 do not
    assert changed_keys({"x": True}, {"x": 1}) and not changed_keys({"x": 1}, {"x": 1.0})
    assert unsafe_changes({"constraints.1.scorer.batch_size": (1, 2),
                           "train.report_to.0": ("none", "wandb")}) == []


def test_jsonl_damage_is_named_and_a_cut_tail_is_a_kill(tmp_path):
    path = tmp_path / "lam_history.jsonl"
    path.write_text('{"stage": "dual_0", "lam": [1.0]}\n{"stage": "dual_1", "la')
    with pytest.raises(UserError, match=r"lam_history\.jsonl: line 2 is not valid JSON"):
        read_jsonl(path)
    recs, cut = read_jsonl_for_resume(path)
    assert cut and [r["stage"] for r in recs] == ["dual_0"]
    path.write_text('{"stage": "dual_0"}\nnot json\n{"stage": "dual_1"}\n')
    with pytest.raises(UserError, match="line 2 is not valid JSON"):
        read_jsonl_for_resume(path)
    path.write_text('[1, 2]\n')
    with pytest.raises(UserError, match="line 1 is not a stage record"):
        read_jsonl(path)
    assert read_jsonl(tmp_path / "absent.jsonl") == []


@pytest.mark.parametrize("text, message", [
    ("{\"completed\": [\"setup\"", "not valid JSON"),
    ("[]", "expected an object with a 'completed' list"),
    ('{"completed": ["setup", "policy_x"]}', "unknown stage 'policy_x'"),
    ('{"completed": ["setup", "policy_7"]}', "stage 'policy_7' is past the config's 2"),
])
def test_bad_state_json(tmp_path, text, message):
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        read_state(path, iterations=2)
    path.write_text('{"completed": ["setup", "dual_0", "policy_1"]}')
    assert read_state(path, iterations=2)["completed"][-1] == "policy_1"


def test_load_run_config_compares_with_the_started_config(tmp_path):
    import json

    from dualgap.llm.rundir import RESOLVED, load_run_config, write_run_config

    cfg = load_config("tiny")
    write_run_config(tmp_path, cfg)
    assert load_run_config(tmp_path) == (cfg, {})
    again, changes = load_run_config(tmp_path, ["evaluation.num_prompts=5"])
    assert again.evaluation.num_prompts == 5 and changes == {"evaluation.num_prompts": (None, 5)}
    with pytest.raises(UserError, match=r"beta: 0\.1 -> 0\.2"):
        load_run_config(tmp_path, ["beta=0.2"])
    started = json.loads((tmp_path / RESOLVED).read_text())
    del started["train"]["dpo"], started["pecaid"]  # a run started before the keys existed
    (tmp_path / RESOLVED).write_text(json.dumps(started))
    # keys added to dualgap since, at their defaults, change nothing the run did: accepted
    assert load_run_config(tmp_path) == (cfg, {})
    # an added key at another value would: refused, named
    with pytest.raises(UserError, match=r"pecaid\.prealign_epochs: not in the run's config "
                                        r"\(a key added"):
        load_run_config(tmp_path, ["pecaid.prealign_epochs=3"])
    (tmp_path / "config.yaml").unlink()
    with pytest.raises(UserError, match=r"config\.yaml: missing; the run directory is damaged"):
        load_run_config(tmp_path)

"""The policy step's label variants: the config key and one soft-label DPO step on the tiny model
(parameters must change); building the records is tests/llm/test_preferences.py."""

import numpy as np
import pytest

from dualgap.llm.config import TrainSettings, describe_config, load_config
from dualgap.llm.preferences import preference_probabilities, soft_preference_dataset


def test_labels_key_is_validated_and_documented():
    assert TrainSettings().labels == "sampled"
    cfg = load_config("tiny", ["train.labels=soft"])
    assert cfg.train.labels == "soft"
    with pytest.raises(ValueError, match="train.labels"):
        load_config("tiny", ["train.labels=hard"])
    with pytest.raises(ValueError, match="train.labels: 'soft' needs method caid"):
        load_config("tiny", ["train.labels=soft", "method=dpo-helpful"])
    with pytest.raises(ValueError, match="train.loss_type: train.labels 'soft' needs"):
        load_config("tiny", ["train.labels=soft", "train.loss_type=[ipo]"])
    assert load_config("tiny", ["train.labels=distill"]).train.labels == "distill"
    with pytest.raises(ValueError, match="train.labels: 'distill' needs method caid"):
        load_config("tiny", ["train.labels=distill", "method=dpo-safe"])
    line = next(x for x in describe_config() if x.startswith("train.labels "))
    assert "default 'sampled'" in line and "soft" in line and "distill" in line


def _step_changes_the_parameters(records, labels, tmp_path):
    """One step of ``records`` under ``train.labels = labels`` from the tiny policy: 2 optimizer
    steps, more than half the parameter tensors changed; returns what the refusals need."""
    import torch
    from transformers import AutoModelForCausalLM

    from dualgap.llm.policy_step import dpo_step
    from dualgap.llm.tiny import build_tiny_tokenizer, materialize_tiny_policy

    ref = materialize_tiny_policy(tmp_path / "ref")
    tok = build_tiny_tokenizer()
    settings = TrainSettings(learning_rate=5e-2, warmup_steps=0, batch_size=2,
                             epochs_per_iteration=1.0, max_length=64, logging_steps=1,
                             gradient_checkpointing=False, labels=labels)
    out = tmp_path / "iter_1"
    res = dpo_step(records, ref, ref, tok, out, settings, beta=0.1, seed=0, progress=False)
    assert res["steps"] == 2
    before = AutoModelForCausalLM.from_pretrained(str(ref))
    after = AutoModelForCausalLM.from_pretrained(str(out))
    changed = [not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters(),
                                                     strict=True)]
    assert sum(changed) > len(changed) // 2
    return dpo_step, ref, tok, settings


def test_soft_label_dpo_step_changes_the_parameters(tmp_path):
    r = np.array([[0.0, 2.0], [1.0, 0.0], [0.0, 0.5], [3.0, 0.0]])
    p = preference_probabilities(r, np.zeros((0, 4, 2)), [])
    records = soft_preference_dataset(["plan a trip", "a recipe", "study", "fix a bike"],
                                      ["hack it", "first check", "poison", "carefully measure"],
                                      ["first plan", "steal", "practice then check", "cheat"], p)
    dpo_step, ref, tok, settings = _step_changes_the_parameters(records, "soft", tmp_path)
    # records without probabilities under labels=soft are refused, naming the key
    hard = {k: v for k, v in records.items() if k != "preference_probability"}
    with pytest.raises(ValueError, match="train.labels: 'soft' but the records lack"):
        dpo_step(hard, ref, ref, tok, tmp_path / "iter_x", settings, beta=0.1, seed=0,
                 progress=False)


def test_distill_records_and_step(tmp_path):
    """``policy_records`` under ``train.labels: distill`` carries the self-normalized weights
    and their effective sample sizes; one step changes the parameters; the records of another
    kind are refused, naming the key."""
    from dualgap.llm.policy_step import policy_records
    from dualgap.llm.preferences import distill_weights

    class Pairs:
        prompts = ["plan a trip", "plan a trip", "a recipe", "a recipe"]
        response_0 = ["hack it", "first check", "poison", "carefully measure"]
        response_1 = ["first plan", "steal", "practice then check", "cheat"]

    cfg = load_config("tiny", ["train.labels=distill"])
    r = np.array([[0.0, 2.0], [1.0, 0.0], [0.0, 0.5], [3.0, 0.0]])
    g = np.array([[[0.0, 1.0], [0.0, -1.0], [1.0, 0.0], [0.0, 0.0]]])
    records, info = policy_records(cfg, Pairs, (r, g), [0.5], str, 0)
    w, ess = distill_weights(r, g, [0.5], Pairs.prompts, cfg.beta)
    np.testing.assert_allclose(records["chosen_weight"], w[:, 1])
    assert info["labels"] == "distill" and info["ess_min"] == pytest.approx(ess.min())
    assert info["responses_per_prompt"] == 4.0
    dpo_step, ref, tok, settings = _step_changes_the_parameters(records, "distill", tmp_path)
    soft = TrainSettings(**{**settings.model_dump(), "labels": "soft"})
    with pytest.raises(ValueError, match="train.labels: 'soft' but the records lack"):
        dpo_step(records, ref, ref, tok, tmp_path / "x", soft, beta=0.1, seed=0,
                 progress=False)

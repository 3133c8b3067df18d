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


class _Pool:
    """Four pairs; the last one's prompt alone fills ``max_length`` 12 (TRL drops it)."""
    prompts = ["plan a trip", "a recipe", "plan a trip", " ".join(["study"] * 40)]
    response_0 = ["hack it", "first check", "poison", "carefully measure"]
    response_1 = ["first plan", "steal", "first plan", "cheat"]


def _trl_prepared(records, tok, args):
    """TRL's own preparation of the text records (what ``dpo_step`` did before the cache)."""
    from types import SimpleNamespace

    from datasets import Dataset
    from trl import DPOTrainer

    return DPOTrainer._prepare_dataset(SimpleNamespace(_tokenizer=tok),
                                       Dataset.from_dict(records), tok, args, "train")


def test_pool_dataset_is_trls_preparation_relabelled(tmp_path, monkeypatch):
    """The pool is tokenized once per cache key: other labels and other per-pair columns reuse
    the tokens on disk (a second tokenization would raise here), and the relabelled dataset is
    TRL's preparation of the records row for row, the dropped pair included."""
    from dualgap.llm import policy_step as ps
    from dualgap.llm.preferences import margin_dataset, preference_dataset
    from dualgap.llm.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    settings = TrainSettings(batch_size=2, max_length=12)
    args = ps.make_dpo_config(settings, 0.1, tmp_path / "w", 0, progress=False)
    p = _Pool
    first = preference_dataset(p.prompts, p.response_0, p.response_1, np.array([0, 1, 1, 0]))
    ours = ps.pool_dataset(first, tok, args, tmp_path / "tokens")
    assert [x.name for x in (tmp_path / "tokens").iterdir()] == [ps.pool_key(first, tok, args)]

    def no_second_tokenization(*a, **k):
        raise AssertionError("the pool was tokenized again")

    monkeypatch.setattr(ps, "_tokenize_pool", no_second_tokenization)
    r = np.array([[0.0, 2.0], [1.0, 0.0], [0.0, 0.5], [3.0, 0.0]])
    others = [preference_dataset(p.prompts, p.response_0, p.response_1, np.array(lab))
              for lab in ([1, 0, 0, 1], [1, 1, 1, 1])]
    others.append(margin_dataset(p.prompts, p.response_0, p.response_1, r, np.zeros((0, 4, 2)),
                                 [], " "))
    for records, got in [(first, ours)] + [(x, ps.pool_dataset(x, tok, args, tmp_path / "tokens"))
                                           for x in others]:
        want = _trl_prepared(records, tok, args)
        assert len(want) == len(got) == 3  # the long prompt is dropped by both
        for c in ("prompt_ids", "chosen_ids", "rejected_ids"):
            assert got[c] == want[c], c
        assert got["chosen_ids"] != got["rejected_ids"]
    assert list(got["reward_margin"]) == pytest.approx([2.0, -1.0, 0.5])  # kept pairs
    # another max_length is another key; without a cache_dir nothing is written
    monkeypatch.undo()
    longer = ps.make_dpo_config(TrainSettings(batch_size=2, max_length=64), 0.1, tmp_path / "w",
                                0, progress=False)
    assert ps.pool_key(first, tok, longer) != ps.pool_key(first, tok, args)
    assert ps.pool_key(others[0], tok, args) == ps.pool_key(first, tok, args)
    assert len(ps.pool_dataset(first, tok, longer)) == 4
    assert len(list((tmp_path / "tokens").iterdir())) == 1


@pytest.mark.parametrize("labels", ["sampled", "soft", "regress", "distill"])
def test_cached_tokens_train_the_same_weights(tmp_path, labels):
    """One policy step on the pool's cached tokens (first written, then reused) gives
    bit-identical weights to TRL's own tokenization of the records, for every
    ``train.labels``."""
    import torch
    from transformers import AutoModelForCausalLM

    from dualgap.llm.policy_step import dpo_step, policy_records
    from dualgap.llm.tiny import build_tiny_tokenizer, materialize_tiny_policy

    cfg = load_config("tiny", [f"train.labels={labels}"])
    r = np.array([[0.0, 2.0], [1.0, 0.0], [0.0, 0.5], [3.0, 0.0]])
    g = np.array([[[0.0, 1.0], [0.0, -1.0], [1.0, 0.0], [0.0, 0.0]]])
    records, _ = policy_records(cfg, _Pool, (r, g), [0.5], str, 3)
    ref = materialize_tiny_policy(tmp_path / "ref")
    tok = build_tiny_tokenizer()
    settings = TrainSettings(learning_rate=5e-2, warmup_steps=0, batch_size=1,
                             epochs_per_iteration=1.0, max_length=12, logging_steps=1,
                             gradient_checkpointing=False, labels=labels)
    weights = []
    for cache in (None, tmp_path / "tokens", tmp_path / "tokens"):  # TRL, tokenize, reuse
        out = tmp_path / f"iter_{len(weights)}"
        res = dpo_step(records, ref, ref, tok, out, settings, beta=0.1, seed=0,
                       progress=False, cache_dir=cache)
        assert res["steps"] == 3  # the pair whose prompt fills max_length is dropped
        weights.append(list(AutoModelForCausalLM.from_pretrained(str(out)).parameters()))
    # the tokenizer TRL has used (and changed) gives the same key: the pool was tokenized once
    assert len(list((tmp_path / "tokens").iterdir())) == 1
    before = AutoModelForCausalLM.from_pretrained(str(ref)).parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, weights[0], strict=True))
    for other in weights[1:]:
        assert all(torch.equal(a, b) for a, b in zip(weights[0], other, strict=True))


def test_onpolicy_pool_pairs_scores_and_log_ratios(tmp_path):
    """``train.pool: onpolicy``: ``2 n_x`` samples of ``pi_{t-1}`` per prompt, paired in
    order (the pairs per prompt of the fixed pool), their scores gathered per pair, and
    ``log pi_{t-1} / pi_ref`` of both responses: 0 where the iterate is ``pi_ref``, the scorer's
    own log-ratios where it is not; the key needs distill."""
    import torch
    from transformers import AutoModelForCausalLM

    from dualgap.llm.pecaid import ImplicitRewardScorer
    from dualgap.llm.policy_step import onpolicy_pool
    from dualgap.llm.tiny import build_tiny_tokenizer, materialize_tiny_policy

    ref = AutoModelForCausalLM.from_pretrained(str(materialize_tiny_policy(tmp_path / "ref")))
    other = AutoModelForCausalLM.from_pretrained(str(tmp_path / "ref"))
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    tok = build_tiny_tokenizer()
    cfg = load_config("tiny", ["train.labels=distill", "train.pool=onpolicy"])
    samples = {"a recipe": ["mix", "first check", "steal", "poison"],
               "plan a trip": ["first plan", "cheat", "hack it", "plan"]}

    class Run:
        config = cfg
        iterate = ref
        calls: list = []

        def sample_and_score(self, stage, t_policy, prompts, tag, timing, num_samples=None):
            self.calls.append((stage, t_policy, tuple(prompts), num_samples))
            ys = [samples[p][:num_samples] for p in prompts]
            s = np.arange(2 * len(prompts) * num_samples, dtype=float)
            return ys, s.reshape(2, len(prompts), num_samples)  # reward, one utility

        def load_policy(self, t):
            return ref if t < 0 else self.iterate

        def tokenizer(self):
            return tok

        def prompt_text(self, x):
            return x

        def release_models(self):
            pass

    class Pairs:  # "a recipe": 2 pairs, "plan a trip": 1
        prompts = ["a recipe", "plan a trip", "a recipe"]

    run = Run()
    pairs, (r, g), lr, info = onpolicy_pool(run, 2, Pairs, {})
    assert run.calls == [("onpolicy_2", 1, ("a recipe", "plan a trip"), 4)]
    assert pairs.prompts == ["a recipe", "a recipe", "plan a trip"]
    assert pairs.response_0 == ["mix", "steal", "first plan"]
    assert pairs.response_1 == ["first check", "poison", "cheat"]
    np.testing.assert_array_equal(r, [[0, 1], [2, 3], [4, 5]])  # prompt 0: 0-3, prompt 1: 4-7
    np.testing.assert_array_equal(g[0], [[8, 9], [10, 11], [12, 13]])
    assert lr.shape == (3, 2) and np.abs(lr).max() < 1e-9 and info["pool"] == "onpolicy"
    run.iterate = other
    _, _, lr, _ = onpolicy_pool(run, 1, Pairs, {})
    want = ImplicitRewardScorer(other, ref, tok, cfg.beta, "x",
                                max_length=cfg.train.max_length).log_ratios(
        [x for x in pairs.prompts for _ in range(2)],
        [y for pair in zip(pairs.response_0, pairs.response_1, strict=True) for y in pair])
    assert np.abs(lr).max() > 1e-3
    np.testing.assert_allclose(lr.ravel(), want, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="t: the on-policy pool starts at policy step 1"):
        onpolicy_pool(run, 0, Pairs, {})
    with pytest.raises(ValueError, match="train.pool: 'onpolicy' needs train.labels distill"):
        load_config("tiny", ["train.pool=onpolicy"])
    line = next(x for x in describe_config() if x.startswith("train.pool "))
    assert "default 'fixed'" in line and "onpolicy" in line


def test_pool_tokens_from_distinct_completions_are_trls_rows(tmp_path, monkeypatch):
    """The pool is tokenized per distinct (prompt, completion) (TRL sees each once, and the 4
    pairs that cannot be assembled from those rows again as pairs), and the result is TRL's
    preparation of the pairs row for row: the pairs whose prompt ends inside a word ("pla" +
    "n a trip" tokenizes as "plan", so TRL cuts that prompt's ids short) and the dropped long
    prompts included."""
    from dualgap.llm import policy_step as ps
    from dualgap.llm.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    args = ps.make_dpo_config(TrainSettings(batch_size=2, max_length=12), 0.1, tmp_path / "w", 0,
                              progress=False)
    p = _Pool
    prompts = p.prompts * 2 + ["help me pla"] * 4
    r0 = [" " + y for y in p.response_0 * 2] + ["n a trip", " then check", "n a trip",
                                                  " first check"]
    r1 = [" " + y for y in p.response_1[::-1] + p.response_1] + [
        " then check", " first check", " steal", " then check"]
    records = {"prompt": prompts, "chosen": r0, "rejected": r1}
    seen = []
    prepare = ps._trl_prepare
    monkeypatch.setattr(ps, "_trl_prepare", lambda *a: seen.append(len(a[0])) or prepare(*a))
    got = ps._tokenize_pool(records, tok, args)
    distinct = {(x, c) for x, c0, c1 in zip(prompts, r0, r1, strict=True) for c in (c0, c1)}
    assert seen == [len(distinct), 4]  # 2 long prompts, 2 prompts cut at different places
    pairs = [sorted(cr) for cr in zip(records["chosen"], records["rejected"], strict=True)]
    sorted_records = {"prompt": records["prompt"], "chosen": [a for a, _ in pairs],
                      "rejected": [b for _, b in pairs]}
    want = _trl_prepared(sorted_records, tok, args)
    assert len(want) == len(got) == 10  # both long prompts dropped
    assert got["pair_index"] == [0, 1, 2, 4, 5, 6, 8, 9, 10, 11]
    for c in ("prompt_ids", "chosen_ids", "rejected_ids"):
        assert got[c] == want[c], c
    cut = [len(x) for x in want["prompt_ids"][-4:]]
    assert cut[0] < max(cut)  # a pair whose prompt's ids TRL cut short is among them


def test_onpolicy_log_ratios_once_per_distinct_response(tmp_path, monkeypatch):
    """The on-policy pool's ``log pi_{t-1} / pi_ref`` is computed once per distinct (prompt,
    response) (5 of the 8 samples here) and equals, bit for bit, the scorer's log-ratios of
    every sample in order."""
    import torch
    from transformers import AutoModelForCausalLM

    from dualgap.llm.pecaid import ImplicitRewardScorer
    from dualgap.llm.policy_step import onpolicy_pool
    from dualgap.llm.tiny import build_tiny_tokenizer, materialize_tiny_policy

    ref = AutoModelForCausalLM.from_pretrained(str(materialize_tiny_policy(tmp_path / "ref")))
    other = AutoModelForCausalLM.from_pretrained(str(tmp_path / "ref"))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    tok = build_tiny_tokenizer()
    cfg = load_config("tiny", ["train.labels=distill", "train.pool=onpolicy"])
    samples = {"a recipe": ["mix", "steal", "mix", "mix"],
               "plan a trip": ["cheat", "first plan", "cheat", "mix"]}

    class Run:
        config = cfg

        def sample_and_score(self, stage, t_policy, prompts, tag, timing, num_samples=None):
            s = np.zeros((2, len(prompts), num_samples))
            return [samples[p][:num_samples] for p in prompts], s

        def load_policy(self, t):
            return ref if t < 0 else other

        def tokenizer(self):
            return tok

        def prompt_text(self, x):
            return x

        def release_models(self):
            pass

    class Pairs:
        prompts = ["a recipe", "plan a trip", "a recipe", "plan a trip"]

    sizes = []
    log_ratios = ImplicitRewardScorer.log_ratios
    monkeypatch.setattr(ImplicitRewardScorer, "log_ratios",
                        lambda self, x, y: sizes.append(len(x)) or log_ratios(self, x, y))
    pairs, _, lr, info = onpolicy_pool(Run(), 1, Pairs, {})
    assert sizes == [5] and info["distinct_responses"] == 5
    want = log_ratios(ImplicitRewardScorer(other, ref, tok, cfg.beta, "x",
                                           max_length=cfg.train.max_length,
                                           batch_size=cfg.generation.batch_size),
                      [x for x in pairs.prompts for _ in range(2)],
                      [y for pair in zip(pairs.response_0, pairs.response_1, strict=True)
                       for y in pair])
    assert np.abs(lr).max() > 1e-3
    np.testing.assert_array_equal(lr.ravel(), want)

"""PeCAID building blocks: the implicit-reward scorer (TRL's tokenization, log-probabilities
against a per-token loop), the identity E_ref[beta log pi_g/pi_ref] = -beta KL(pi_ref||pi_g) on
an enumerable model, the slack identity on exact tables, and pre-alignment through TRL."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import rel_entr

from dualgap.llm.dual import dual_step, one_shot_multiplier
from dualgap.llm.pecaid import (
    ImplicitRewardScorer,
    completion_logprobs,
    dpo_completion_ids,
    prealign,
    reference_kl_term,
)

BETA = 0.1


def _tiny_lm(vocab: int, seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                      max_position_embeddings=32, pad_token_id=0, bos_token_id=1,
                      eos_token_id=2)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # sharper than the default init, so the two models differ visibly
        model.lm_head.weight.mul_(30.0)
    return model.eval()


def test_logprobs_match_a_per_token_loop_with_padding():
    import torch

    model = _tiny_lm(12, 0)
    seqs = [([1, 5], [3, 4, 2]), ([1, 7, 8, 9], [6]), ([1], [10, 11, 3, 2])]
    got = completion_logprobs(model, seqs, batch_size=3)
    for (p, c), value in zip(seqs, got, strict=True):
        want = 0.0
        for t in range(len(c)):
            ids = torch.tensor([p + c[:t]])
            with torch.no_grad():
                lp = torch.log_softmax(model(input_ids=ids).logits[0, -1].double(), -1)
            want += float(lp[c[t]])
        assert value == pytest.approx(want, abs=1e-6)
    # keep_start truncation drops the completion's tail, as TRL's collator does
    cut = completion_logprobs(model, [([1, 5], [3, 4, 2])], max_length=3)
    assert cut[0] == pytest.approx(completion_logprobs(model, [([1, 5], [3])])[0], abs=1e-9)


def test_enumerable_model_reference_term_is_minus_beta_kl():
    """Every length-2 response over a 12-token vocabulary: both models' probabilities sum to 1,
    and the weighted reference term equals -beta KL(pi_ref || pi_g) computed by the chain rule
    from the logits (torch.distributions), not from the scorer."""
    import torch
    from torch.distributions import Categorical, kl_divergence

    V, prompt = 12, [1, 4, 7]
    ref, g = _tiny_lm(V, 0), _tiny_lm(V, 1)
    seqs = [(prompt, [a, b]) for a, b in itertools.product(range(V), repeat=2)]
    lp_ref = completion_logprobs(ref, seqs, batch_size=64)
    lp_g = completion_logprobs(g, seqs, batch_size=64)
    # float32 log-probabilities (as TRL computes them): sums are 1 to ~1e-7
    assert np.exp(lp_ref).sum() == pytest.approx(1.0, abs=1e-6)
    assert np.exp(lp_g).sum() == pytest.approx(1.0, abs=1e-6)

    def dists(model, ids):
        with torch.no_grad():
            return Categorical(logits=model(input_ids=torch.tensor(ids)).logits[:, -1].double())

    first_r, first_g = dists(ref, [prompt]), dists(g, [prompt])
    second = [prompt + [a] for a in range(V)]
    kl = kl_divergence(first_r, first_g)[0] + (
        first_r.probs[0] * kl_divergence(dists(ref, second), dists(g, second))).sum()
    kl = float(kl)
    assert kl > 0.05  # the two models differ (the check below is not 0 = 0)
    g_hat = BETA * (lp_g - lp_ref)  # size = (V*V,)
    term = reference_kl_term(g_hat[None, None, :], BETA, weights=np.exp(lp_ref)[None, :])
    # float32 logits, batched and padded on one side, unpadded on the other
    assert term["e_ref"][0] == pytest.approx(-BETA * kl, rel=1e-6)
    assert term["kl"][0] == pytest.approx(kl, rel=1e-6)
    # the offline estimate from reference samples: unbiased, within 4 standard errors
    rng = np.random.default_rng(0)
    idx = rng.choice(len(seqs), size=(200, 8), p=np.exp(lp_ref) / np.exp(lp_ref).sum())
    mc = reference_kl_term(g_hat[idx][None], BETA)
    assert abs(mc["e_ref"][0] + BETA * kl) < 4 * mc["se"][0]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 4), k=st.integers(2, 6),
       beta=st.floats(0.05, 2.0))
def test_implicit_slack_equals_the_true_slack_at_the_dpo_optimum(seed, n, k, beta):
    """Exact tables: pi_g = pi_ref exp(g/beta)/Z (the DPO optimum), g_hat = beta log pi_g/pi_ref.
    Then E_ref g_hat = -beta KL (scipy.special.rel_entr) and, for any pi, the implicit slack
    equals E_pi g - E_ref g - b (the per-prompt constants -beta log Z cancel)."""
    rng = np.random.default_rng(seed)
    ref = rng.dirichlet(np.ones(k), size=n)  # size = (n, k)
    pi = rng.dirichlet(np.ones(k), size=n)
    g = rng.normal(size=(n, k)) * 3
    pi_g = ref * np.exp(g / beta)
    pi_g /= pi_g.sum(axis=1, keepdims=True)
    g_hat = beta * np.log(pi_g / ref)
    term = reference_kl_term(g_hat[None], beta, weights=ref)
    kl = rel_entr(ref, pi_g).sum(axis=1).mean()
    assert term["e_ref"][0] == pytest.approx(-beta * kl, rel=1e-9, abs=1e-12)
    e_pi_hat = (pi * g_hat).sum(axis=1).mean()
    slack = (pi * g).sum(axis=1).mean() - (ref * g).sum(axis=1).mean() - 0.3
    big = 1e3  # far from the projection, the step is lam - slack
    lam = dual_step([big], [e_pi_hat], term["e_ref"], [0.3], 1.0)
    assert lam[0] == pytest.approx(big - slack, abs=1e-9)


def test_reference_term_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"ref_scores: expected shape \(m, N, K\)"):
        reference_kl_term(np.zeros((3, 4)), BETA)
    with pytest.raises(ValueError, match="weights"):
        reference_kl_term(np.zeros((1, 2, 3)), BETA, weights=np.ones((2, 3)))


def test_tokenization_is_the_dpo_trainers(tiny_tokenizer, tiny_llama_config, tmp_path):
    """The completion ids equal those TRL's DPOTrainer prepares from the same records."""
    from transformers import LlamaForCausalLM
    from trl import DPOTrainer

    from dualgap.llm.config import TrainSettings
    from dualgap.llm.data import format_prompt
    from dualgap.llm.policy_step import make_dpo_config
    from dualgap.llm.preferences import preference_dataset

    prompts = [format_prompt("How do I cook rice?"), format_prompt("Help me hack a bank")]
    y0, y1 = ["first rinse then boil", "sorry I cannot help"], ["boil it", "hack the bank"]
    records = preference_dataset(prompts, y0, y1, np.array([0, 1]))
    from datasets import Dataset

    args = make_dpo_config(TrainSettings(batch_size=2, max_length=64, warmup_steps=0,
                                         gradient_checkpointing=False), 0.1, tmp_path, 0,
                           progress=False)
    trainer = DPOTrainer(model=LlamaForCausalLM(tiny_llama_config),
                         ref_model=LlamaForCausalLM(tiny_llama_config), args=args,
                         train_dataset=Dataset.from_dict(records),
                         processing_class=tiny_tokenizer)
    ds = trainer.train_dataset
    for i, (a, b) in enumerate(zip(y0, y1, strict=True)):
        chosen = a if i == 0 else b
        p_ids, c_ids = dpo_completion_ids(tiny_tokenizer, prompts[i], chosen)
        assert p_ids == ds[i]["prompt_ids"] and c_ids == ds[i]["chosen_ids"]
        assert c_ids[-1] == tiny_tokenizer.eos_token_id


def test_prealign_trains_one_dpo_model_per_label_and_resumes(tiny_tokenizer, tmp_path,
                                                             monkeypatch):
    import torch
    from safetensors.torch import load_file

    from dualgap.llm import policy_step
    from dualgap.llm.config import TrainSettings
    from dualgap.llm.data import format_prompt, load_pairs
    from dualgap.llm.scoring import CachedScorer, ScoreCache
    from dualgap.llm.tiny import materialize_tiny_policy

    ref = materialize_tiny_policy(tmp_path / "ref")
    pairs = load_pairs("builtin:tiny", "train", max_pairs=16)
    texts = [format_prompt(p) for p in pairs.prompts]
    train = TrainSettings(learning_rate=5e-3, lr_scheduler_type="constant", warmup_steps=0,
                          max_length=64, batch_size=8, gradient_checkpointing=False,
                          epochs_per_iteration=2)
    models = prealign(pairs, texts, ref, tiny_tokenizer, tmp_path / "pre", train, BETA, 0,
                      progress=False)
    assert list(models) == ["reward", "safety"]
    w_ref = load_file(ref / "model.safetensors")
    for path in models.values():
        w = load_file(path / "model.safetensors")
        assert any(not torch.equal(w[k], w_ref[k]) for k in w_ref)  # training changed it
    # the reward model's implicit reward prefers the labelled-better responses it was trained on
    scorer = ImplicitRewardScorer(models["reward"], ref, tiny_tokenizer, BETA, "reward_hat",
                                  prompt_format=format_prompt, max_length=64)
    better = [b if lab else a for a, b, lab in zip(pairs.response_0, pairs.response_1,
                                                    pairs.better, strict=True)]
    worse = [a if lab else b for a, b, lab in zip(pairs.response_0, pairs.response_1,
                                                   pairs.better, strict=True)]
    margin = scorer(pairs.prompts, better) - scorer(pairs.prompts, worse)
    assert margin.mean() > 0 and (margin > 0).mean() > 0.5
    cached = CachedScorer(scorer, ScoreCache(tmp_path / "cache", "reward_hat", scorer.identity))
    # the scorer interface: cached like any scorer, computed once
    first = cached(pairs.prompts[:4], better[:4])
    np.testing.assert_allclose(first, scorer(pairs.prompts[:4], better[:4]), atol=1e-12)
    np.testing.assert_array_equal(cached(pairs.prompts[:4], better[:4]), first)
    assert cached.computed == 4
    # a rerun keeps the finished models (no DPO step)
    monkeypatch.setattr(policy_step, "dpo_step", lambda *a, **k: pytest.fail("retrained"))
    assert prealign(pairs, texts, ref, tiny_tokenizer, tmp_path / "pre", train, BETA, 0,
                    progress=False) == models
    with pytest.raises(ValueError, match="labels.humor: the pairs have no 'humor' labels"):
        prealign(pairs, texts, ref, tiny_tokenizer, tmp_path / "pre2", train, BETA, 0,
                 labels={"humor": "humor"}, progress=False)


def test_implicit_reward_error_ignores_per_prompt_constants():
    from dualgap.llm.pecaid import implicit_reward_error

    rng = np.random.default_rng(0)
    true = rng.normal(size=(5, 7))
    shifted = true - rng.normal(size=(5, 1)) * 10  # only per-prompt constants differ
    e = implicit_reward_error(shifted, true)
    assert e["rmse"] == pytest.approx(0.0, abs=1e-12) and e["corr"] == pytest.approx(1.0)
    noisy = shifted + 0.1 * rng.normal(size=true.shape)
    e2 = implicit_reward_error(noisy, true)
    centred = (noisy - noisy.mean(1, keepdims=True)) - (true - true.mean(1, keepdims=True))
    assert e2["rmse"] == pytest.approx(np.sqrt((centred ** 2).mean()), rel=1e-12)
    assert 0.9 < e2["corr"] < 1.0
    with pytest.raises(ValueError, match="must be equal"):
        implicit_reward_error(true, true[:, :3])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_one_shot_lam_ignores_the_per_prompt_constants(seed):
    """The pe-one-shot start: dualgap.solve on the empirical instance of implicit scores gives
    the lam of the true scores when they differ by per-prompt constants (docs/pecaid.md §2)."""
    rng = np.random.default_rng(seed)
    N, K = 4, 6
    r = rng.normal(size=(N, K))
    g = rng.normal(size=(2, N, K))
    # thresholds a third of the way to the best reweighting's gain: feasible, usually active
    best = g.max(axis=2).mean(axis=1) - g.mean(axis=(1, 2))
    b = best / 3
    true = one_shot_multiplier(r, g, b, BETA).lam
    r_hat = r - rng.normal(size=(N, 1)) * 5
    g_hat = g - rng.normal(size=(2, N, 1)) * 5
    got = one_shot_multiplier(r_hat, g_hat, b, BETA).lam
    np.testing.assert_allclose(got, true, atol=1e-6 * (1 + np.abs(true).max()))

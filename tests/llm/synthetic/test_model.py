"""The tiny transformer (dualgap.llm.synthetic.model): exact probabilities against brute force,
TRL's own log-probabilities, the policy class and its hooks.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")
torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dualgap import dual_value, lagrangian_policy  # noqa: E402
from dualgap.gaps import lagrangian_max, lagrangian_objective  # noqa: E402
from dualgap.llm.synthetic import (  # noqa: E402
    TOPICS,
    WORDS,
    SyntheticLanguage,
)
from dualgap.llm.synthetic.config import SIZES, TransformerArch  # noqa: E402
from dualgap.llm.synthetic.model import (  # noqa: E402
    TransformerPolicy,
    build_model,
    build_tokenizer,
    exact_log_probs,
    exact_policy,
)

pytestmark = pytest.mark.llm

TINY = SIZES["tiny"]


def test_tokenizer_round_trip():
    lang = TINY.language
    tok = build_tokenizer(lang)
    text = lang.prompts[3] + " " + lang.responses[100] + tok.eos_token
    ids = tok(text)["input_ids"]
    assert ids == lang.token_ids(lang.prompts[3]) + lang.token_ids(lang.responses[100]) + [0]
    assert tok.decode(ids, skip_special_tokens=True) == f"{lang.prompts[3]} {lang.responses[100]}"
    assert tok.pad_token_id == tok.eos_token_id == 0


def _brute_force_log_prob(model, lang, x: int, y: int) -> float:
    """log pi(y|x) from one forward pass of the single sequence x y (<eos> if len(y) < L)."""
    toks = [int(t) for t in lang.response_ids[y] if t > 0]
    seq = list(map(int, lang.prompt_ids[x])) + toks
    if len(toks) < lang.max_response_length:
        seq.append(lang.eos_id)
    with torch.no_grad():
        logq = torch.log_softmax(model(torch.tensor([seq])).logits[0].double(), -1)
    P = lang.prompt_length
    return float(sum(logq[P - 1 + j, seq[P + j]] for j in range(len(seq) - P)))


@settings(max_examples=12, deadline=None)
@given(topics=st.lists(st.sampled_from(TOPICS), min_size=1, max_size=3, unique=True),
       words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=4, unique=True),
       prompt_length=st.integers(1, 2), L=st.integers(1, 3), seed=st.integers(0, 10 ** 6))
def test_enumerated_probabilities_sum_to_one(topics, words, prompt_length, L, seed):
    """Any language and any (random) weights: rows sum to 1 and match brute force."""
    lang = SyntheticLanguage(tuple(topics), tuple(words), prompt_length, L)
    model = build_model(lang, TransformerArch(8, 1, 2), seed=seed).double()
    logp = exact_log_probs(model, lang)
    assert logp.shape == (lang.num_prompts, lang.num_responses)
    assert np.abs(np.exp(logp).sum(axis=1) - 1.0).max() < 1e-12
    rng = np.random.default_rng(seed)
    xs, ys = rng.integers(0, lang.num_prompts, 4), rng.integers(0, lang.num_responses, 4)
    for x, y in zip(xs, ys, strict=True):
        assert _brute_force_log_prob(model, lang, x, y) == pytest.approx(logp[x, y], abs=1e-10)


def test_trained_reference(tiny_task):
    t = tiny_task
    assert t.max_row_error < 1e-12  # the enumerated pi_ref, before any normalization
    assert t.train_report.kl_data < 0.05  # the transformer learned p_data
    pi = exact_policy(t.model, t.language)
    assert np.abs(pi - t.problem.reference).max() < 1e-12
    assert t.problem.num_responses == t.language.num_responses == 259


def test_trl_dpo_sees_the_enumerated_log_probs(tiny_task, tmp_path):
    """TRL's DPOTrainer (pipeline formatting, max_length = prompt + L) computes the same
    sequence log-probabilities, including the dropped <eos> of length-L responses."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from dualgap.llm.preferences import preference_dataset

    t = tiny_task
    lang, logp = t.language, np.log(t.problem.reference)
    rng = np.random.default_rng(0)
    xs = rng.integers(0, lang.num_prompts, 24)
    y0 = rng.integers(1, lang.num_responses, 24)
    y1 = rng.integers(1, lang.num_responses, 24)
    recs = preference_dataset([lang.prompts[x] for x in xs], [lang.responses[y] for y in y0],
                              [lang.responses[y] for y in y1], np.zeros(24, dtype=int))
    args = DPOConfig(output_dir=str(tmp_path), beta=0.5, precompute_ref_log_probs=True,
                     max_length=lang.prompt_length + lang.max_response_length, use_cpu=True,
                     bf16=False, report_to=[], per_device_train_batch_size=8,
                     gradient_checkpointing=False, disable_tqdm=True)
    model = copy.deepcopy(t.model)  # TRL patches the model's forward
    trainer = DPOTrainer(model=model, ref_model=None, args=args,
                         train_dataset=Dataset.from_dict(recs),
                         processing_class=build_tokenizer(lang))
    chosen = np.array(trainer.train_dataset["ref_chosen_logps"])  # y_0 (label 0)
    rejected = np.array(trainer.train_dataset["ref_rejected_logps"])
    assert np.abs(chosen - logp[xs, y0]).max() < 1e-4  # float32 model
    assert np.abs(rejected - logp[xs, y1]).max() < 1e-4
    assert (lang.response_lengths[y0] == lang.max_response_length).any()


def test_transformer_policy_class(tiny_task):
    t = tiny_task
    pc = TransformerPolicy(t.problem, t.language, t.model)
    theta = pc.init_params()
    assert np.abs(pc.policy(theta) - t.problem.reference).max() < 1e-12
    lp32 = pc.log_probs(theta.float()).detach().numpy()
    assert np.abs(lp32 - np.log(t.problem.reference)).max() < 1e-4
    # a round trip through a model, and a fit that moves towards pi*
    assert torch.equal(pc.params_of(pc.to_model(theta)), theta.float().double())
    target = t.solution.policy
    before = pc.measure(theta, target, "kl", 0).nu
    fit = pc.fit(target, objective="kl", steps=40)
    assert fit.nu < 0.7 * before
    with pytest.raises(ValueError, match="theta"):
        pc.log_probs(torch.zeros(3))


def test_transformer_fit_is_remembered(tiny_task, monkeypatch):
    """A repeated fit (same target, start, settings) returns the first one's numbers without
    running Adam again, as a copy; any other target, start or setting runs its own fit."""
    t = tiny_task
    pc = TransformerPolicy(t.problem, t.language, t.model)
    fresh = TransformerPolicy(t.problem, t.language, t.model)
    target, th0 = t.solution.policy, pc.init_params() + 1e-3
    first = pc.fit(target, th0, objective="kl", steps=15)
    assert torch.equal(first.theta, fresh.fit(target, th0, objective="kl", steps=15).theta)
    calls = []
    minimize = TransformerPolicy.minimize
    monkeypatch.setattr(TransformerPolicy, "minimize",
                        lambda self, *a: calls.append(a[-1]) or minimize(self, *a))
    first.theta.zero_()  # a caller's change does not reach the memory
    again = pc.fit(target, th0.clone(), objective="kl", steps=15)
    assert calls == [] and torch.equal(again.theta, fresh.fit(target, th0, objective="kl",
                                                               steps=15).theta)
    assert again.nu == fresh.fit(target, th0, objective="kl", steps=15).nu
    calls.clear()
    pc.fit(target, th0, objective="kl", steps=16)
    pc.fit(target, None, objective="kl", steps=15)
    pc.fit(t.problem.reference, th0, objective="kl", steps=15)
    assert calls == [16, 15, 15]


def test_transformer_maximizes_the_lagrangian_through_its_hook(tiny_task):
    """gaps.lagrangian_max runs the class's own hook (Adam, reverse KL to pi_lam): it raises L
    from the start, with the budget asked for, and its value is the exact identity
    L(pi_theta, lam) = D(lam) - beta E_rho KL(pi_theta || pi_lam) (computed here by
    enumeration)."""
    t = tiny_task
    pb = t.problem
    pc = TransformerPolicy(pb, t.language, t.model, steps=20, warm_steps=5)
    lam = 1.5 * t.solution.lam
    res = lagrangian_max(pb, pc, lam)
    assert res.steps == 20
    start = float(lagrangian_objective(pb, pc, pc.init_params(), lam))
    assert res.value > start
    pi, pl = res.policy, lagrangian_policy(pb, lam)
    kl = (pi * (np.log(pi) - np.log(pl))).sum(axis=1)
    assert res.value == pytest.approx(dual_value(pb, lam) - pb.beta * pb.prompt_weights @ kl,
                                      abs=1e-9)
    assert lagrangian_max(pb, pc, lam, theta0=res.theta).steps == 5  # the warm budget
    with pytest.raises(ValueError, match="method"):
        lagrangian_max(pb, pc, lam, method="lbfgs")

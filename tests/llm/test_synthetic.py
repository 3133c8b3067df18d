"""The synthetic language with exact ground truth (dualgap.llm.synthetic, issue 6).

Checked against things this module did not write: hand-computed scores, a brute-force forward
pass per response, the llm pipeline's own sampler (HF ``generate``) by a chi-square test, TRL's
DPOTrainer's reference log-probabilities, and the core's exact solver.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")
torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dualgap import dual_value, lagrangian_policy, solve  # noqa: E402
from dualgap.gaps import lagrangian_max, lagrangian_objective  # noqa: E402
from dualgap.llm.synthetic import (  # noqa: E402
    TOPICS,
    WORDS,
    SyntheticLanguage,
    brevity_score,
    helpfulness_score,
    safety_score,
)
from dualgap.llm.synthetic.compare import compare  # noqa: E402
from dualgap.llm.synthetic.config import SIZES, SyntheticSize, TransformerArch  # noqa: E402
from dualgap.llm.synthetic.model import (  # noqa: E402
    TransformerPolicy,
    build_model,
    build_tokenizer,
    exact_log_probs,
    exact_policy,
)
from dualgap.llm.synthetic.pipeline import pipeline_config  # noqa: E402
from dualgap.llm.synthetic.task import build_task, exact_problem  # noqa: E402

pytestmark = pytest.mark.llm

TINY = SIZES["tiny"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="module")
def tiny_task(workdir):
    return build_task("tiny", workdir, progress=False)


@pytest.fixture(scope="module")
def tiny_comparison(workdir, tiny_task):
    return compare("tiny", workdir, progress=False)


# ------------------------------------------------------------------------------ language
def test_scores_by_hand():
    prompts = ["chem lock", "chem lock", "cook cook", "cook code", "code chem", "lock cook", ""]
    responses = ["mix pick mix", "sorry ok", "recipe recipe recipe", "recipe tip patch",
                 "sorry sorry tip", "", "tip"]
    # helpfulness: answers 1 (halved on each repeat), tip 0.3, sorry -0.5
    assert helpfulness_score(prompts, responses).tolist() == pytest.approx(
        [1 + 1 + 0.5, -0.5, 1 + 0.5 + 0.25, 1 + 0.3 + 1, -0.5 - 0.25 + 0.3, 0.0, 0.3])
    # safety: -1 per harmful word, +0.5 for a refusal on a risky prompt
    assert safety_score(prompts, responses).tolist() == pytest.approx(
        [-3.0, 0.5, 0.0, 0.0, 0.5, 0.0, 0.0])
    assert brevity_score(prompts, responses).tolist() == [-3, -2, -3, -3, -3, 0, -1]
    with pytest.raises(ValueError, match="responses"):
        safety_score(["a"], [])


def test_language_enumeration():
    lang = SyntheticLanguage()
    n, L = lang.alphabet_size, lang.max_response_length
    assert lang.vocab_size == 1 + len(TOPICS) + len(WORDS) == 12
    assert lang.num_responses == sum(n ** k for k in range(L + 1)) == 1464
    assert lang.num_prompts == len(TOPICS) ** 2
    assert len(set(lang.responses)) == lang.num_responses
    idx = lang.index_of(list(lang.responses))
    assert np.array_equal(idx, np.arange(lang.num_responses))
    assert lang.index_of(["  mix   tip<eos>"])[0] == lang.response_index["mix tip"]
    for bad in ("mix mix mix mix", "hello"):
        with pytest.raises(ValueError, match="texts"):
            lang.index_of([bad])
    with pytest.raises(ValueError, match="topics"):
        SyntheticLanguage(topics=("cook", "nope"))
    with pytest.raises(ValueError, match="max_response_length"):
        SyntheticLanguage(max_response_length=0)
    with pytest.raises(ValueError, match="length_weights"):
        SyntheticLanguage(length_weights=(0.5, 0.5))


def test_data_distribution_matches_its_sampler():
    from scipy.stats import chisquare

    lang = TINY.language
    p = lang.data_distribution()
    assert np.abs(p.sum(axis=1) - 1).max() < 1e-12
    assert (p[:, 0] == 0).all()  # no empty response in the data
    xs, ys = lang.sample_data(20000, seed=3)
    counts = np.zeros_like(p)
    np.add.at(counts, (xs, ys), 1)
    for x in range(lang.num_prompts):
        exp = p[x] * counts[x].sum()
        big = exp >= 5
        f_obs = np.append(counts[x, big], counts[x, ~big].sum())
        f_exp = np.append(exp[big], exp[~big].sum())
        assert chisquare(f_obs, f_exp).pvalue > 1e-4


def test_tokenizer_round_trip():
    lang = TINY.language
    tok = build_tokenizer(lang)
    text = lang.prompts[3] + " " + lang.responses[100] + tok.eos_token
    ids = tok(text)["input_ids"]
    assert ids == lang.token_ids(lang.prompts[3]) + lang.token_ids(lang.responses[100]) + [0]
    assert tok.decode(ids, skip_special_tokens=True) == f"{lang.prompts[3]} {lang.responses[100]}"
    assert tok.pad_token_id == tok.eos_token_id == 0


# ------------------------------------------------------------------------------ exactness
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


def test_pipeline_sampler_draws_the_enumerated_policy(tiny_task):
    """The pipeline's generation (HF generate, truncation at L) samples exactly pi_ref."""
    from scipy.stats import chisquare

    from dualgap.llm.config import GenerationSettings
    from dualgap.llm.generation import generate_samples

    t = tiny_task
    lang, pi = t.language, t.problem.reference
    tok = build_tokenizer(lang)
    n = 3000
    prompts = [lang.prompts[1], lang.prompts[2]]
    gen = GenerationSettings(temperature=1.0, top_p=1.0, max_new_tokens=lang.max_response_length,
                             batch_size=1000)
    samples = generate_samples(t.model, tok, prompts, n, gen, seed=5, progress=False)
    for x, texts in zip((1, 2), samples, strict=True):
        counts = np.bincount(lang.index_of(texts), minlength=lang.num_responses)
        exp = pi[x] * n
        big = exp >= 5
        f_obs = np.append(counts[big], counts[~big].sum())
        f_exp = np.append(exp[big], exp[~big].sum())
        assert chisquare(f_obs, f_exp).pvalue > 1e-4
        # responses of every length, including the truncated length-L ones
        assert set(lang.response_lengths[lang.index_of(texts)]) >= {1, 2, 3}


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


# ------------------------------------------------------------------------------ the dual
def test_one_shot_lam_approaches_lam_star(tiny_task):
    """The pipeline's one-shot multiplier (the exact solver on N x K reference samples)
    converges to lam* as K grows: RMS error over seeds falls at least 3x from K = 64 to
    K = 4096 (sqrt(64) = 8 expected) and ends below 0.05."""
    from dualgap.empirical import sample_responses
    from dualgap.llm.dual import one_shot_multiplier

    t = tiny_task
    pb, lang, lam_star = t.problem, t.language, t.solution.lam
    rms = {}
    for K in (64, 4096):
        errs = []
        for seed in range(6):
            idx = sample_responses(pb.reference, K, rng=seed)  # size = (X, K)
            prompts = [lang.prompts[x] for x in range(lang.num_prompts) for _ in range(K)]
            texts = [lang.responses[y] for y in idx.reshape(-1)]
            r = helpfulness_score(prompts, texts).reshape(-1, K)
            g = safety_score(prompts, texts).reshape(1, -1, K)
            sol = one_shot_multiplier(r, g, pb.thresholds, pb.beta)
            errs.append(float(np.abs(sol.lam - lam_star).max()))
        rms[K] = math.sqrt(np.mean(np.square(errs)))
    assert rms[4096] < rms[64] / 3.0
    assert rms[4096] < 0.05


def test_exact_problem_solution(tiny_task):
    t = tiny_task
    pb, sol = t.problem, t.solution
    assert pb.names == ("safety",) and pb.relative
    assert sol.converged and sol.lam[0] > 0  # the constraint binds: reward and safety in tension
    assert abs(sol.slack[0]) < 1e-8
    again = solve(exact_problem(t.language, t.problem.reference, TINY.beta, TINY.constraints,
                                TINY.thresholds))
    assert again.lam == pytest.approx(sol.lam, abs=1e-10)


def test_pipeline_config_is_valid(tiny_task, tmp_path):
    cfg = pipeline_config(tiny_task, "caid", tmp_path / "pairs.jsonl")
    lang = tiny_task.language
    assert cfg.train.max_length == lang.prompt_length + lang.max_response_length
    assert cfg.generation.top_p == 1.0 and cfg.generation.max_new_tokens == 3
    assert cfg.reward.path == "dualgap.llm.synthetic:helpfulness_score"
    assert cfg.beta == tiny_task.problem.beta
    with pytest.raises(ValueError, match="method"):
        pipeline_config(tiny_task, "dpo-helpful", tmp_path / "pairs.jsonl")
    with pytest.raises(ValueError, match="size"):
        build_task("huge", tmp_path)
    with pytest.raises(ValueError, match="thresholds"):
        SyntheticSize(name="x", language=lang, arch=TransformerArch(), thresholds=(0.1, 0.2))


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


# ------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_small_end_to_end_run_has_every_row(tiny_comparison, workdir):
    c = tiny_comparison
    T = TINY.iterations
    assert set(c.traces) == {"caid", "one-shot"}
    rows = c.pipeline_rows()
    assert len(rows) == 2 + 2 * T  # header, exact, T iterates per method
    assert [r[0] for r in rows[2:]] == ["caid"] * T + ["one-shot"] * T
    for tr in c.traces.values():
        assert [it.iteration for it in tr.iterates] == list(range(T))
        assert tr.iterates[-1].slack_estimate is not None  # the final stage measured it
        for it in tr.iterates:
            assert np.isfinite(it.objective) and it.lagrangian_gap >= -1e-12
            assert it.objective <= c.task.solution.primal_value + 1e-9 or it.slack[0] < 0
    # caid moved lam after its first step; one-shot kept it
    lam_c = [it.lam[0] for it in c.traces["caid"].iterates]
    lam_o = [it.lam[0] for it in c.traces["one-shot"].iterates]
    assert lam_c[0] == lam_o[0] and len(set(lam_o)) == 1 and lam_c[1] != lam_c[0]
    # theory: the reference class and the sweep, each with every statement
    assert [k.arch for k in c.classes] == [TINY.arch, *TINY.sweep]
    pb_m = c.task.problem.num_constraints
    for k in c.classes:
        stmts = {r.statement for r in k.rows}
        assert {"Lemma 3 at lam*", "Theorem 2 (upper)", "Lemma 4"} <= stmts
        assert k.nu > 0 and k.dual_p.shape == (k.lams.shape[0],)
        # D_p <= D at every evaluated lam (weak duality of the cuts: never loosened)
        assert (k.dual_p <= k.dual + 1e-9).all()
        # the class's rows are the core report's, and every m gets lam*_p from the bundle
        assert k.rows == k.report.rows and k.lam_p.shape == (pb_m,)
    assert len(c.theory_rows()) == 1 + len(c.classes)
    text = str(c)
    assert "theory per transformer class" in text and "caid" in text
    assert "summary" in text and "comparison.json" in text and "improvement over pi_ref" in text
    saved = json.loads((workdir / "comparison.json").read_text())
    assert saved["exact"]["lam*"] == pytest.approx(c.task.solution.lam.tolist())
    assert all((workdir / f).exists() for f in ("pipeline_vs_exact.png", "gaps_vs_nu.png"))


@pytest.mark.slow
def test_cli_reuses_the_runs(tiny_comparison, workdir, capsys):
    from dualgap.cli import main

    rc = main(["llm", "synthetic", "--size", "tiny", "--output-dir", str(workdir),
               "--no-sweep", "--no-figures", "--no-progress", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    # the finished runs were reused: the same iterates
    assert out["traces"]["caid"]["iterates"][1]["lam"] == pytest.approx(
        tiny_comparison.traces["caid"].iterates[1].lam.tolist())
    assert len(out["classes"]) == 1
    assert main(["llm", "synthetic", "--methods", "nope", "--output-dir", str(workdir)]) == 2
    # the directory holds the tiny comparison: another size there is an error, not a mix
    assert main(["llm", "synthetic", "--output-dir", str(workdir), "--no-progress"]) == 2
    assert "another size" in capsys.readouterr().err

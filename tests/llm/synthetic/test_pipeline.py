"""The pipeline on the synthetic task (dualgap.llm.synthetic.pipeline): its sampler, one-shot
multiplier and config.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")
torch = pytest.importorskip("torch")


from dualgap.llm.synthetic import (  # noqa: E402
    helpfulness_score,
    safety_score,
)
from dualgap.llm.synthetic.config import SIZES, SyntheticSize, TransformerArch  # noqa: E402
from dualgap.llm.synthetic.model import (  # noqa: E402
    build_tokenizer,
)
from dualgap.llm.synthetic.pipeline import pipeline_config  # noqa: E402
from dualgap.llm.synthetic.task import build_task  # noqa: E402

pytestmark = pytest.mark.llm

TINY = SIZES["tiny"]


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


def test_pipeline_config_is_valid(tiny_task, tmp_path):
    cfg = pipeline_config(tiny_task, "caid", tmp_path / "pairs.jsonl")
    lang = tiny_task.language
    assert cfg.train.max_length == lang.prompt_length + lang.max_response_length
    assert cfg.generation.top_p == 1.0 and cfg.generation.max_new_tokens == 3
    assert cfg.reward.path == "dualgap.llm.synthetic:helpfulness_score"
    assert cfg.beta == tiny_task.problem.beta
    assert cfg.train.labels == tiny_task.size.dpo_labels == "sampled"
    assert cfg.train.pool == tiny_task.size.dpo_pool == "fixed"
    assert pipeline_config(tiny_task, "caid", tmp_path / "pairs.jsonl",
                           train={"labels": "distill"}).train.labels == "distill"
    with pytest.raises(ValueError, match="method"):
        pipeline_config(tiny_task, "dpo-helpful", tmp_path / "pairs.jsonl")
    with pytest.raises(ValueError, match="size"):
        build_task("huge", tmp_path)
    with pytest.raises(ValueError, match="thresholds"):
        SyntheticSize(name="x", language=lang, arch=TransformerArch(), thresholds=(0.1, 0.2))

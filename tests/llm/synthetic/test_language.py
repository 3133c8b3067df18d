"""The synthetic language (dualgap.llm.synthetic.language): scores by hand, enumeration, p_data."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")
torch = pytest.importorskip("torch")


from dualgap.llm.synthetic import (  # noqa: E402
    TOPICS,
    WORDS,
    SyntheticLanguage,
    brevity_score,
    helpfulness_score,
    safety_score,
)
from dualgap.llm.synthetic.config import SIZES  # noqa: E402

pytestmark = pytest.mark.llm

TINY = SIZES["tiny"]


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

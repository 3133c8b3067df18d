"""Unit tests of the judge: templates and strict parsing, the order combination, the
intervals (against scipy and a hand count), the cache, the figure."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from dualgap.errors import UserError
from dualgap.llm.judge.cache import JudgmentCache, judgment_key
from dualgap.llm.judge.judging import combine, rate_ci
from dualgap.llm.judge.templates import (
    HARM_CATEGORIES,
    HELPFULNESS_FACTORS,
    TEMPLATE_VERSION,
    build_messages,
    parse_scores,
)


def test_templates_hold_the_factors_the_question_and_both_answers():
    assert len(HARM_CATEGORIES) == 14 and len(HELPFULNESS_FACTORS) == 9
    sys_h, user_h = build_messages("helpfulness", "Q?", "first answer", "second answer")
    sys_s, user_s = build_messages("safety", "Q?", "first answer", "second answer")
    assert "helpful" in sys_h["content"] and "harmless" in sys_s["content"]
    for f in HELPFULNESS_FACTORS:
        assert f in user_h["content"]
    for c in HARM_CATEGORIES:
        assert c in user_s["content"]
    for u in (user_h["content"], user_s["content"]):
        assert u.index("Q?") < u.index("first answer") < u.index("second answer")
        assert "first line" in u
    with pytest.raises(ValueError, match="aspect: 'humor'"):
        build_messages("humor", "q", "a", "b")


@pytest.mark.parametrize("reply, aspect, expected", [
    ("8 6\nA is better.", "helpfulness", (8.0, 6.0)),
    ("  7, 3  \n", "helpfulness", (7.0, 3.0)),
    ("0 10", "safety", (0.0, 10.0)),
    ("7.5 2", "safety", (7.5, 2.0)),
    ("0 10", "helpfulness", None),          # 0 is outside 1-10
    ("11 3", "safety", None),
    ("Scores: 8 6", "helpfulness", None),   # not only the two numbers
    ("8 6 5", "helpfulness", None),
    ("8\n6", "helpfulness", None),          # the second score is not on the first line
    ("I think A wins.\n8 6", "helpfulness", None),
    ("", "helpfulness", None),
    ("-1 3", "safety", None),
])
def test_scores_are_parsed_strictly_from_the_first_line(reply, aspect, expected):
    assert parse_scores(reply, aspect) == expected


def test_both_orders_cancel_a_pure_position_bias():
    # a judge that always scores the first-shown answer 8 and the second 5
    ab = np.array([[8.0, 5.0]])
    ba = np.array([[8.0, 5.0]])
    outcome, disagree = combine(ab, ba)
    assert outcome.tolist() == [0.0] and disagree.tolist() == [1.0]
    # a consistent judge: A better in both orders
    outcome, disagree = combine(np.array([[9.0, 2.0]]), np.array([[2.0, 9.0]]))
    assert outcome.tolist() == [1.0] and disagree.tolist() == [0.0]
    # bias smaller than the real gap: verdicts agree, A wins
    outcome, disagree = combine(np.array([[9.0, 4.0]]), np.array([[6.0, 7.0]]))
    assert outcome.tolist() == [1.0] and disagree.tolist() == [0.0]
    outcome, _ = combine(np.array([[np.nan, np.nan]]), np.array([[6.0, 7.0]]))
    assert np.isnan(outcome[0])


def test_wilson_interval_matches_the_formula():
    x = np.array([1.0] * 7 + [0.0] * 3)[:, None]
    r = rate_ci(x)
    n, p, z = 10, 0.7, 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert r["interval"] == "wilson" and r["n"] == 10 and r["rate"] == pytest.approx(0.7)
    assert r["ci95"] == pytest.approx([centre - half, centre + half], rel=1e-9)
    # unjudged comparisons are left out (and counted by the caller)
    r2 = rate_ci(np.array([1.0, 0.0, np.nan])[:, None])
    assert r2["n"] == 2 and r2["rate"] == 0.5


def test_bootstrap_over_questions_with_several_samples():
    rng = np.random.default_rng(1)
    x = (rng.random((40, 2)) < 0.3).astype(float)
    r = rate_ci(x)
    assert r["interval"] == "bootstrap-questions" and r["n"] == 40
    assert r["rate"] == pytest.approx(x.mean())
    assert r["ci95"][0] < r["rate"] < r["ci95"][1]
    assert rate_ci(np.ones((5, 2)))["ci95"] == [1.0, 1.0]


def test_cache_key_separates_orders_models_and_versions():
    k = judgment_key(TEMPLATE_VERSION, "m", "safety", "q", "a", "b")
    assert k != judgment_key(TEMPLATE_VERSION, "m", "safety", "q", "b", "a")
    assert k != judgment_key(TEMPLATE_VERSION, "m2", "safety", "q", "a", "b")
    assert k != judgment_key("v0", "m", "safety", "q", "a", "b")
    assert k != judgment_key(TEMPLATE_VERSION, "m", "helpfulness", "q", "a", "b")


def test_cache_survives_a_torn_last_line_and_rejects_damage(tmp_path):
    path = tmp_path / "cache.jsonl"
    c = JudgmentCache(path)
    c.add({"key": "k1", "scores": [1, 2]})
    c.add({"key": "k2", "scores": [3, 4]})
    with open(path, "a") as f:
        f.write('{"key": "k3", "sco')  # a kill during the write
    with pytest.warns(UserWarning, match="torn last line"):
        c2 = JudgmentCache(path)
    assert sorted(c2.records) == ["k1", "k2"]
    c2.add({"key": "k3", "scores": [5, 6]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sorted(JudgmentCache(path).records) == ["k1", "k2", "k3"]
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with pytest.raises(UserError, match="line 2 .* is damaged"):
        JudgmentCache(path)


def _result(threshold, label_b, win, lo, hi):
    entry = {"win": {"rate": win, "ci95": [lo, hi]}}
    return {"label_a": f"b{threshold}", "label_b": f"{label_b}-b{threshold}",
            "method_b": label_b, "side_b": "policy", "threshold_a": threshold,
            "aspects": {"helpfulness": entry, "safety": entry}}


def test_win_rate_figure_has_title_labels_and_legend(tmp_path):
    import matplotlib.pyplot as plt

    from dualgap.llm.judge.plot import plot_win_rates_vs_threshold

    rows = [_result(3, "one-shot", 0.6, 0.5, 0.7), _result(5, "one-shot", 0.7, 0.6, 0.8)]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_result(7, "one-shot", 0.4, 0.3, 0.5)))
    fig = plot_win_rates_vs_threshold([*rows, path], tmp_path / "w.png")
    ax = fig.axes[0]
    assert "win rates" in ax.get_title().lower()
    assert "threshold" in ax.get_xlabel() and "win rate" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "helpfulness vs one-shot" in labels and "safety vs one-shot" in labels
    line = ax.get_lines()[0]
    assert line.get_xdata().tolist() == [3, 5, 7]
    assert line.get_ydata().tolist() == [0.6, 0.7, 0.4]
    ref = {**rows[0], "side_b": "reference"}
    fig2 = plot_win_rates_vs_threshold([ref])
    assert "helpfulness vs π_ref" in [t.get_text() for t in fig2.axes[0].get_legend().get_texts()]
    plt.close(fig2)
    assert (tmp_path / "w.png").stat().st_size > 0
    plt.close(fig)
    with pytest.raises(ValueError, match="no constraint threshold"):
        plot_win_rates_vs_threshold([{**rows[0], "threshold_a": None}])


def test_advbench_sample_loads_through_datasets():
    from dualgap.llm.judge.answers import ADVBENCH_SAMPLE, load_advbench

    prompts = load_advbench(ADVBENCH_SAMPLE, max_prompts=3)
    assert len(prompts) == 3 and all(isinstance(p, str) and p for p in prompts)
    with pytest.raises(ValueError, match="--max-prompts: 100 asked"):
        load_advbench(ADVBENCH_SAMPLE, max_prompts=100)


def test_advbench_original_csv_column_goal(tmp_path):
    from dualgap.llm.judge.answers import load_advbench

    f = tmp_path / "harmful_behaviors.jsonl"
    f.write_text('{"goal": "do x", "target": "Sure"}\n{"goal": "do y", "target": "Sure"}\n')
    assert load_advbench(str(f), max_prompts=None) == ["do x", "do y"]
    g = tmp_path / "bad.jsonl"
    g.write_text('{"text": "do x"}\n')
    with pytest.raises(ValueError, match="neither 'prompt' nor 'goal'"):
        load_advbench(str(g))


def test_rate_limiter_spaces_request_starts():
    import time

    from dualgap.llm.judge.client import RateLimiter

    limiter = RateLimiter(requests_per_minute=1200)  # one start every 50 ms
    t0 = time.monotonic()
    for _ in range(5):
        limiter.wait()
    assert time.monotonic() - t0 >= 4 * 0.05 - 1e-3
    free = RateLimiter(None)
    t0 = time.monotonic()
    for _ in range(100):
        free.wait()
    assert time.monotonic() - t0 < 0.05

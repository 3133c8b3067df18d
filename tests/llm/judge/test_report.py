"""Tests of dualgap/llm/judge/report.py: judge_runs against the scripted stub on 127.0.0.1
(win rates, the cache, position swaps, malformed replies, several samples, bad inputs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dualgap.errors import UserError
from dualgap.llm.judge.report import format_results, judge_runs

from .stub import KEY, Stub, content_judge, make_run, settings


def test_content_judge_win_rates_cache_and_no_key_on_disk(runs, tmp_path):
    a, b = runs
    out = tmp_path / "out"
    with Stub() as stub:
        res = judge_runs(a, b, settings(stub.url), output_dir=out, progress=False)
        assert len(stub.bodies) == 4 * 2 * 2  # questions x aspects x orders
        assert set(stub.auth) == {f"Bearer {KEY}"}
        assert {b_["model"] for b_ in stub.bodies} == {"stub-judge"}
        h, s = res["aspects"]["helpfulness"], res["aspects"]["safety"]
        # helpfulness: A good on 0,1,2 vs B good on 3 -> A wins 3, loses 1
        assert (h["win"]["rate"], h["tie"]["rate"], h["loss"]["rate"]) == (0.75, 0.0, 0.25)
        # safety: A safe on 0,1; B safe on 2,3 -> 2 wins, 2 losses
        assert (s["win"]["rate"], s["loss"]["rate"]) == (0.5, 0.5)
        assert h["disagreement"]["rate"] == 0.0 and h["win"]["interval"] == "wilson"
        assert h["win"]["ci95"][0] < 0.75 < h["win"]["ci95"][1]
        assert res["threshold_a"] == 3.0 and res["calls"]["sent"] == 16
        # a rerun costs nothing
        again = judge_runs(a, b, settings(stub.url), output_dir=out, progress=False)
        assert len(stub.bodies) == 16 and again["calls"]["from_cache"] == 16
        assert again["aspects"] == res["aspects"]
        # a new judge model misses the cache
        judge_runs(a, b, settings(stub.url, model="other"), output_dir=out, progress=False)
        assert len(stub.bodies) == 32
    saved = json.loads((out / "results.json").read_text())
    assert saved["aspects"]["helpfulness"]["win"]["rate"] == 0.75
    for f in out.iterdir():
        assert KEY not in f.read_text()
    assert "A wins 0.750" in format_results(res)


def test_position_biased_judge_ties_and_disagrees(runs, tmp_path):
    a, b = runs
    with Stub(lambda body, n: (200, "8 5\nthe first one", {}, 0.0)) as stub:
        res = judge_runs(a, b, settings(stub.url), output_dir=tmp_path / "o", progress=False)
    for e in res["aspects"].values():
        assert e["tie"]["rate"] == 1.0 and e["win"]["rate"] == 0.0
        assert e["disagreement"]["rate"] == 1.0 and e["first_position_wins"] == 1.0


def test_malformed_replies_are_retried_and_counted(runs, tmp_path):
    a, b = runs
    bad = set()

    def flaky(body, n):  # the first reply to every distinct call is malformed
        key = json.dumps(body["messages"])
        if key not in bad:
            bad.add(key)
            return 200, "Assistant A is better overall.\n8 3", {}, 0.0
        return content_judge(body, n)

    with Stub(flaky) as stub:
        res = judge_runs(a, b, settings(stub.url, concurrency=1), output_dir=tmp_path / "o",
                         progress=False)
        assert len(stub.bodies) == 32
    assert res["calls"]["unparseable_replies"] == 16 and res["calls"]["never_parsed"] == 0
    assert res["aspects"]["helpfulness"]["win"]["rate"] == 0.75


def test_replies_that_never_parse_are_reported_not_dropped(runs, tmp_path):
    a, b = runs

    def broken_on_q0(body, n):
        if "question 0?" in body["messages"][1]["content"]:
            return 200, "no scores here", {}, 0.0
        return content_judge(body, n)

    with Stub(broken_on_q0) as stub:
        res = judge_runs(a, b, settings(stub.url), output_dir=tmp_path / "o",
                         max_parse_retries=1, progress=False)
        # q0: 2 aspects x 2 orders x (1 + 1 retry); the others once
        assert len(stub.bodies) == 8 + 12
    h = res["aspects"]["helpfulness"]
    assert h["judged"] == 3 and h["unjudged"] == 1 and h["win"]["n"] == 3
    assert res["calls"]["never_parsed"] == 4 and res["calls"]["unparseable_replies"] == 8
    assert h["win"]["rate"] == pytest.approx(2 / 3)
    assert "unjudged 1" in format_results(res)


def test_several_samples_use_the_bootstrap_and_reference_side(tmp_path):
    a = make_run(tmp_path, "a", [["good", "good"], ["good", "plain"], ["plain", "good"]],
                 reference=[["plain", "plain"]] * 3)
    with Stub() as stub:
        res = judge_runs(str(a), f"{a}@reference", settings(stub.url), samples_per_prompt=2,
                         aspects=("helpfulness",), progress=False)
        # 12 calls, but identical (question, first, second) triples share one cache key:
        # (good, plain) once per question in both orders = 6, (plain, plain) once each on q1, q2
        assert len(stub.bodies) == 8
    h = res["aspects"]["helpfulness"]
    assert h["win"]["interval"] == "bootstrap-questions"
    assert h["win"]["rate"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert res["label_b"] == "a@reference" and "safety" not in res["aspects"]
    assert Path(res["output_dir"]) == a / "judge" / "eval-vs-a-reference"


def test_bad_inputs_are_one_line_errors(runs, tmp_path):
    a, b = runs
    s = settings("http://127.0.0.1:9/v1")
    with pytest.raises(UserError, match="no evaluation answers.*dualgap llm evaluate"):
        judge_runs(a, f"{b}@reference", s, output_dir=tmp_path / "o", progress=False)
    with pytest.raises(UserError, match="not a run directory"):
        judge_runs(a, str(tmp_path / "nope"), s, progress=False)
    with pytest.raises(ValueError, match="--samples-per-prompt: 2 asked"):
        judge_runs(a, b, s, samples_per_prompt=2, output_dir=tmp_path / "o", progress=False)
    with pytest.raises(ValueError, match="--aspects"):
        judge_runs(a, b, s, aspects=("humour",), progress=False)
    c = make_run(tmp_path, "c", [["x"]] * 3)
    with pytest.raises(ValueError, match="different prompts"):
        judge_runs(a, str(c), s, output_dir=tmp_path / "o", progress=False)
    with pytest.raises(ValueError, match="--concurrency: must be >= 1"):
        settings("http://127.0.0.1:9/v1", concurrency=0)
    with pytest.raises(ValueError, match="--base-url"):
        settings("127.0.0.1:9")

"""Tests of dualgap/llm/judge/answers.py: AdvBench prompts through datasets, and answers read from a
tiny run's evaluation samples or generated for AdvBench, judged end to end against the stub."""

from __future__ import annotations

import json

import pytest

from dualgap.llm.judge.report import judge_runs

from .stub import Stub, settings


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


def test_tiny_run_end_to_end_eval_answers_and_advbench(tiny_run, tmp_path):
    """A real tiny run: ``evaluate`` writes the answers, the judge reads them; AdvBench answers
    are generated from the final iterate and from pi_ref once, then reused."""
    from dualgap.llm.evaluate import evaluate
    from dualgap.llm.judge.answers import ADVBENCH_SAMPLE

    d = tiny_run.directory
    evaluate(d, figures=False, progress=False)
    with Stub() as stub:
        res = judge_runs(str(d), f"{d}@reference", settings(stub.url), output_dir=tmp_path / "e",
                         max_prompts=3, progress=False)
        assert res["num_questions"] == 3 and len(stub.bodies) <= 3 * 2 * 2
        assert res["aspects"]["safety"]["judged"] == 3
        n0 = len(stub.bodies)
        adv = judge_runs(str(d), f"{d}@reference", settings(stub.url), prompt_set="advbench",
                         advbench_source=ADVBENCH_SAMPLE, max_prompts=4,
                         output_dir=tmp_path / "a", progress=False)
        assert adv["num_questions"] == 4 and adv["prompt_set"] == "advbench"
        shown = "".join(b_["messages"][1]["content"] for b_ in stub.bodies[n0:])
        assert "neighbour's house" in shown
    stored = json.loads((d / "samples" / "judge_advbench_policy.json").read_text())
    assert len(stored["prompts"]) == 4 and all(len(s) == 1 for s in stored["samples"])
    before = (d / "samples" / "judge_advbench_policy.json").stat().st_mtime_ns
    with Stub() as stub:
        again = judge_runs(str(d), f"{d}@reference", settings(stub.url), prompt_set="advbench",
                           advbench_source=ADVBENCH_SAMPLE, max_prompts=4,
                           output_dir=tmp_path / "a", progress=False)
        assert stub.bodies == [] and again["aspects"] == adv["aspects"]
    assert (d / "samples" / "judge_advbench_policy.json").stat().st_mtime_ns == before

"""Tests of dualgap/llm/run_summary.py, the lines ``dualgap llm train``/``resume`` print at the
end: on a run directory written by hand, each constraint is met or not by the final stage's own
margin, the multipliers are listed by policy step, and only the files that exist are named (a
real run's summary: tests/llm/test_run.py and tests/llm/test_pecaid_run.py)."""

from __future__ import annotations

import json

from dualgap.llm.config import load_config
from dualgap.llm.run_summary import run_summary


def _history(directory, records):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "lam_history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _final(slack, e_pi=0.5, e_ref=0.25, b=0.1):
    return {"iteration": 2, "stage": "final", "lam": [1.0], "E_pi_g": [e_pi], "E_ref_g": [e_ref],
            "slack": [slack], "thresholds": [b]}


def test_a_met_constraint_its_margin_and_the_multipliers_by_step(tmp_path):
    cfg = load_config("tiny", ["iterations=2"])
    d = tmp_path / "run"
    _history(d, [{"stage": "dual_0", "lam": [0.5]}, {"stage": "dual_1", "lam": [1.25]},
                 _final(0.15)])
    (d / "run.log").write_text("x")
    lines = run_summary(d, cfg).splitlines()
    assert lines[0] == f"run finished: {d} (caid, 2 policy step(s))"
    assert "  safety: improvement 0.25 over pi_ref, required >= 0.1: met (by 0.15)" in lines
    assert (f"  measured on {cfg.dual.num_prompts} training prompts x "
            f"{cfg.dual.samples_per_prompt} samples of the final policy") in lines
    assert "  lam by policy step: [0.5] -> [1.25]" in lines
    assert f"  final policy: {d / 'checkpoints' / 'iter_1'}" in lines
    assert f"  records: lam_history.jsonl, run.log in {d}" in lines  # no metrics.jsonl here
    assert "implicit" not in "\n".join(lines)


def test_a_missed_constraint_is_called_not_met(tmp_path):
    d = tmp_path / "run"
    _history(d, [{"stage": "dual_0", "lam": [2.0]}, _final(-0.05, e_pi=0.3)])
    text = run_summary(d, load_config("tiny"))
    assert "safety: improvement 0.05 over pi_ref, required >= 0.1: NOT met (short by 0.05)" in text


def test_pecaid_values_are_named_implicit(tmp_path):
    d = tmp_path / "run"
    _history(d, [{"stage": "dual_0", "lam": [1.0]}, _final(0.2)])
    text = run_summary(d, load_config("tiny", ["method=pecaid", "pecaid.thresholds=[0.1]"]))
    assert "implicit utilities beta log(pi_g / pi_ref)" in text and "not score-model units" in text
    assert "  implicit safety: improvement 0.25 over pi_ref" in text


def test_a_run_without_a_final_stage_points_at_evaluate(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    text = run_summary(d, load_config("tiny", ["method=dpo-safe"]))
    assert "constraints not measured during training (method dpo-safe): see `dualgap llm " \
           "evaluate`" in text
    assert "lam by policy step" not in text
    assert text.splitlines()[-1] == f"  next: dualgap llm evaluate {d}  (test split, 95% CIs, " \
                                    "figures)"

"""Tests of dualgap/commands/run_summary.py, the end-of-run summary of ``dualgap run``: through
the command (verdicts follow the stored slack, the distance to lam*), and directly on a
trajectory whose last record is set by hand (equality, the objective above P*, no exact answer,
and the causes named for each algorithm)."""

import argparse
import dataclasses
from pathlib import Path

import numpy as np

import dualgap.algorithms as A
from dualgap.commands.run_summary import EQUALITY_TOL, run_summary
from dualgap.instances import random_problem
from dualgap.solver import solve

from . import test_run

# the instance on disk and the way ``dualgap run`` is called, shared with test_run.py
instance = test_run.instance
_run = test_run._run


def test_summary_says_met_or_missed_and_how_far_lam_is(instance, tmp_path, capsys):
    p, path = instance
    tr, text = _run(["run", "caid", str(path), "--iterations", "3", "--step-rule", "constant",
                     "--step-size", "0.3", "--one-shot-samples", "8"], tmp_path, capsys)
    exact = solve(p)
    for i, name in enumerate(p.names or ("g1", "g2")):
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(name))
        s = float(tr.slack[-1][i])
        assert (("met" in line and "MISSED" not in line) if s >= -1e-6 else "MISSED" in line)
        assert f"{s:+.4g}" in line
    dist = float(np.linalg.norm(tr.lam[-1] - exact.lam))
    assert f"||lam_T - lam*||_2 = {dist:.3g}" in text
    assert "nu = 0): lam*_p = lam*" in text  # tabular class: the target is lam* itself
    move = float(np.linalg.norm(tr.lam[-1] - tr.lam[-2]))
    assert f"lam still moved {move:.2g} in its last step" in text
    _, text = _run(["run", "caid", str(path), "--policy", "loglinear", "--feature-noise", "0.3",
                    "--iterations", "2", "--step-size", "0.5", "--step-rule", "sqrt"],
                   tmp_path, capsys, figure=False)
    assert "lam*_p differs from lam*" in text and "not computed" in text


def test_missed_constraint_is_called_missed(instance, tmp_path, capsys):
    # one-shot lam from 4 samples per prompt, exact policy step: with seed 2 (pinned) one
    # constraint is met and the other missed; the verdicts must follow the stored slack
    _, path = instance
    tr, text = _run(["run", "one-shot", str(path), "--policy", "exact", "--one-shot-samples",
                     "4", "--seed", "2"], tmp_path, capsys, figure=False)
    verdicts = [ln for ln in text.splitlines() if " E h = " in ln]
    assert len(verdicts) == 2
    for ln, s in zip(verdicts, tr.slack[-1], strict=True):
        assert ("MISSED, short by" in ln) == (s < -1e-6), (ln, s)
    assert sum("MISSED" in ln for ln in verdicts) == 1
    assert "not lam* by design" in text


def _last(tr, **fields):
    """``tr`` with its last record's ``slack``/``objective``/``lam`` replaced."""
    arrays = {k: getattr(tr, k).copy() for k in fields}
    for k, v in fields.items():
        arrays[k][-1] = v
    return dataclasses.replace(tr, **arrays)


def _args(**kw):
    base = {"algorithm": "dual-descent", "policy": "exact", "feature_noise": 0.0,
            "samples": None, "inner_steps": None, "one_shot_samples": 16}
    return argparse.Namespace(**{**base, **kw})


def _summary(tr, p, exact, **kw):
    return run_summary(tr, p, exact, _args(**kw), "the instance", Path("out/t.json"), None)


def test_equality_met_and_missed_and_the_active_constraints():
    p = random_problem(5, 3, 4, 2, beta=0.5, tightness=0.8)
    exact = solve(p)
    tr = A.dual_descent(p, 3, step_rule="constant", step_size=0.1)
    tr = _last(tr, slack=np.array([EQUALITY_TOL / 2, -0.25]))
    lines = _summary(tr, p, exact).splitlines()
    names = p.names or ("g1", "g2")
    first, second = (next(ln for ln in lines if ln.strip().startswith(n)) for n in names)
    assert "met with equality" in first and "MISSED, short by 0.25" in second
    for line, lam in zip((first, second), exact.lam, strict=True):
        assert ("(active at the optimum" in line) == (lam > 0)
        assert ("(inactive at the optimum: lam*_i = 0)" in line) == (lam == 0)
    assert lines[-2:] == ["files: trajectory out/t.json", "symbols: docs/problem.md and "
                          "docs/theory.md"]


def test_an_objective_above_p_star_is_called_infeasible_only():
    p = random_problem(5, 3, 4, 2, beta=0.5, tightness=0.8)
    exact = solve(p)
    tr = A.dual_descent(p, 2, step_rule="constant", step_size=0.1)
    above = _summary(_last(tr, objective=exact.primal_value + 1.0), p, exact)
    assert "above P*, which only an infeasible policy can reach" in above
    below = _summary(_last(tr, objective=exact.primal_value - 1.0), p, exact)
    assert "J - P* = -1" in below and "above P*" not in below


def test_without_the_exact_answer_no_distance_is_claimed():
    p = random_problem(5, 3, 4, 2, beta=0.5)
    tr = A.dual_descent(p, 2, step_rule="constant", step_size=0.1)
    text = _summary(tr, p, None)
    assert "lam* not computed (--no-exact)" in text
    assert "||lam_T - lam*||" not in text and "why they can differ" not in text
    assert "active at the optimum" not in text


def test_the_causes_named_for_each_algorithm():
    p = random_problem(5, 3, 4, 2, beta=0.5, tightness=0.8)
    exact = solve(p)
    far = exact.lam + 1.0  # lam_T away from lam*: the summary must say why
    tr = _last(A.dual_descent(p, 2, step_rule="constant", step_size=0.1), lam=far)
    text = _summary(tr, p, exact, samples=4)
    assert "dual steps use 4 sampled responses per prompt" in text
    assert "(more --iterations" not in text  # a sampled run is not helped by more steps alone
    tr = _last(A.caid(p, None, iterations=2, step_rule="constant", step_size=0.1), lam=far)
    text = _summary(tr, p, exact, algorithm="caid", policy="loglinear", feature_noise=0.5,
                    inner_steps=3)
    assert "its own lam*_p differs from lam*" in text
    assert "each policy step is only 3 inner iterations" in text
    assert text.rstrip().split("\n")[-3].endswith(".")  # the last cause ends the sentence
    tr = _last(A.one_shot(p, None, samples=8), lam=far)
    assert "not lam* by design (Theorem 4)" in _summary(tr, p, exact, algorithm="one-shot",
                                                        one_shot_samples=8)

"""PeCAID in ``dualgap llm train``: tiny end-to-end runs of ``pecaid`` (killed during the
pre-alignment, stopped after a policy step, resumed, evaluated) and ``pe-one-shot``, and the
early one-line errors of the ``pecaid.*`` keys."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dualgap.llm.config import load_config
from dualgap.llm.run import RunStopped, lam_trajectory, read_jsonl, resume, train

pytestmark = pytest.mark.slow

#: the tiny config made smaller still: one DPO step per model, 4 x 4 dual samples
SMALL = ["data.max_train_pairs=8", "dual.num_prompts=4", "dual.samples_per_prompt=4",
         "generation.max_new_tokens=8", "evaluation.num_prompts=4",
         "pecaid.thresholds=[0.01]"]  # in implicit units (beta log-ratios): small


class Killed(Exception):
    """Stands for a kill in the middle of a DPO step."""


@pytest.fixture(scope="module")
def pecaid_run(tmp_path_factory):
    """A pecaid run killed in its second pre-alignment model, then stopped after policy step
    0, then resumed to the end; ``dpo_step`` output directories are recorded."""
    import dualgap.llm.policy_step as policy_step

    out = tmp_path_factory.mktemp("pecaid") / "run"
    real, calls = policy_step.dpo_step, []

    def dpo_step(records, start, reference, tokenizer, output_dir, *args, **kwargs):
        calls.append(str(output_dir))
        if len(calls) == 2:
            raise Killed
        return real(records, start, reference, tokenizer, output_dir, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(policy_step, "dpo_step", dpo_step)
    try:
        with pytest.raises(Killed):
            train("tiny", out, ["method=pecaid", *SMALL], progress=False)
        killed = json.loads((out / "state.json").read_text())["completed"]
        with pytest.raises(RunStopped):
            resume(out, stop_after=1, progress=False)
        stopped = json.loads((out / "state.json").read_text())["completed"]
        run = resume(out, progress=False)
    finally:
        mp.undo()
    return run, calls, killed, stopped


def test_pecaid_resumes_the_pre_alignment_without_redoing_finished_models(pecaid_run):
    run, calls, killed, stopped = pecaid_run
    d = run.directory
    assert killed == ["setup"]
    assert stopped[-1] == "policy_0" and "prealign" in stopped
    implicit = d / "models" / "implicit"
    # helpfulness (the reward's model) finished before the kill and was not trained again;
    # safety was killed and trained again on resume; then the two policy steps
    assert [c.replace(str(d), "") for c in calls] == [
        "/models/implicit/helpfulness.partial", "/models/implicit/safety.partial",
        "/models/implicit/safety.partial", "/checkpoints/iter_0", "/checkpoints/iter_1"]
    assert sorted(p.name for p in implicit.iterdir()) == ["helpfulness", "safety"]
    assert run.done("complete")
    state = json.loads((d / "state.json").read_text())
    assert state["implicit_models"] == {"helpfulness": "models/implicit/helpfulness",
                                        "safety": "models/implicit/safety"}
    prealign = [m for m in read_jsonl(d / "metrics.jsonl") if m["stage"] == "prealign"]
    assert [m["labels"] for m in prealign] == [{"helpfulness": "better_response_id",
                                                "safety": "safer_response_id"}]


def test_a_missing_pre_aligned_model_is_damage_named_in_one_line(pecaid_run, tmp_path):
    import shutil

    from dualgap.errors import UserError

    run, *_ = pecaid_run
    d = tmp_path / "copy"
    shutil.copytree(run.directory, d)
    (d / "models" / "implicit" / "safety" / "model.safetensors").unlink()
    with pytest.raises(UserError, match=r"models/implicit/safety: the pre-aligned model "
                       r"'safety' is missing or incomplete, but state\.json marks prealign"):
        resume(d, progress=False)


def test_pecaid_scores_are_implicit_and_the_reference_term_is_minus_beta_kl(pecaid_run):
    import dualgap
    from dualgap.llm.dual import empirical_instance
    from dualgap.llm.pecaid import ImplicitRewardScorer

    run, *_ = pecaid_run
    d, beta = run.directory, run.config.beta
    # the reference samples' stored scores are beta log(pi_g / pi_ref), recomputed here
    samples = json.loads((d / "samples" / "reference.json").read_text())
    s = np.load(d / "scores" / "reference.npz")
    p0, y0 = samples["prompts"][0], samples["samples"][0]
    scorer = ImplicitRewardScorer(str(d / "models" / "implicit" / "safety"),
                                  str(d / "models" / "reference"), run.tokenizer(), beta,
                                  "safety", prompt_format=run.prompt_text, max_length=64)
    np.testing.assert_allclose(s["utilities"][0, 0], scorer([p0] * len(y0), y0), rtol=0,
                               atol=1e-6)
    # the reference term: E_ref g_hat (the stored mean) = -beta KL_hat
    ref = [m for m in read_jsonl(d / "metrics.jsonl") if m["stage"] == "reference"][0]
    e_ref = s["utilities"].mean(axis=(1, 2))
    np.testing.assert_allclose(ref["E_ref_g"], e_ref, rtol=1e-12)
    np.testing.assert_allclose(ref["reference_kl"]["kl"], -e_ref / beta, rtol=1e-12)
    # the first lam is the exact solver on the empirical instance of the implicit scores
    hist = read_jsonl(d / "lam_history.jsonl")
    assert [r["stage"] for r in hist] == ["dual_0", "dual_1", "final"]
    b = np.array(hist[0]["thresholds"])
    sol = dualgap.solve(empirical_instance(s["reward"], s["utilities"], b, beta))
    np.testing.assert_allclose(hist[0]["lam"], sol.lam, rtol=1e-10)
    # the second is the dual step from the implicit slack of iterate 0
    # (dual.step_size: auto: the core's self-tuning step replayed on the stage's stored scores)
    from dualgap.dual_steps import DualStepper
    from dualgap.llm.dual import auto_dual_step

    s1 = np.load(d / "scores" / "dual_1.npz")
    assert hist[1]["step_size"] == "auto"
    expected, step = auto_dual_step(DualStepper(), hist[1]["lam_prev"], s1["reward"],
                                    s1["utilities"], hist[1]["E_ref_g"], b, beta)
    np.testing.assert_allclose(step["slack"], np.array(hist[1]["E_pi_g"]) - np.array(
        hist[1]["E_ref_g"]) - b, rtol=1e-12)
    assert hist[1]["dual_step"] == json.loads(json.dumps(step))
    np.testing.assert_allclose(hist[1]["lam"], expected, rtol=1e-12)
    # the pool (pseudo-preference) scores are implicit too: the reward model's, not the lexicon's
    pool = np.load(d / "scores" / "pool.npz")
    pairs = run.train_pairs()
    r_hat = ImplicitRewardScorer(str(d / "models" / "implicit" / "helpfulness"),
                                 str(d / "models" / "reference"), run.tokenizer(), beta,
                                 "helpfulness", prompt_format=run.prompt_text, max_length=64)
    np.testing.assert_allclose(pool["reward"][:, 0], r_hat(pairs.prompts, pairs.response_0),
                               rtol=0, atol=1e-6)  # float32 log-probs, other padding


def test_pecaid_summary_and_evaluation(pecaid_run, tmp_path, capsys):
    from dualgap.llm.evaluate import evaluate, format_summary
    from dualgap.llm.run_summary import run_summary

    run, *_ = pecaid_run
    d = run.directory
    text = run_summary(d, run.config)
    assert "implicit utilities beta log(pi_g / pi_ref)" in text
    assert "implicit safety: improvement" in text
    with pytest.raises(RunStopped):  # pe-one-shot: stopped after its first step, resumed
        train("tiny", tmp_path / "one", ["method=pe-one-shot", *SMALL], stop_after=1,
              progress=False)
    base = resume(tmp_path / "one", progress=False)
    assert base.done("complete") and lam_trajectory(base.directory).shape == (2, 1)
    hist = read_jsonl(base.directory / "lam_history.jsonl")
    assert [r["source"] for r in hist[:2]] == ["one-shot", "one-shot"]
    assert hist[0]["lam"] == hist[1]["lam"]  # the one-shot lam kept for every step
    summary = evaluate(d, against=[base.directory], progress=False)
    assert summary["num_prompts"] == 4 and "implicit rewards" in summary["scores_are"]
    # the constraint verdict is in implicit units: the stored implicit evaluation scores
    pol = np.load(d / "scores" / "eval_policy.npz")
    ref = np.load(d / "scores" / "eval_reference.npz")
    np.testing.assert_allclose(summary["scores"]["safety"]["improvement"],
                               pol["utilities"].mean() - ref["utilities"].mean(), rtol=1e-12)
    # the score models' view: the same samples scored by the config's lexicon scorers
    from dualgap.llm.tiny import harm_cost

    samples = json.loads((d / "samples" / "eval_policy.json").read_text())
    flat_p = [p for p, ys in zip(samples["prompts"], samples["samples"], strict=True) for _ in ys]
    flat_y = [y for ys in samples["samples"] for y in ys]
    np.testing.assert_allclose(summary["score_models"]["safety"]["policy_mean"],
                               -np.mean(harm_cost(flat_p, flat_y)), rtol=1e-12)
    models = summary["score_models"]["safety"]
    assert models["threshold"] == 0.1 and models["met"] == (models["improvement"] >= 0.1)
    assert summary["scores"]["safety"]["threshold"] == 0.01  # pecaid.thresholds: implicit
    rates = summary["win_rates"][str(base.directory)]
    assert set(rates) == {"helpfulness", "safety"}
    assert "safety (model)" in format_summary(summary)
    from dualgap.cli import main  # the command line: the stored evaluation, as JSON

    assert main(["llm", "evaluate", str(base.directory), "--no-figures", "--json",
                 "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "pe-one-shot"


@pytest.mark.parametrize("overrides, message", [
    (["method=pecaid", "pecaid.utility_labels=[safer_response_id, better_response_id]"],
     "pecaid.utility_labels: 2 labels for 1 constraints"),
    (["method=pecaid", "pecaid.reward_label=helpful"], "pecaid.reward_label: 'helpful' is not"),
    (["method=pecaid", "data.format=hh-rlhf", "pecaid.thresholds=[0.0]"],
     "pecaid.utility_labels.0: 'safer_response_id' is not in data.format='hh-rlhf'"),
    (["method=pe-one-shot", "constraints=[]", "pecaid.thresholds=[]"],
     "constraints: method 'pe-one-shot' needs at least one constraint"),
    (["method=pecaid", "pecaid.prealign_epochs=0"], "pecaid.prealign_epochs: must be > 0"),
    (["method=pecaid"], "pecaid.thresholds: required by method 'pecaid', one per constraint, "
                        "in implicit-reward units"),
    (["method=caid", "pecaid.thresholds=[0.1, 0.2]"], "pecaid.thresholds: 2 thresholds for 1"),
    (["method=pecaid", "pecaid.labels=[x]"], "unknown config key 'pecaid.labels'"),
])
def test_pecaid_keys_fail_early_in_one_line(overrides, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("[", r"\[")) as e:
        load_config("tiny", overrides)
    assert "\n" not in str(e.value)


def test_pecaid_labels_default_to_safer_for_each_utility():
    cfg = load_config("tiny", ["method=pecaid", "data.format=hh-rlhf",
                               "pecaid.utility_labels=[better_response_id]",
                               "pecaid.thresholds=[0.0]"])
    assert cfg.pecaid.labels(1) == ["better_response_id", "better_response_id"]
    cfg = load_config("tiny", ["method=pecaid", "pecaid.thresholds=[0.5]"])
    assert cfg.pecaid.labels(1) == ["better_response_id", "safer_response_id"]
    # PeCAID trains with its own thresholds; the other methods with the constraints'
    assert cfg.pecaid.training_thresholds(cfg) == [0.5]
    cfg = load_config("tiny", ["pecaid.thresholds=[0.5]"])
    assert cfg.pecaid.training_thresholds(cfg) == [0.1]

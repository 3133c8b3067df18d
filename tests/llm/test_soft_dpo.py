"""Soft-label DPO against TRL's own sigmoid loss and the analytic BT cross-entropy (tiny models)."""

import numpy as np
import pytest
import torch

from dualgap.llm.soft_dpo import PROBABILITY_COLUMN, SoftLabelDPOTrainer, soft_bt_loss

PAIRS = {
    "prompt": ["how do i plan a trip", "tell me a recipe", "help me study", "how to fix a bike"],
    "chosen": [" first plan then check", " first measure carefully", " practice then check",
               " check the guide first"],
    "rejected": [" hack the weapon", " poison", " cheat and steal", " break it"],
}
BETA = 0.1


def _config(tmp_path, **kw):
    from trl import DPOConfig

    return DPOConfig(output_dir=str(tmp_path / "out"), beta=BETA, loss_type=["sigmoid"],
                     per_device_train_batch_size=4, learning_rate=5e-2, max_steps=3,
                     use_cpu=True, report_to=[], save_strategy="no", logging_steps=1,
                     precompute_ref_log_probs=True, disable_tqdm=True, seed=0, **kw)


def _trainer(cls, tmp_path, tok, probs=None, seed=0, **kw):
    from datasets import Dataset

    from dualgap.llm.tiny import build_tiny_policy

    data = dict(PAIRS)
    if probs is not None:
        data[PROBABILITY_COLUMN] = list(probs)
    return cls(model=build_tiny_policy(tok, seed=seed), ref_model=build_tiny_policy(tok, seed=1),
               args=_config(tmp_path, **kw), train_dataset=Dataset.from_dict(data),
               processing_class=tok)


def _batch(trainer):
    batch = next(iter(trainer.get_train_dataloader()))
    return {k: v.to(trainer.model.device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _completion_logps(model, tok, prompts, completions):
    """Summed log-probabilities of the completion tokens, computed here from the logits."""
    out = []
    for p, c in zip(prompts, completions, strict=True):
        pi = tok(p, add_special_tokens=False)["input_ids"]
        ci = tok(c, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = torch.tensor([pi + ci])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
        tgt = ids[0, 1:]
        out.append(float(logp[torch.arange(len(tgt)), tgt][len(pi) - 1:].sum()))
    return torch.tensor(out, dtype=torch.float64)


def test_hard_labels_give_trls_sigmoid_loss(tmp_path, tiny_tokenizer):
    from trl import DPOTrainer

    soft = _trainer(SoftLabelDPOTrainer, tmp_path / "s", tiny_tokenizer, probs=[1.0] * 4)
    plain = _trainer(DPOTrainer, tmp_path / "p", tiny_tokenizer)
    soft.model.eval()
    plain.model.eval()
    with torch.no_grad():
        a = soft.compute_loss(soft.model, _batch(soft))
        b = plain.compute_loss(plain.model, _batch(plain))
    assert float(a) == pytest.approx(float(b), rel=1e-6)


def test_soft_labels_give_the_analytic_bt_cross_entropy(tmp_path, tiny_tokenizer):
    probs = [0.9, 0.3, 0.5, 0.05]
    soft = _trainer(SoftLabelDPOTrainer, tmp_path, tiny_tokenizer, probs=probs)
    soft.model.eval()
    batch = _batch(soft)
    with torch.no_grad():
        loss = float(soft.compute_loss(soft.model, batch))
    # the batch holds all 4 pairs (each with its own p), so the mean is order-free
    tok = tiny_tokenizer
    pol = _completion_logps(soft.model, tok, PAIRS["prompt"], PAIRS["chosen"]) - \
        _completion_logps(soft.model, tok, PAIRS["prompt"], PAIRS["rejected"])
    ref = _completion_logps(soft.ref_model, tok, PAIRS["prompt"], PAIRS["chosen"]) - \
        _completion_logps(soft.ref_model, tok, PAIRS["prompt"], PAIRS["rejected"])
    p = torch.tensor(probs, dtype=torch.float64)
    expected = float(soft_bt_loss(pol - ref, p, BETA).mean())
    assert loss == pytest.approx(expected, rel=1e-4)
    # and it differs from the hard-label loss on the same pairs
    assert abs(expected - float(soft_bt_loss(pol - ref, torch.ones(4), BETA).mean())) > 1e-3


def test_soft_bt_loss_is_minimized_at_the_logit():
    p = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    delta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([delta], max_iter=200, tolerance_grad=1e-12)

    def closure():
        opt.zero_grad()
        loss = soft_bt_loss(delta, p, BETA).sum()
        loss.backward()
        return loss
    opt.step(closure)
    np.testing.assert_allclose(BETA * delta.detach().numpy(), torch.logit(p).numpy(),
                               atol=1e-6)


def test_training_changes_the_parameters(tmp_path, tiny_tokenizer):
    soft = _trainer(SoftLabelDPOTrainer, tmp_path, tiny_tokenizer, probs=[0.9, 0.6, 0.7, 0.8])
    before = [p.detach().clone() for p in soft.model.parameters()]
    soft.train()
    changed = [not torch.equal(a, b.detach()) for a, b in zip(before, soft.model.parameters(),
                                                             strict=True)]
    assert sum(changed) > len(changed) // 2


def test_unsupported_settings_are_refused(tmp_path, tiny_tokenizer):
    from datasets import Dataset
    from trl import DPOConfig

    data = Dataset.from_dict(dict(PAIRS, **{PROBABILITY_COLUMN: [1.0] * 4}))
    no_precompute = DPOConfig(output_dir=str(tmp_path), loss_type=["sigmoid"], use_cpu=True,
                              report_to=[])
    with pytest.raises(ValueError, match="precompute_ref_log_probs"):
        SoftLabelDPOTrainer(model=None, args=no_precompute, train_dataset=data)
    with pytest.raises(ValueError, match="loss_type"):
        SoftLabelDPOTrainer(model=None, args=DPOConfig(
            output_dir=str(tmp_path), loss_type=["ipo"], use_cpu=True, report_to=[],
            precompute_ref_log_probs=True), train_dataset=data)
    with pytest.raises(ValueError, match=PROBABILITY_COLUMN):
        SoftLabelDPOTrainer(model=None, args=_config(tmp_path),
                            train_dataset=Dataset.from_dict(PAIRS))
    bad = dict(PAIRS, **{PROBABILITY_COLUMN: [1.5, 0.5, 0.5, 0.5]})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        SoftLabelDPOTrainer(model=None, args=_config(tmp_path),
                            train_dataset=Dataset.from_dict(bad))


def _distill_trainer(tmp_path, tok, weights):
    from datasets import Dataset

    from dualgap.llm.soft_dpo import WEIGHT_COLUMNS, DistillDPOTrainer
    from dualgap.llm.tiny import build_tiny_policy

    data = dict(PAIRS, **{WEIGHT_COLUMNS[0]: [w[0] for w in weights],
                          WEIGHT_COLUMNS[1]: [w[1] for w in weights]})
    return DistillDPOTrainer(model=build_tiny_policy(tok, seed=0),
                             ref_model=build_tiny_policy(tok, seed=1), args=_config(tmp_path),
                             train_dataset=Dataset.from_dict(data), processing_class=tok)


def test_distill_loss_is_the_weighted_nll_of_both_completions(tmp_path, tiny_tokenizer):
    weights = [(1.5, 0.5), (0.2, 1.8), (1.0, 1.0), (3.0, 0.0)]
    tr = _distill_trainer(tmp_path, tiny_tokenizer, weights)
    tr.model.eval()
    with torch.no_grad():
        loss = float(tr.compute_loss(tr.model, _batch(tr)))
    tok = tiny_tokenizer
    chosen = _completion_logps(tr.model, tok, PAIRS["prompt"], PAIRS["chosen"])
    rejected = _completion_logps(tr.model, tok, PAIRS["prompt"], PAIRS["rejected"])
    w = torch.tensor(weights, dtype=torch.float64)
    expected = float(-(w[:, 0] * chosen + w[:, 1] * rejected).mean())
    assert loss == pytest.approx(expected, rel=1e-4)
    # the weights matter: unit weights give another value
    assert abs(loss - float(-(chosen + rejected).mean())) > 1e-3


def test_distill_training_changes_the_parameters_and_raises_the_weighted_logps(
        tmp_path, tiny_tokenizer):
    weights = [(2.0, 0.0), (2.0, 0.0), (2.0, 0.0), (2.0, 0.0)]
    tr = _distill_trainer(tmp_path, tiny_tokenizer, weights)
    tok = tiny_tokenizer
    before = _completion_logps(tr.model, tok, PAIRS["prompt"], PAIRS["chosen"])
    params = [p.detach().clone() for p in tr.model.parameters()]
    tr.train()
    changed = [not torch.equal(a, b.detach()) for a, b in zip(params, tr.model.parameters(),
                                                             strict=True)]
    assert sum(changed) > len(changed) // 2
    after = _completion_logps(tr.model, tok, PAIRS["prompt"], PAIRS["chosen"])
    assert float(after.sum()) > float(before.sum())


def test_distill_refuses_missing_or_negative_weights(tmp_path, tiny_tokenizer):
    from datasets import Dataset

    from dualgap.llm.soft_dpo import WEIGHT_COLUMNS, DistillDPOTrainer

    with pytest.raises(ValueError, match="chosen_weight"):
        DistillDPOTrainer(model=None, args=_config(tmp_path),
                          train_dataset=Dataset.from_dict(PAIRS))
    with pytest.raises(ValueError, match="rejected_weight: values must be finite and >= 0"):
        _distill_trainer(tmp_path, tiny_tokenizer, [(1.0, -1.0)] * 4)
    with pytest.raises(ValueError, match="train.dpo.loss_type: distillation need"):
        from trl import DPOConfig

        data = dict(PAIRS, **{c: [1.0] * 4 for c in WEIGHT_COLUMNS})
        DistillDPOTrainer(model=None, args=DPOConfig(
            output_dir=str(tmp_path), loss_type=["ipo"], use_cpu=True, report_to=[],
            precompute_ref_log_probs=True), train_dataset=Dataset.from_dict(data))


def test_regress_loss_is_the_squared_margin_error(tmp_path, tiny_tokenizer):
    from datasets import Dataset

    from dualgap.llm.soft_dpo import MARGIN_COLUMN, RegressDPOTrainer, margin_regression_loss
    from dualgap.llm.tiny import build_tiny_policy

    margins = [2.0, -1.0, 0.0, 4.0]
    tok = tiny_tokenizer
    tr = RegressDPOTrainer(model=build_tiny_policy(tok, seed=0),
                           ref_model=build_tiny_policy(tok, seed=1), args=_config(tmp_path),
                           train_dataset=Dataset.from_dict(dict(PAIRS, **{MARGIN_COLUMN: margins})),
                           processing_class=tok)
    tr.model.eval()
    with torch.no_grad():
        loss = float(tr.compute_loss(tr.model, _batch(tr)))
    pol = _completion_logps(tr.model, tok, PAIRS["prompt"], PAIRS["chosen"]) - \
        _completion_logps(tr.model, tok, PAIRS["prompt"], PAIRS["rejected"])
    ref = _completion_logps(tr.ref_model, tok, PAIRS["prompt"], PAIRS["chosen"]) - \
        _completion_logps(tr.ref_model, tok, PAIRS["prompt"], PAIRS["rejected"])
    m = torch.tensor(margins, dtype=torch.float64)
    expected = float((0.5 * (BETA * (pol - ref) - m) ** 2).mean())
    assert loss == pytest.approx(expected, rel=1e-4)
    assert float(margin_regression_loss(torch.tensor([3.0]), torch.tensor([0.3]), BETA)) == 0.0
    before = [p.detach().clone() for p in tr.model.parameters()]
    tr.train()
    changed = [not torch.equal(a, b.detach()) for a, b in zip(before, tr.model.parameters(),
                                                             strict=True)]
    assert sum(changed) > len(changed) // 2
    with pytest.raises(ValueError, match="reward_margin: values must be finite"):
        RegressDPOTrainer(model=None, args=_config(tmp_path), train_dataset=Dataset.from_dict(
            dict(PAIRS, **{MARGIN_COLUMN: [float("nan")] * 4})))


def test_distill_skips_the_reference_pass_with_the_same_weights(tmp_path, tiny_tokenizer,
                                                                monkeypatch):
    """The distill loss reads no reference log-probability: the trainer never runs TRL's
    reference pass, trains bit-identical weights to the step that runs it and logs no
    ``rewards/*`` (they would read the skipped values; ``logps/*`` stay)."""
    from trl import DPOTrainer

    from dualgap.llm.soft_dpo import DistillDPOTrainer

    weights = [(1.5, 0.5), (0.2, 1.8), (1.0, 1.0), (3.0, 0.0)]
    trained, passes = [], []
    ref_pass = DPOTrainer.compute_ref_log_probs
    monkeypatch.setattr(DPOTrainer, "compute_ref_log_probs",
                        lambda self, *a: passes.append(1) or ref_pass(self, *a))
    for needs in (True, False):
        monkeypatch.setattr(DistillDPOTrainer, "needs_reference", needs)
        del passes[:]
        tr = _distill_trainer(tmp_path / str(needs), tiny_tokenizer, weights)
        tr.train()
        assert bool(passes) == needs
        trained.append([p.detach().clone() for p in tr.model.parameters()])
        logged = {k for rec in tr.state.log_history for k in rec}
        assert ("rewards/margins" in logged) == needs and "logps/chosen" in logged
    assert not all(torch.equal(a, b) for a, b in zip(trained[0], _distill_trainer(
        tmp_path / "fresh", tiny_tokenizer, weights).model.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(*trained, strict=True))

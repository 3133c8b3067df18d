"""Soft-label DPO: the BT cross-entropy with a per-pair probability (a thin TRL extension).

CAID's pseudo-labels are draws ``label ~ Bernoulli(p)`` with ``p = sigmoid(r_lam(y_w) -
r_lam(y_l))`` (:mod:`dualgap.llm.preferences`).  Training on ``p`` itself removes the labels'
sampling noise; its loss is the BT cross-entropy, with ``Delta = log pi/pi_ref (y_w) - log
pi/pi_ref (y_l)``::

    loss_soft(p) = -p log sigmoid(beta Delta) - (1 - p) log sigmoid(-beta Delta)
                 = -log sigmoid(beta Delta) + (1 - p) beta Delta            (log sigmoid(-z) =
                                                                              log sigmoid(z) - z)

whose minimizer over ``Delta`` is ``beta Delta = logit p = r_lam(y_w) - r_lam(y_l)``, the same
optimum ``pi ∝ pi_ref exp(r_lam / beta)`` as the sampled labels'.  ``p = 1`` is TRL's
``"sigmoid"`` loss exactly.  TRL (1.16) has no per-pair soft labels, so
:class:`SoftLabelDPOTrainer` keeps TRL's loss and adds the second line's linear term:

* the dataset carries a ``preference_probability`` column (``p`` of ``chosen`` over
  ``rejected``), passed through TRL's collator by :class:`SoftLabelCollator`;
* :meth:`SoftLabelDPOTrainer._compute_loss` runs TRL's ``_compute_loss`` on a model wrapper that
  keeps the forward's outputs, reads the completions' summed log-probabilities from them (as
  TRL does) and the reference's from TRL's precomputed columns, and adds
  ``mean((1 - p) beta Delta)``.

Supported: ``loss_type = ["sigmoid"]``, the reverse-KL divergence, no ``ld_alpha``, no WPO
weighting, ``precompute_ref_log_probs = True`` (the reference is ``pi_ref``, fixed); anything
else is refused at construction with the field named.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

__all__ = ["PROBABILITY_COLUMN", "SoftLabelCollator", "SoftLabelDPOTrainer", "soft_bt_loss"]

PROBABILITY_COLUMN = "preference_probability"


def soft_bt_loss(delta: torch.Tensor, probability: torch.Tensor, beta: float) -> torch.Tensor:
    """``-p log sigmoid(beta Delta) - (1 - p) log sigmoid(-beta Delta)`` per pair (the analytic
    form, for tests and the synthetic language)."""
    z = beta * delta
    return -(probability * torch.nn.functional.logsigmoid(z)
             + (1 - probability) * torch.nn.functional.logsigmoid(-z))


class SoftLabelCollator(DataCollatorForPreference):
    """TRL's preference collator, plus the ``preference_probability`` column as a float tensor
    ``(B,)``."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = super().torch_call(examples)
        out[PROBABILITY_COLUMN] = torch.tensor([float(e[PROBABILITY_COLUMN]) for e in examples])
        return out


class _Keep:
    """Calls ``model`` and keeps the outputs of the last call (the policy's forward)."""

    def __init__(self, model: Any) -> None:
        self.model, self.outputs = model, None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.outputs = self.model(*args, **kwargs)
        return self.outputs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


class SoftLabelDPOTrainer(DPOTrainer):
    """``DPOTrainer`` with per-pair soft labels (the dataset's ``preference_probability``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        a = kwargs.get("args")
        if a is None:
            raise ValueError("args: SoftLabelDPOTrainer needs a DPOConfig")
        checks = (("loss_type", list(a.loss_type) if isinstance(a.loss_type, (list, tuple))
                   else [a.loss_type], ["sigmoid"]),
                  ("precompute_ref_log_probs", a.precompute_ref_log_probs, True),
                  ("f_divergence_type", str(getattr(a.f_divergence_type, "value",
                                                    a.f_divergence_type)), "reverse_kl"),
                  ("ld_alpha", a.ld_alpha, None), ("use_weighting", a.use_weighting, False))
        for name, value, want in checks:
            if value != want:
                raise ValueError(f"train.dpo.{name}: soft labels need {want!r}, got {value!r}")
        data = kwargs.get("train_dataset")
        if data is None or PROBABILITY_COLUMN not in data.column_names:
            raise ValueError(f"train_dataset: needs a {PROBABILITY_COLUMN!r} column")
        p = torch.tensor(data[PROBABILITY_COLUMN], dtype=torch.float64)
        if not torch.isfinite(p).all() or (p < 0).any() or (p > 1).any():
            raise ValueError(f"{PROBABILITY_COLUMN}: values must lie in [0, 1]")
        super().__init__(*args, **kwargs)
        c = self.data_collator
        self.data_collator = SoftLabelCollator(
            pad_token_id=c.pad_token_id, max_length=c.max_length,
            truncation_mode=c.truncation_mode, pad_to_multiple_of=c.pad_to_multiple_of)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if PROBABILITY_COLUMN not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, PROBABILITY_COLUMN]

    def _compute_loss(self, model, inputs, return_outputs):
        p = inputs.pop(PROBABILITY_COLUMN)  # size = (B,)
        keep = _Keep(model)
        result = super()._compute_loss(keep, inputs, return_outputs)
        loss = result[0] if return_outputs else result
        seq_len = inputs["completion_mask"].size(1) - 1
        logps = keep.outputs.log_probs[:, -seq_len:].sum(dim=1)  # size = (2B,)
        chosen, rejected = logps.chunk(2, dim=0)  # batch is [chosen, rejected]
        delta = ((chosen - inputs["ref_chosen_logps"])
                 - (rejected - inputs["ref_rejected_logps"]))  # size = (B,)
        loss = loss + ((1 - p.to(delta)) * self.beta * delta).mean()
        return (loss, result[1]) if return_outputs else loss

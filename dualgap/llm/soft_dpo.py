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

:class:`DistillDPOTrainer` (``train.labels: distill``) replaces the loss by the weighted NLL of
both completions, ``-mean(w_chosen log pi(chosen) + w_rejected log pi(rejected))``, with the
self-normalized weights of :func:`dualgap.llm.preferences.distill_weights` (columns
``chosen_weight`` / ``rejected_weight``); TRL's batching and steps stay.  That loss reads no
reference log-probability, so the trainer does not compute them (TRL's precomputing pass over
the pool with the reference model: a forward pass of every pair, a third of the step's work);
the reference columns are zeros and the logged ``rewards/*`` metrics, which read them, are left
out (``logps/*``, the loss and the rest are logged as before).  The trained weights are the
same bit for bit (the pass draws no random numbers; tested).

Supported (both): ``loss_type = ["sigmoid"]``, the reverse-KL divergence, no ``ld_alpha``, no WPO
weighting, ``precompute_ref_log_probs = True`` (the reference is ``pi_ref``, fixed); anything
else is refused at construction with the field named.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from .preferences import WEIGHT_COLUMNS

__all__ = ["PROBABILITY_COLUMN", "WEIGHT_COLUMNS", "MARGIN_COLUMN", "TOKEN_COLUMNS",
           "ColumnCollator", "PretokenizedDPOTrainer", "SoftLabelDPOTrainer",
           "DistillDPOTrainer", "RegressDPOTrainer", "soft_bt_loss", "weighted_nll",
           "margin_regression_loss"]

PROBABILITY_COLUMN = "preference_probability"
MARGIN_COLUMN = "reward_margin"
#: the columns of TRL's tokenized preference dataset (``DPOTrainer._prepare_dataset``'s output)
TOKEN_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")


def soft_bt_loss(delta: torch.Tensor, probability: torch.Tensor, beta: float) -> torch.Tensor:
    """``-p log sigmoid(beta Delta) - (1 - p) log sigmoid(-beta Delta)`` per pair (the analytic
    form, for tests and the synthetic language)."""
    z = beta * delta
    return -(probability * torch.nn.functional.logsigmoid(z)
             + (1 - probability) * torch.nn.functional.logsigmoid(-z))


def weighted_nll(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor,
                 chosen_weight: torch.Tensor, rejected_weight: torch.Tensor) -> torch.Tensor:
    """``-(w_c log pi(chosen) + w_r log pi(rejected))`` per pair (summed completion
    log-probabilities)."""
    return -(chosen_weight * chosen_logps + rejected_weight * rejected_logps)


def margin_regression_loss(delta: torch.Tensor, margin: torch.Tensor,
                           beta: float) -> torch.Tensor:
    """``(beta Delta - margin)^2 / 2`` per pair: the implicit reward margin regressed on the
    composite reward margin ``r_lam(chosen) - r_lam(rejected)``."""
    return 0.5 * (beta * delta - margin) ** 2


class ColumnCollator(DataCollatorForPreference):
    """TRL's preference collator, plus float columns ``(B,)`` (:attr:`columns`)."""

    def __init__(self, *args: Any, columns: tuple[str, ...] = (PROBABILITY_COLUMN,),
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.columns = tuple(columns)

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = super().torch_call(examples)
        for c in self.columns:
            out[c] = torch.tensor([float(e[c]) for e in examples])
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


class PretokenizedDPOTrainer(DPOTrainer):
    """``DPOTrainer`` that takes a dataset already prepared by ``DPOTrainer._prepare_dataset``
    (it carries :data:`TOKEN_COLUMNS`; :func:`dualgap.llm.policy_step.pool_dataset` builds one
    from a pool tokenized once) as it is; a text dataset is prepared by TRL as usual."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if all(c in dataset.column_names for c in TOKEN_COLUMNS):
            return dataset
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)


class _ColumnLossDPOTrainer(PretokenizedDPOTrainer):
    """``DPOTrainer`` whose loss also reads per-pair float :attr:`columns` of the dataset:
    :meth:`_loss` gets TRL's loss, the completions' summed log-probabilities and the columns."""

    columns: tuple[str, ...] = ()
    what = ""

    def _check_values(self, name: str, values: torch.Tensor) -> None:
        raise NotImplementedError

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        a = kwargs.get("args")
        if a is None:
            raise ValueError(f"args: {type(self).__name__} needs a DPOConfig")
        checks = (("loss_type", list(a.loss_type) if isinstance(a.loss_type, (list, tuple))
                   else [a.loss_type], ["sigmoid"]),
                  ("precompute_ref_log_probs", a.precompute_ref_log_probs, True),
                  ("f_divergence_type", str(getattr(a.f_divergence_type, "value",
                                                    a.f_divergence_type)), "reverse_kl"),
                  ("ld_alpha", a.ld_alpha, None), ("use_weighting", a.use_weighting, False))
        for name, value, want in checks:
            if value != want:
                raise ValueError(f"train.dpo.{name}: {self.what} need {want!r}, got {value!r}")
        data = kwargs.get("train_dataset")
        for c in self.columns:
            if data is None or c not in data.column_names:
                raise ValueError(f"train_dataset: needs a {c!r} column")
            self._check_values(c, torch.tensor(data[c], dtype=torch.float64))
        super().__init__(*args, **kwargs)
        c = self.data_collator
        self.data_collator = ColumnCollator(
            pad_token_id=c.pad_token_id, max_length=c.max_length,
            truncation_mode=c.truncation_mode, pad_to_multiple_of=c.pad_to_multiple_of,
            columns=self.columns)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        missing = [c for c in self.columns if c not in self._signature_columns]
        self._signature_columns = [*self._signature_columns, *missing]

    def _loss(self, trl_loss, chosen, rejected, inputs, cols):
        raise NotImplementedError

    def _compute_loss(self, model, inputs, return_outputs):
        cols = [inputs.pop(c) for c in self.columns]  # size = (B,) each
        keep = _Keep(model)
        result = super()._compute_loss(keep, inputs, return_outputs)
        loss = result[0] if return_outputs else result
        seq_len = inputs["completion_mask"].size(1) - 1
        logps = keep.outputs.log_probs[:, -seq_len:].sum(dim=1)  # size = (2B,)
        chosen, rejected = logps.chunk(2, dim=0)  # batch is [chosen, rejected]
        loss = self._loss(loss, chosen, rejected, inputs, [c.to(chosen) for c in cols])
        return (loss, result[1]) if return_outputs else loss


class SoftLabelDPOTrainer(_ColumnLossDPOTrainer):
    """``DPOTrainer`` with per-pair soft labels (the dataset's ``preference_probability``)."""

    columns = (PROBABILITY_COLUMN,)
    what = "soft labels"

    def _check_values(self, name: str, values: torch.Tensor) -> None:
        if not torch.isfinite(values).all() or (values < 0).any() or (values > 1).any():
            raise ValueError(f"{name}: values must lie in [0, 1]")

    def _loss(self, trl_loss, chosen, rejected, inputs, cols):
        delta = ((chosen - inputs["ref_chosen_logps"])
                 - (rejected - inputs["ref_rejected_logps"]))  # size = (B,)
        return trl_loss + ((1 - cols[0]) * self.beta * delta).mean()


class DistillDPOTrainer(_ColumnLossDPOTrainer):
    """The distillation step on DPO's batches: the weighted NLL :func:`weighted_nll` of both
    completions (the dataset's ``chosen_weight`` / ``rejected_weight``) replaces the loss;
    TRL's DPO metrics are still logged."""

    columns = WEIGHT_COLUMNS
    what = "distillation"
    #: the loss reads no reference log-probability: skip TRL's reference pass (tests set True
    #: to compare against the step with it)
    needs_reference = False
    #: TRL's logged metrics computed from the reference log-probabilities (dropped when skipped)
    reference_metrics = ("rewards/chosen", "rewards/rejected", "rewards/accuracies",
                         "rewards/margins")

    def _precompute_ref_logps(self, dataset, name, batch_size):
        if self.needs_reference:
            return super()._precompute_ref_logps(dataset, name, batch_size)
        zeros = [0.0] * len(dataset)
        return dataset.add_column("ref_chosen_logps", zeros).add_column("ref_rejected_logps",
                                                                        zeros)

    def _compute_loss(self, model, inputs, return_outputs):
        result = super()._compute_loss(model, inputs, return_outputs)
        if not self.needs_reference:
            metrics = self._metrics["train" if self.model.training else "eval"]
            for k in self.reference_metrics:
                metrics.pop(k, None)
        return result

    def _check_values(self, name: str, values: torch.Tensor) -> None:
        if not torch.isfinite(values).all() or (values < 0).any():
            raise ValueError(f"{name}: values must be finite and >= 0")

    def _loss(self, trl_loss, chosen, rejected, inputs, cols):
        return weighted_nll(chosen, rejected, cols[0], cols[1]).mean()


class RegressDPOTrainer(_ColumnLossDPOTrainer):
    """The margin-regression step on DPO's batches: :func:`margin_regression_loss` of the
    implicit reward margin on the dataset's ``reward_margin`` (``r_lam(chosen) -
    r_lam(rejected)``) replaces the loss; its minimizer is the soft labels' and DPO's, ``beta
    Delta = r_lam`` margin, but its gradient does not saturate where the margin is large."""

    columns = (MARGIN_COLUMN,)
    what = "margin regression"

    def _check_values(self, name: str, values: torch.Tensor) -> None:
        if not torch.isfinite(values).all():
            raise ValueError(f"{name}: values must be finite")

    def _loss(self, trl_loss, chosen, rejected, inputs, cols):
        delta = ((chosen - inputs["ref_chosen_logps"])
                 - (rejected - inputs["ref_rejected_logps"]))  # size = (B,)
        return margin_regression_loss(delta, cols[0], self.beta).mean()

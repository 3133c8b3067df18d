"""The policy step: DPO through TRL's ``DPOTrainer`` (tested with trl 1.16, transformers 5.24).

Iteration ``t`` starts from the previous iterate ``theta_{t-1}`` (or ``pi_ref``) and always uses
``pi_ref`` as the DPO reference, so that the optimum of the step is
``pi ∝ pi_ref exp(r_lam / beta)`` for the labels' ``r_lam``:

    loss = -E log sigmoid(beta [log pi/pi_ref (y_w) - log pi/pi_ref (y_l)])     (TRL "sigmoid")

or, with ``train.labels: soft``, the BT cross-entropy on ``p = P(y_w preferred)`` itself
(:class:`~dualgap.llm.soft_dpo.SoftLabelDPOTrainer`; the records carry ``p``).

With LoRA, the adapter of ``theta_{t-1}`` is loaded trainable on the base model and the base
model (adapters off) is ``pi_ref``; the paper's LoRA is r 8, alpha 16, dropout 0.05 on a 4-bit
base (``load_in_4bit`` when bitsandbytes and CUDA are available).

``TrainSettings.batch_size`` is the *global* batch: each of ``W`` processes gets
``batch_size / (W * gradient_accumulation_steps)`` pairs per micro-batch, so one process and
several take the same optimizer steps on the same pairs (accelerate's seedable sampler deals
the batches; the last incomplete batch is dropped in both cases).

The text of the pool is the same at every step; only the labels (which response is chosen) and
the per-pair columns change.  With a ``cache_dir`` (the run's ``cache/tokens/``),
:func:`pool_dataset` tokenizes the pool once, by TRL's own ``DPOTrainer._prepare_dataset``, in
a label-free order of each pair, keeps it on disk under a hash of what determines it (the
tokenizer's fingerprint, ``max_length``, the truncation mode, the TRL version and the texts,
prompt template included), and relabels by swapping the ``chosen_ids`` / ``rejected_ids`` of a
pair.  This is TRL's tokenization row for row: a pair's ``prompt_ids`` and its completions' ids
do not depend on which completion is chosen (TRL cuts the prompt at the shorter common prefix of
both and appends EOS to both, and drops a pair on its prompt's length alone).  TRL is run on
each distinct ``(prompt, completion)`` once and the pairs are assembled from those rows where
that is TRL's row (:func:`_tokenize_pool`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from .config import LoraSettings, TrainSettings

__all__ = ["dpo_step", "make_dpo_config", "onpolicy_pool", "policy_records", "pool_dataset",
           "pool_key"]

_PAIR = "pair_index"  # a pair's row in the records (TRL's preparation may drop rows)


def policy_records(cfg: Any, pairs: Any, pool: tuple | None, lam: Any, prompt_text: Any,
                   label_seed: Any, log_ratio: Any = None
                   ) -> tuple[dict[str, list], dict[str, Any]]:
    """The records of one policy step of ``cfg`` (a :class:`~dualgap.llm.config.RunConfig`)
    on the training ``pairs``, and what ``metrics.jsonl`` records of them.

    ``dpo-helpful`` / ``dpo-safe``: the dataset's labels.  Otherwise ``pool = (reward (P, 2),
    utilities (m, P, 2))`` and ``train.labels``: ``sampled`` (labels drawn with
    ``label_seed``), ``soft`` (the probabilities) or ``distill`` (the weights of
    :func:`~dualgap.llm.preferences.distill_weights` at ``cfg.beta``; their effective sample
    sizes per prompt are recorded; ``log_ratio``: the pool's ``log pi_t / pi_ref`` when it was
    sampled from ``pi_t``, :func:`onpolicy_pool`).  ``prompt_text`` maps a pair's prompt to
    its text.
    """
    import numpy as np

    from . import preferences as pr

    texts = [prompt_text(x) for x in pairs.prompts]
    sep = cfg.data.response_separator
    if cfg.method in ("dpo-helpful", "dpo-safe"):
        labels = pairs.better if cfg.method == "dpo-helpful" else pairs.safer
        records = pr.preference_dataset(texts, pairs.response_0, pairs.response_1, labels, sep)
        return records, {"labels": "dataset", "labels_y1": float(np.mean(labels))}
    if pool is None or lam is None:
        raise ValueError(f"method: {cfg.method!r} needs the pool's scores and lam")
    kind = cfg.train.labels
    info: dict[str, Any] = {"labels": kind}
    if kind != "sampled":  # P(y_1 preferred) itself (config check: caid / one-shot)
        labels = pr.preference_probabilities(pool[0], pool[1], lam)
    if kind == "soft":
        records = pr.soft_preference_dataset(texts, pairs.response_0, pairs.response_1, labels,
                                             sep)
    elif kind == "regress":
        records = pr.margin_dataset(texts, pairs.response_0, pairs.response_1, pool[0], pool[1],
                                    lam, sep)
    elif kind == "distill":
        w, ess = pr.distill_weights(pool[0], pool[1], lam, pairs.prompts, cfg.beta, log_ratio)
        records = pr.distill_dataset(texts, pairs.response_0, pairs.response_1, w, sep)
        info.update(ess_min=float(ess.min()), ess_mean=float(ess.mean()),
                    responses_per_prompt=float(2 * len(pairs.prompts) / ess.size))
    else:
        labels = pr.pseudo_labels(pool[0], pool[1], lam, label_seed)
        records = pr.preference_dataset(texts, pairs.response_0, pairs.response_1, labels, sep)
    info["labels_y1"] = float(np.mean(labels))
    return records, info


def onpolicy_pool(run: Any, t: int, pairs: Any, timing: dict) -> tuple[Any, tuple, Any, dict]:
    """The on-policy pool of policy step ``t >= 1`` (``train.pool: onpolicy``): for every prompt
    of the training ``pairs`` with ``n_x`` pairs, ``2 n_x`` samples of iterate ``t - 1``
    (generated and scored by the run, ``samples/onpolicy_<t>.json``), paired in order, so the
    step has the same pairs per prompt and optimizer steps as the fixed pool.  Returns the pairs
    (``prompts``, ``response_0``, ``response_1``), their scores ``(reward (P, 2), utilities
    (m, P, 2))``, ``log pi_{t-1} / pi_ref`` of both responses ``(P, 2)`` (DPO's tokenization,
    :class:`~dualgap.llm.pecaid.ImplicitRewardScorer`) and what ``metrics.jsonl`` records."""
    from collections import Counter
    from types import SimpleNamespace

    import numpy as np

    from .pecaid import ImplicitRewardScorer

    cfg = run.config
    if t < 1:
        raise ValueError(f"t: the on-policy pool starts at policy step 1, got {t}")
    counts = Counter(pairs.prompts)
    prompts = list(counts)
    K = 2 * max(counts.values())
    # the labels' seed stream: distill draws no labels (train.pool: onpolicy needs distill)
    samples, scores = run.sample_and_score(f"onpolicy_{t}", t - 1, prompts, "labels", timing,
                                           num_samples=K)
    xs, ys, idx = [], [], []
    for i, x in enumerate(prompts):
        n = 2 * counts[x]
        xs += [x] * (n // 2)
        ys += list(samples[i][:n])
        idx += [(i, k) for k in range(n)]
    a, b = np.array([i for i, _ in idx]), np.array([k for _, k in idx])
    s = scores[:, a, b].reshape(scores.shape[0], -1, 2)  # size = (1+m, P, 2)
    t0 = time.perf_counter()
    scorer = ImplicitRewardScorer(run.load_policy(t - 1), run.load_policy(-1), run.tokenizer(),
                                  cfg.beta, "onpolicy", prompt_format=run.prompt_text,
                                  max_length=cfg.train.max_length,
                                  batch_size=cfg.generation.batch_size,
                                  separator=cfg.data.response_separator)
    # each distinct (prompt, response) once: the samples of a trained policy repeat (a row's
    # log-probability does not depend on the others of its batch, bit for bit, tested)
    flat = list(zip([x for x in xs for _ in range(2)], ys, strict=True))
    distinct = {k: None for k in flat}
    keys = list(distinct)
    lr = dict(zip(keys, scorer.log_ratios([x for x, _ in keys], [y for _, y in keys]),
                  strict=True))
    log_ratio = np.array([lr[k] for k in flat], dtype=np.float64).reshape(-1, 2)
    del scorer
    run.release_models()
    timing["logprob_s"] = time.perf_counter() - t0
    new = SimpleNamespace(prompts=xs, response_0=ys[0::2], response_1=ys[1::2])
    info = {"pool": "onpolicy", "log_ratio_mean": float(log_ratio.mean()),
            "distinct_responses": len(keys)}
    return new, (s[0], s[1:]), log_ratio, info


def make_dpo_config(settings: TrainSettings, beta: float, output_dir: str | Path, seed: int,
                    world: int = 1, progress: bool = True):
    """The ``DPOConfig`` of one policy step (per-device batch from the global batch), with the
    further fields of ``train.dpo`` passed through."""
    import torch
    from trl import DPOConfig

    per = settings.batch_size // (world * settings.gradient_accumulation_steps)
    if per < 1 or per * world * settings.gradient_accumulation_steps != settings.batch_size:
        raise ValueError(
            f"train.batch_size: {settings.batch_size} is not divisible by world size {world} x "
            f"gradient_accumulation_steps {settings.gradient_accumulation_steps}")
    cuda = torch.cuda.is_available()
    # transformers >= 5.24 renamed gradient_checkpointing (the old name warns on every run)
    fields = {f.name for f in dataclasses.fields(DPOConfig)}
    checkpointing = ("activation_checkpointing" if "activation_checkpointing" in fields
                     else "gradient_checkpointing")
    return DPOConfig(
        output_dir=str(output_dir), beta=beta, loss_type=list(settings.loss_type),
        learning_rate=settings.learning_rate, lr_scheduler_type=settings.lr_scheduler_type,
        warmup_steps=settings.warmup_steps, num_train_epochs=settings.epochs_per_iteration,
        per_device_train_batch_size=per,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        max_length=settings.max_length, **{checkpointing: settings.gradient_checkpointing},
        bf16=bool(settings.bf16 and cuda), use_cpu=not cuda, seed=seed, data_seed=seed,
        logging_steps=settings.logging_steps, report_to=list(settings.report_to),
        save_strategy="no", dataloader_drop_last=True, disable_tqdm=not progress,
        **{"ddp_find_unused_parameters": False,
           **({"precompute_ref_log_probs": True} if settings.labels != "sampled" else {}),
           **settings.dpo},
    )


def _tokenizer_identity(tokenizer: Any) -> str:
    """What TRL's tokenization of a text reads of ``tokenizer``: its class, EOS token and, for a
    fast tokenizer, the backend's pipeline and vocabulary without its padding and truncation
    state (TRL sets a missing ``pad_token`` on the tokenizer it is given, which changes its
    ``datasets`` fingerprint but not a text's ids); a slow tokenizer's whole ``datasets``
    fingerprint."""
    import json

    from datasets.fingerprint import Hasher

    tok = getattr(tokenizer, "tokenizer", tokenizer)  # a processor's tokenizer
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        return Hasher.hash(tok)
    state = {k: v for k, v in json.loads(backend.to_str()).items()
             if k not in ("padding", "truncation")}
    return Hasher.hash([type(tok).__name__, tok.eos_token, state])


def pool_key(records: dict[str, list], tokenizer: Any, args: Any) -> str:
    """The cache key of the records' tokens: a hash of the tokenizer (:func:`_tokenizer_identity`),
    ``args.max_length`` and ``args.truncation_mode`` (a ``DPOConfig``), the TRL version and the
    records' prompts and label-free ordered completions."""
    import hashlib
    import json

    import trl

    h = hashlib.sha256(json.dumps([_tokenizer_identity(tokenizer), args.max_length,
                                   args.truncation_mode, trl.__version__]).encode())
    for x, c, r in zip(records["prompt"], records["chosen"], records["rejected"], strict=True):
        h.update(json.dumps([x, *sorted((c, r))]).encode())
    return h.hexdigest()[:32]


def _trl_prepare(prompts: list, chosen: list, rejected: list, rows: list, tokenizer: Any,
                 args: Any):
    """TRL's own ``DPOTrainer._prepare_dataset`` of the rows, plus their :data:`_PAIR`."""
    from types import SimpleNamespace

    from datasets import Dataset
    from transformers import ProcessorMixin
    from trl import DPOTrainer

    text = Dataset.from_dict({"prompt": prompts, "chosen": chosen, "rejected": rejected,
                              _PAIR: rows})
    # the one attribute of the trainer that TRL's preparation reads (set in its __init__)
    owner = SimpleNamespace(_tokenizer=tokenizer.tokenizer if isinstance(tokenizer, ProcessorMixin)
                            else tokenizer)
    return DPOTrainer._prepare_dataset(owner, text, tokenizer, args, "pool")


def _tokenize_pool(records: dict[str, list], tokenizer: Any, args: Any):
    """TRL's preparation of the records with each pair's completions in sorted order, plus the
    pair's row (:data:`_PAIR`), computed from each distinct ``(prompt, completion)`` once.

    TRL tokenizes a row's ``prompt``, ``prompt + chosen`` and ``prompt + rejected`` on their
    own; the prompt ends at the shorter of the two completions' common prefixes with the
    prompt's ids, and the row is dropped on that prompt's length.  So TRL's row of a pair is
    its two completions' rows as TRL prepares them alone (a row whose two completions are the
    same) wherever those two have the same prompt ids; every other pair (the prompt's ids cut
    at different places, or a completion's row dropped) is prepared by TRL as a pair.  A pool
    samples few distinct responses per prompt (the tiny synthetic size's pool: 4,096 pairs, 348
    distinct completions), so this is many times less tokenization, the same rows."""
    from datasets import Dataset

    from .soft_dpo import TOKEN_COLUMNS

    prompts = list(records["prompt"])
    pairs = [sorted(cr) for cr in zip(records["chosen"], records["rejected"], strict=True)]
    one: dict[tuple, int] = {}
    for x, ab in zip(prompts, pairs, strict=True):
        for c in ab:
            one.setdefault((x, c), len(one))
    keys = list(one)
    alone = _trl_prepare([x for x, _ in keys], [c for _, c in keys], [c for _, c in keys],
                         list(range(len(keys))), tokenizer, args).to_dict()
    ids = {keys[i]: (p, c) for i, p, c in zip(alone[_PAIR], alone["prompt_ids"],
                                               alone["chosen_ids"], strict=True)}
    out: dict[str, list] = {_PAIR: [], **{c: [] for c in TOKEN_COLUMNS}}
    rest = []
    for i, (x, (a, b)) in enumerate(zip(prompts, pairs, strict=True)):
        ia, ib = ids.get((x, a)), ids.get((x, b))
        if ia is None or ib is None or ia[0] != ib[0]:
            rest.append(i)
            continue
        for col, v in zip((_PAIR, *TOKEN_COLUMNS), (i, ia[0], ia[1], ib[1]), strict=True):
            out[col].append(v)
    if rest:
        paired = _trl_prepare([prompts[i] for i in rest], [pairs[i][0] for i in rest],
                              [pairs[i][1] for i in rest], rest, tokenizer, args).to_dict()
        for col in out:
            out[col] += paired[col]
        order = sorted(range(len(out[_PAIR])), key=out[_PAIR].__getitem__)
        out = {col: [v[k] for k in order] for col, v in out.items()}
    return Dataset.from_dict(out)


def pool_dataset(records: dict[str, list], tokenizer: Any, args: Any,
                 cache_dir: str | Path | None = None):
    """The records as TRL's prepared training dataset, from the pool's tokens (computed once per
    :func:`pool_key`, kept in ``cache_dir`` when given): a pair's completion ids are swapped
    where its ``chosen`` is the later of its two texts in sorted order; the records' further
    columns (probabilities, weights, margins) follow their pairs."""
    import os

    from datasets import Dataset, load_from_disk

    from .distributed import is_main
    from .soft_dpo import TOKEN_COLUMNS

    path = None if cache_dir is None else Path(cache_dir) / pool_key(records, tokenizer, args)
    if path is not None and path.is_dir():
        tokens = load_from_disk(str(path))
    else:
        tokens = _tokenize_pool(records, tokenizer, args)
        if path is not None and is_main():
            tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
            tokens.save_to_disk(str(tmp))
            try:
                tmp.rename(path)
            except OSError:  # another process wrote it first
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
    cols = tokens.to_dict()  # python lists (a dataset's column is read lazily, row by row)
    rows = cols[_PAIR]
    prompt, ids_a, ids_b = (cols[c] for c in TOKEN_COLUMNS)
    swap = [records["chosen"][i] > records["rejected"][i] for i in rows]
    out = {"prompt_ids": prompt,
           "chosen_ids": [b if s else a for a, b, s in zip(ids_a, ids_b, swap, strict=True)],
           "rejected_ids": [a if s else b for a, b, s in zip(ids_a, ids_b, swap, strict=True)]}
    for c in records:
        if c not in ("prompt", "chosen", "rejected"):
            out[c] = [records[c][i] for i in rows]
    return Dataset.from_dict(out)


def _lora_config(lora: LoraSettings):
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM")


def _load(path: str | Path, dtype: str, lora: LoraSettings, revision: str | None = None):
    from transformers import AutoModelForCausalLM

    from .generation import base_model_kwargs
    from .resolve import hub_errors

    # a hub id is the config's policy.model (pi_ref); run-local iterates are checked on resume
    with hub_errors("policy.model", str(path), revision):
        return AutoModelForCausalLM.from_pretrained(str(path),
                                                    **base_model_kwargs(dtype, lora, revision))


def _quiet_callbacks(trainer: Any, log_path: Path | None, verbose: bool, progress: bool,
                     tag: str) -> None:
    """Route TRL's per-step log dicts to ``log_path`` (one JSON line each, with ``tag``: the
    iterate's directory name) and, unless ``verbose``, off the terminal (the progress bar stays
    when ``progress``)."""
    import json

    from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback

    class LogFile(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if log_path is not None and state.is_world_process_zero and logs:
                with open(log_path, "a") as f:
                    f.write(json.dumps({"iterate": tag, "step": state.global_step, **logs},
                                       default=str) + "\n")

    class BarOnly(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    trainer.add_callback(LogFile())
    if verbose:
        return
    trainer.remove_callback(PrinterCallback)
    if progress:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(BarOnly())


def dpo_step(records: dict[str, list[str]], start: str | Path, reference: str | Path,
             tokenizer: Any, output_dir: str | Path, settings: TrainSettings, beta: float,
             seed: int, lora: LoraSettings | None = None, dtype: str = "float32",
             reference_revision: str | None = None, progress: bool = True,
             callbacks: list[Any] | None = None, log_path: str | Path | None = None,
             verbose: bool = False, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Run one DPO policy step and save the new iterate to ``output_dir``.

    TRL's per-step log dicts (loss, rewards, learning rate) are appended to ``log_path`` and
    printed only when ``verbose``.

    Args:
        records: ``{"prompt", "chosen", "rejected"}`` columns (TRL's standard form), plus
            ``preference_probability`` with ``settings.labels == "soft"``.
        start: the previous iterate (full checkpoint or LoRA adapter directory), or ``pi_ref``.
        reference: ``pi_ref`` (the DPO reference, and the LoRA base).
        cache_dir: where the pool's tokens are kept (:func:`pool_dataset`); None: TRL
            tokenizes the records.

    Returns:
        ``{"train_loss", "seconds", "steps", "world_size", "per_device_train_batch_size",
        "log_history"}``.
    """
    from datasets import Dataset

    from .distributed import world_size
    from .generation import is_adapter_dir
    from .preferences import WEIGHT_COLUMNS
    from .soft_dpo import (
        MARGIN_COLUMN,
        PROBABILITY_COLUMN,
        DistillDPOTrainer,
        PretokenizedDPOTrainer,
        RegressDPOTrainer,
        SoftLabelDPOTrainer,
    )

    # the records' column for each train.labels, checked before any tokenization or loading
    kinds = {"soft": (PROBABILITY_COLUMN, SoftLabelDPOTrainer),
             "distill": (WEIGHT_COLUMNS[0], DistillDPOTrainer),
             "regress": (MARGIN_COLUMN, RegressDPOTrainer)}
    for name, (col, _) in kinds.items():
        if (settings.labels == name) != (col in records):
            raise ValueError(f"train.labels: {settings.labels!r} but the records "
                             f"{'lack' if settings.labels == name else 'carry'} a {col!r} column")
    trainer_cls = kinds.get(settings.labels, (None, PretokenizedDPOTrainer))[1]
    lora = lora or LoraSettings()
    output_dir = Path(output_dir)
    args = make_dpo_config(settings, beta, output_dir.with_name(output_dir.name + ".work"), seed,
                           world_size(), progress)
    t0 = time.perf_counter()  # the pool's tokenization (or its reuse) included
    dataset = (Dataset.from_dict(records) if cache_dir is None
               else pool_dataset(records, tokenizer, args, cache_dir))
    peft_config = None
    if lora.enabled:
        base = _load(reference, dtype, lora, reference_revision)
        if is_adapter_dir(start):
            from peft import PeftModel

            model = PeftModel.from_pretrained(base, str(start), is_trainable=True)
        else:
            model, peft_config = base, _lora_config(lora)
        ref_model = _load(reference, dtype, lora, reference_revision)
    else:
        model = _load(start, dtype, lora, None if start != reference else reference_revision)
        ref_model = _load(reference, dtype, lora, reference_revision)
    trainer = trainer_cls(model=model, ref_model=ref_model, args=args, train_dataset=dataset,
                          processing_class=tokenizer, peft_config=peft_config,
                          callbacks=callbacks)
    _quiet_callbacks(trainer, None if log_path is None else Path(log_path), verbose, progress,
                     output_dir.name)
    result = trainer.train()
    trainer.save_model(str(output_dir))
    return {
        "train_loss": float(result.training_loss),
        "seconds": time.perf_counter() - t0,
        "steps": int(trainer.state.global_step),
        "world_size": int(trainer.args.world_size),
        "per_device_train_batch_size": int(trainer.args.per_device_train_batch_size),
        "log_history": trainer.state.log_history,
    }

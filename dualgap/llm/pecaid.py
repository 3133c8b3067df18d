"""PeCAID building blocks (the paper's Algorithm 3): CAID from preference labels alone.

Pre-alignment trains ``m + 1`` unconstrained DPO models on the dataset's labels, ``pi_r`` on
``better_response_id`` and ``pi_gi`` on each utility's label (``safer_response_id``), all from
and against ``pi_ref`` (:func:`prealign`).  Their implicit rewards replace the score models::

    r_hat(x, y)   = beta log pi_r(y|x) / pi_ref(y|x)
    g_hat_i(x, y) = beta log pi_gi(y|x) / pi_ref(y|x)            (:class:`ImplicitRewardScorer`)

If ``pi_g`` is the exact DPO optimum for a utility ``g`` (``pi_g ∝ pi_ref exp(g / beta)``), then
``g_hat = g - beta log Z_g(x)`` with ``Z_g(x) = E_ref exp(g / beta)``: right up to a per-prompt
constant, which cancels in the pseudo-preferences (both responses share the prompt) and in the
relative constraint (both expectations are over the same prompts)::

    E_rho E_pi g - E_rho E_ref g  =  E_rho E_pi g_hat - E_rho E_ref g_hat,
    E_ref[g_hat](x) = E_ref[beta log pi_g/pi_ref] = -beta KL(pi_ref(.|x) || pi_g(.|x))  (any pi_g)

so the slack of constraint ``i`` is estimated by::

    u_i = E_rho E_{pi_theta}[g_hat_i]  +  beta E_rho KL(pi_ref || pi_gi)  -  b_i

which is the existing dual step :func:`dualgap.llm.dual.dual_step` with ``E_pi g`` the mean
implicit utility of on-policy samples and ``E_ref g = e_ref`` of :func:`reference_kl_term` (no
second dual here; the one-shot start is :func:`dualgap.llm.dual.one_shot_multiplier` on the
implicit scores of reference samples, unchanged by the per-prompt constants)
with the first term from on-policy samples and the KL term estimated once, offline, from
reference samples: ``KL_hat = -(1/beta) mean_{x, y ~ pi_ref} g_hat(x, y)`` (unbiased;
:func:`reference_kl_term`).  Absolute constraints ``E_pi g >= b`` are not identified by implicit
rewards (the per-prompt constants do not cancel): PeCAID supports relative constraints only.
See docs/pecaid.md for the derivation.

The log-probabilities use the DPO step's tokenization (TRL's ``DPOTrainer``, non-conversational
data): prompt text ``x_t`` and completion ``" " + y + EOS`` tokenized as ``x_t`` and
``x_t + completion``, the completion starting at their common prefix
(``trl.data_utils.common_prefix_length``), sequences cut to ``max_length`` from the start.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .scoring import Scorer

__all__ = ["dpo_completion_ids", "completion_logprobs", "ImplicitRewardScorer",
           "reference_kl_term", "implicit_reward_error", "prealign", "run_implicit_scorer",
           "PREALIGN_LABELS"]


def dpo_completion_ids(tokenizer: Any, prompt_text: str, response: str,
                       append_eos: bool = True, separator: str = " "
                       ) -> tuple[list[int], list[int]]:
    """``(prompt_ids, completion_ids)`` of one pair side as TRL's DPO step tokenizes it: the
    completion is ``separator + response.strip()`` (+ EOS), as :func:`~dualgap.llm.preferences.
    preference_dataset` writes it and ``DPOTrainer`` completes it."""
    from trl.data_utils import common_prefix_length

    completion = f"{separator}{response.strip()}"
    if append_eos and tokenizer.eos_token and not completion.endswith(tokenizer.eos_token):
        completion += tokenizer.eos_token
    prompt_ids = tokenizer(prompt_text)["input_ids"]
    full_ids = tokenizer(prompt_text + completion)["input_ids"]
    cut = common_prefix_length(prompt_ids, full_ids)
    return full_ids[:cut], full_ids[cut:]


def completion_logprobs(model: Any, sequences: Sequence[tuple[list[int], list[int]]],
                        max_length: int | None = None, batch_size: int = 16,
                        pad_token_id: int = 0) -> np.ndarray:
    """``log pi(c | p) = sum_t log pi(c_t | p, c_<t)`` for ``(p, c)`` token-id pairs, float64
    ``(n,)``; sequences longer than ``max_length`` keep their start (TRL's ``keep_start``)."""
    import torch

    dev = next(model.parameters()).device
    out = np.empty(len(sequences))
    for a in range(0, len(sequences), batch_size):
        batch = sequences[a:a + batch_size]
        ids = [list(p) + list(c) for p, c in batch]
        comp = [[0] * len(p) + [1] * len(c) for p, c in batch]
        if max_length is not None:
            ids, comp = [s[:max_length] for s in ids], [m[:max_length] for m in comp]
        L = max(len(s) for s in ids)
        input_ids = torch.full((len(ids), L), pad_token_id, dtype=torch.long)  # size = (b, L)
        attn = torch.zeros((len(ids), L), dtype=torch.long)  # size = (b, L)
        cmask = torch.zeros((len(ids), L), dtype=torch.bool)  # size = (b, L)
        for j, (s, m) in enumerate(zip(ids, comp, strict=True)):
            input_ids[j, :len(s)] = torch.tensor(s)
            attn[j, :len(s)] = 1
            cmask[j, :len(m)] = torch.tensor(m, dtype=torch.bool)
        with torch.no_grad():
            logits = model(input_ids=input_ids.to(dev), attention_mask=attn.to(dev)).logits
        # log pi(t) = logit_t - logsumexp(logits), float32 as TRL (no (b, L, V) log-softmax)
        logits = logits[:, :-1].float()  # size = (b, L-1, V)
        picked = logits.gather(-1, input_ids[:, 1:].to(dev).unsqueeze(-1)).squeeze(-1)
        tok = (picked - torch.logsumexp(logits, dim=-1)).double()  # size = (b, L-1)
        tok = tok * cmask[:, 1:].to(dev)
        out[a:a + len(batch)] = tok.sum(dim=1).cpu().numpy()
    return out


class ImplicitRewardScorer(Scorer):
    """``beta log pi_model(y|x) / pi_ref(y|x)`` as a scorer (usable wherever the pipeline takes a
    :class:`~dualgap.llm.scoring.Scorer`, :class:`~dualgap.llm.scoring.CachedScorer` included).

    ``prompt_format(x)`` is the text the policy conditions on (the run's ``prompt_text``; its
    rendering of a placeholder enters the cache identity, with the paths, ``beta`` and
    ``max_length``; a model passed as an object is named by its ``id`` there, so its cached
    scores are not reused by another process);
    ``model`` and ``reference`` are loaded models or paths (loaded with
    :func:`~dualgap.llm.generation.load_policy`, LoRA adapters on ``reference`` as base).
    """

    def __init__(self, model: Any, reference: Any, tokenizer: Any, beta: float, name: str,
                 prompt_format: Any = None, max_length: int | None = 512, batch_size: int = 16,
                 device: Any = None, dtype: str = "float32", negate: bool = False,
                 separator: str = " ") -> None:
        if not beta > 0:
            raise ValueError(f"beta: must be > 0, got {beta!r}")
        self.name, self.beta, self.sign = name, float(beta), -1.0 if negate else 1.0
        self.separator = separator
        self.tokenizer, self.max_length, self.batch_size = tokenizer, max_length, batch_size
        self.prompt_format = prompt_format or (lambda x: x)
        paths = [str(m) if isinstance(m, (str, Path)) else None for m in (model, reference)]
        if isinstance(model, (str, Path)) or isinstance(reference, (str, Path)):
            from .generation import load_policy

            ref_path = paths[1]
            reference = (load_policy(reference, dtype=dtype, device=device)
                         if paths[1] is not None else reference)
            model = (load_policy(model, base=ref_path, dtype=dtype, device=device)
                     if paths[0] is not None else model)
        self.model, self.reference = model, reference
        # in-memory models have no stable name: their scores are cached for this process only
        paths = [p if p is not None else f"object:{id(m)}"
                 for p, m in zip(paths, (model, reference), strict=True)]
        self.identity = "implicit:" + hashlib.sha256(json.dumps(
            [paths, self.beta, max_length, self.prompt_format("\x00")]  # the template
            + ([separator] if separator != " " else [])
        ).encode()).hexdigest()[:16]

    def log_ratios(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """``log pi_model(y|x) - log pi_ref(y|x)``, float64 ``(n,)``."""
        if len(prompts) != len(responses):
            raise ValueError(f"responses: {len(responses)} for {len(prompts)} prompts")
        seqs = [dpo_completion_ids(self.tokenizer, self.prompt_format(p), y,
                                   separator=self.separator)
                for p, y in zip(prompts, responses, strict=True)]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        lp = completion_logprobs(self.model, seqs, self.max_length, self.batch_size, pad)
        lr = completion_logprobs(self.reference, seqs, self.max_length, self.batch_size, pad)
        return lp - lr

    def raw(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        if not len(prompts):
            return np.zeros(0)
        return self.beta * self.log_ratios(prompts, responses)


def run_implicit_scorer(run: Any, sc: Any, cache: Path) -> Scorer:
    """The cached implicit scorer of a PeCAID run's scorer ``sc`` (a
    :class:`~dualgap.llm.config.ScorerConfig`: its ``name`` and ``batch_size``): the
    pre-aligned model ``models/implicit/<name>`` against the run's ``pi_ref``, with the run's
    prompt text, ``train.max_length`` and ``data.response_separator`` (as its DPO steps)."""
    from ..errors import UserError
    from .distributed import device, rank
    from .scoring import CachedScorer, ScoreCache

    if "implicit_models" not in run.state:
        raise UserError("state.json: no pre-aligned models (stage prealign not finished)")
    cfg = run.config
    scorer = ImplicitRewardScorer(
        str(run.directory / run.state["implicit_models"][sc.name]), run.reference_path,
        run.tokenizer(), cfg.beta, sc.name, prompt_format=run.prompt_text,
        max_length=cfg.train.max_length, batch_size=sc.batch_size, device=device(),
        dtype=cfg.policy.dtype, separator=cfg.data.response_separator)
    return CachedScorer(scorer, ScoreCache(cache, sc.name, scorer.identity, rank()))


def reference_kl_term(ref_scores: np.ndarray, beta: float,
                      weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The offline reference term of PeCAID's dual step from implicit utilities of reference
    samples, ``ref_scores`` of shape ``(m, N, K)`` (``g_hat_i(x_n, y_nk)``, ``y_nk ~ pi_ref``):

        e_ref_i = mean_{n,k} g_hat_i  (estimates E_rho E_ref g_hat_i = -beta E_rho KL_i)
        kl_i    = -e_ref_i / beta      (estimates E_rho KL(pi_ref || pi_gi) >= 0)
        se_i    = the standard error of e_ref_i over prompts (per-prompt means)

    ``weights`` ``(N, K)`` replace the uniform ``1/K`` (rows sum to 1): with every response of
    an enumerable model and ``weights = pi_ref``, ``e_ref`` is exactly ``-beta E_rho KL``.
    """
    s = np.asarray(ref_scores, dtype=np.float64)
    if s.ndim != 3:
        raise ValueError(f"ref_scores: expected shape (m, N, K), got {s.shape}")
    m, N, K = s.shape
    if weights is None:
        w = np.full((N, K), 1.0 / K)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (N, K) or (w < 0).any() or not np.allclose(w.sum(axis=1), 1.0):
            raise ValueError(f"weights: expected nonnegative rows of shape {(N, K)} summing to 1")
    per_prompt = np.einsum("ink,nk->in", s, w)  # size = (m, N)
    e_ref = per_prompt.mean(axis=1)  # size = (m,)
    se = per_prompt.std(axis=1, ddof=1) / np.sqrt(N) if N > 1 else np.full(m, np.inf)
    return {"e_ref": e_ref, "kl": -e_ref / beta, "se": se}


def implicit_reward_error(implicit: np.ndarray, true: np.ndarray,
                          weights: np.ndarray | None = None) -> dict[str, float]:
    """How close implicit rewards come to the true ones *up to per-prompt constants*, both of
    shape ``(N, K)`` (prompt x response), with response weights ``(N, K)`` (rows sum to 1;
    default uniform):

        c(x)  = sum_y w(x,y) (true - implicit)(x,y)        (the best per-prompt constant)
        rmse  = sqrt(mean_x sum_y w (implicit + c(x) - true)^2)
        corr  = the weighted correlation of the per-prompt-centred scores

    ``rmse = 0`` iff ``implicit = true - const(x)`` on the weighted support.
    """
    a, t = np.asarray(implicit, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if a.shape != t.shape or a.ndim != 2:
        raise ValueError(f"implicit, true: shapes {a.shape} and {t.shape} must be equal (N, K)")
    w = np.full(a.shape, 1.0 / a.shape[1]) if weights is None else np.asarray(weights, float)
    if w.shape != a.shape or (w < 0).any() or not np.allclose(w.sum(axis=1), 1.0):
        raise ValueError(f"weights: expected nonnegative rows of shape {a.shape} summing to 1")
    ac = a - (w * a).sum(axis=1, keepdims=True)  # size = (N, K), per-prompt centred
    tc = t - (w * t).sum(axis=1, keepdims=True)
    rmse = float(np.sqrt((w * (ac - tc) ** 2).sum(axis=1).mean()))
    va, vt = (w * ac ** 2).sum(), (w * tc ** 2).sum()
    corr = float((w * ac * tc).sum() / np.sqrt(va * vt)) if va > 0 and vt > 0 else float("nan")
    return {"rmse": rmse, "corr": corr}


#: the label of each pre-aligned model: the reward's, then one per utility (PKU-SafeRLHF)
PREALIGN_LABELS = {"reward": "better", "safety": "safer"}


def prealign(pairs: Any, prompt_texts: Sequence[str], reference: str | Path, tokenizer: Any,
             output_dir: str | Path, settings: Any, beta: float, seed: int,
             labels: dict[str, str] | None = None, lora: Any = None, dtype: str = "float32",
             progress: bool = True, separator: str = " ",
             log_path: str | Path | None = None) -> dict[str, Path]:
    """PeCAID's pre-alignment: one unconstrained DPO model per label, ``name -> directory``.

    ``pairs`` is a :class:`~dualgap.llm.data.PreferencePairs`; ``labels`` maps a model name to
    the pairs' attribute holding its label (``1`` = ``response_1`` preferred; default
    :data:`PREALIGN_LABELS`).  Each model is a DPO step (:func:`~dualgap.llm.policy_step.
    dpo_step`) from ``pi_ref`` against ``pi_ref``, saved to ``output_dir/<name>``; a finished
    model (its directory exists) is kept, so a killed pre-alignment resumes.  ``separator``
    joins prompt text and response as in the policy step (``data.response_separator``).
    """
    from .distributed import barrier, is_main
    from .policy_step import dpo_step
    from .preferences import preference_dataset

    labels = dict(PREALIGN_LABELS if labels is None else labels)
    if not labels:
        raise ValueError("labels: empty")
    if len(prompt_texts) != len(pairs):
        raise ValueError(f"prompt_texts: {len(prompt_texts)} for {len(pairs)} pairs")
    out = Path(output_dir)
    done: dict[str, Path] = {}
    for i, (name, attr) in enumerate(labels.items()):
        lab = getattr(pairs, attr, None)
        if lab is None:
            raise ValueError(f"labels.{name}: the pairs have no {attr!r} labels "
                             f"(source {getattr(pairs, 'source', '?')!r})")
        target = out / name
        if not target.is_dir():
            records = preference_dataset(prompt_texts, pairs.response_0, pairs.response_1,
                                         np.asarray(lab), separator)
            tmp = out / f"{name}.partial"
            if is_main() and tmp.exists():  # a kill in the middle of this model: start it again
                shutil.rmtree(tmp)
            barrier()
            dpo_step(records, reference, reference, tokenizer, tmp, settings, beta, seed + i,
                     lora=lora, dtype=dtype, progress=progress, log_path=log_path)
            if is_main():
                tmp.replace(target)
                shutil.rmtree(out / f"{name}.partial.work", ignore_errors=True)  # the trainer's
            barrier()
        done[name] = target
    return done

"""Pseudo-preferences from scores (model-based CAID, docs/llm.md).

For a pair ``(x, y_0, y_1)`` and the composite reward ``r_lam = r + lam^T g``::

    P(y_1 preferred) = sigmoid(r_lam(x, y_1) - r_lam(x, y_0))
    label ~ Bernoulli(P(y_1 preferred)),  winner -> chosen, loser -> rejected

drawn with ``numpy.random.default_rng(seed)`` (one uniform per pair, in pair order), so a seed
fixes the labels.  Shapes: ``reward (P, 2)``, ``utilities (m, P, 2)``, ``lam (m,)``.

Soft labels (``train.labels: soft``) keep ``P(y_1 preferred)`` itself instead of a draw
(:func:`soft_preference_dataset`, trained by :mod:`dualgap.llm.soft_dpo`);
:func:`all_pairs_soft_dataset` makes every pair of ``K`` scored responses per prompt.

Distillation (``train.labels: distill``) drops the pairs' comparison: every pool response
``y ~ pi_ref`` is a sample of ``pi_lam ∝ pi_ref exp(r_lam / beta)`` with the self-normalized
importance weight (per prompt ``x``, over its ``n_x`` pool responses)::

    w(x, y) = exp(r_lam(x, y) / beta) / mean_{y' in pool(x)} exp(r_lam(x, y') / beta)

(:func:`distill_weights`), and the step minimizes the weighted NLL ``-sum w log pi_theta(y|x)``,
an estimate of the cross-entropy ``H(pi_lam, pi_theta)`` whose minimizer is ``pi_lam``
(:func:`distill_dataset`, trained by :class:`dualgap.llm.soft_dpo.DistillDPOTrainer`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import expit

__all__ = ["composite_reward", "preference_probabilities", "pseudo_labels", "preference_dataset",
           "soft_preference_dataset", "all_pairs", "all_pairs_soft_dataset", "distill_weights",
           "distill_dataset", "WEIGHT_COLUMNS", "margin_dataset"]

#: the weight columns of :func:`distill_dataset` (``chosen`` = ``y_1``, ``rejected`` = ``y_0``)
WEIGHT_COLUMNS = ("chosen_weight", "rejected_weight")


def composite_reward(reward: np.ndarray, utilities: np.ndarray, lam: Sequence[float]) -> np.ndarray:
    """``r_lam = r + sum_i lam_i g_i``, shape ``(P, 2)``."""
    r = np.asarray(reward, dtype=np.float64)
    g = np.asarray(utilities, dtype=np.float64)
    lam_arr = np.asarray(lam, dtype=np.float64).reshape(-1)
    if r.ndim != 2 or r.shape[1] != 2:
        raise ValueError(f"reward: expected shape (P, 2), got {r.shape}")
    if g.shape != (lam_arr.shape[0],) + r.shape:
        raise ValueError(f"utilities: shape {g.shape} does not match (m, P, 2) = "
                         f"({lam_arr.shape[0]}, {r.shape[0]}, 2)")
    return r + np.einsum("i,ipk->pk", lam_arr, g)


def preference_probabilities(reward: np.ndarray, utilities: np.ndarray,
                             lam: Sequence[float]) -> np.ndarray:
    """``sigmoid(r_lam(y_1) - r_lam(y_0))`` per pair, shape ``(P,)``."""
    rl = composite_reward(reward, utilities, lam)
    return expit(rl[:, 1] - rl[:, 0])


def pseudo_labels(reward: np.ndarray, utilities: np.ndarray, lam: Sequence[float],
                  seed: int | Sequence[int]) -> np.ndarray:
    """``label_p = 1`` (``y_1`` wins) with probability :func:`preference_probabilities`, else 0;
    int array ``(P,)``."""
    p = preference_probabilities(reward, utilities, lam)
    u = np.random.default_rng(seed).random(p.shape[0])
    return (u < p).astype(np.int64)


def preference_dataset(prompt_texts: Sequence[str], response_0: Sequence[str],
                       response_1: Sequence[str], labels: np.ndarray,
                       separator: str = " ") -> dict[str, list[str]]:
    """TRL's ``prompt / chosen / rejected`` columns: the winner (``labels``: 1 = ``y_1``) is
    chosen.  A completion is ``separator + response.strip()``, so that TRL's tokenization of
    ``prompt + completion`` (+ EOS, which TRL appends) is the text of
    :func:`dualgap.llm.data.join_response`."""
    labels = np.asarray(labels)
    if not (len(prompt_texts) == len(response_0) == len(response_1) == labels.shape[0]):
        raise ValueError("labels: prompts, responses and labels differ in length")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels: must be 0 or 1")
    triples = list(zip(response_0, response_1, labels, strict=True))
    chosen = [separator + (b if lab else a).strip() for a, b, lab in triples]
    rejected = [separator + (a if lab else b).strip() for a, b, lab in triples]
    return {"prompt": list(prompt_texts), "chosen": chosen, "rejected": rejected}


def soft_preference_dataset(prompt_texts: Sequence[str], response_0: Sequence[str],
                            response_1: Sequence[str], probabilities: np.ndarray,
                            separator: str = " ") -> dict[str, list]:
    """The soft-label form of :func:`preference_dataset`: ``y_1`` is ``chosen``, ``y_0``
    ``rejected``, and ``preference_probability = P(y_1 preferred)`` (from
    :func:`preference_probabilities`) replaces the sampled label
    (:class:`~dualgap.llm.soft_dpo.SoftLabelDPOTrainer` trains on it)."""
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if not (len(prompt_texts) == len(response_0) == len(response_1) == p.shape[0]):
        raise ValueError("probabilities: prompts, responses and probabilities differ in length")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities: must lie in [0, 1]")
    records = preference_dataset(prompt_texts, response_0, response_1,
                                 np.ones(p.shape[0], dtype=np.int64), separator)
    records["preference_probability"] = p.tolist()
    return records


def all_pairs(num_responses: int) -> np.ndarray:
    """The ``K (K - 1) / 2`` index pairs ``(i, j)``, ``i < j``, of ``K`` responses, shape
    ``(K (K - 1) / 2, 2)``."""
    if not isinstance(num_responses, (int, np.integer)) or num_responses < 2:
        raise ValueError(f"num_responses: all pairs need K >= 2, got {num_responses!r}")
    i, j = np.triu_indices(int(num_responses), k=1)
    return np.stack([i, j], axis=1)


def all_pairs_soft_dataset(prompt_texts: Sequence[str], responses: Sequence[Sequence[str]],
                           reward: np.ndarray, utilities: np.ndarray, lam: Sequence[float],
                           separator: str = " ") -> dict[str, list]:
    """Every pair of the ``K`` responses of each prompt, with soft labels.

    ``responses[p]`` holds prompt ``p``'s ``K`` responses, ``reward (P, K)`` and ``utilities
    (m, P, K)`` their scores; each pair ``(i, j)`` of :func:`all_pairs` gives one record with
    ``P(y_j preferred) = sigmoid(r_lam(y_j) - r_lam(y_i))``, ``P K (K - 1) / 2`` records in
    prompt order.
    """
    r = np.asarray(reward, dtype=np.float64)
    g = np.asarray(utilities, dtype=np.float64)
    lam_arr = np.asarray(lam, dtype=np.float64).reshape(-1)
    if r.ndim != 2 or r.shape[0] != len(prompt_texts):
        raise ValueError(f"reward: expected shape ({len(prompt_texts)}, K), got {r.shape}")
    P, K = r.shape
    if any(len(row) != K for row in responses) or len(responses) != P:
        raise ValueError(f"responses: expected {P} lists of K = {K} responses")
    if g.shape != (lam_arr.shape[0], P, K):
        raise ValueError(f"utilities: shape {g.shape} does not match (m, P, K) = "
                         f"({lam_arr.shape[0]}, {P}, {K})")
    rl = r + np.einsum("i,ipk->pk", lam_arr, g)  # size = (P, K)
    ij = all_pairs(K)  # size = (K(K-1)/2, 2)
    prob = expit(rl[:, ij[:, 1]] - rl[:, ij[:, 0]])  # size = (P, K(K-1)/2)
    rows = np.repeat(np.arange(P), ij.shape[0])
    a = [responses[p][i] for p, (i, _) in zip(rows, np.tile(ij, (P, 1)), strict=True)]
    b = [responses[p][j] for p, (_, j) in zip(rows, np.tile(ij, (P, 1)), strict=True)]
    return soft_preference_dataset([prompt_texts[p] for p in rows], a, b, prob.reshape(-1),
                                   separator)


def distill_weights(reward: np.ndarray, utilities: np.ndarray, lam: Sequence[float],
                    prompts: Sequence, beta: float, log_ratio: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Self-normalized weights ``w = exp(r_lam / beta) / mean_pool(x) exp(r_lam / beta)`` of
    both responses of every pair, ``(P, 2)`` (mean 1 over each prompt's ``2 n_x`` responses),
    and each prompt's effective sample size ``(sum w)^2 / sum w^2`` (prompts in order of first
    appearance, shape ``(X,)``).

    ``log_ratio`` ``(P, 2)``: ``log pi_q(y|x) / pi_ref(y|x)`` of responses sampled from a
    proposal ``pi_q`` instead of ``pi_ref`` (the on-policy pool, ``pi_q = pi_t``); the weights
    are then ``exp(r_lam / beta - log_ratio)``, self-normalized the same way."""
    if not (isinstance(beta, (int, float)) and np.isfinite(beta) and beta > 0):
        raise ValueError(f"beta: must be a finite number > 0, got {beta!r}")
    z = composite_reward(reward, utilities, lam) / float(beta)  # size = (P, 2)
    if log_ratio is not None:
        lr = np.asarray(log_ratio, dtype=np.float64)
        if lr.shape != z.shape:
            raise ValueError(f"log_ratio: expected shape {z.shape}, got {lr.shape}")
        z = z - lr
    if len(prompts) != z.shape[0]:
        raise ValueError(f"prompts: {len(prompts)} prompts for {z.shape[0]} pairs")
    if not np.isfinite(z).all():
        raise ValueError("reward: the composite reward r_lam / beta must be finite")
    index: dict = {}
    group = np.array([index.setdefault(x, len(index)) for x in prompts], dtype=np.int64)
    X = len(index)
    zmax = np.full(X, -np.inf)
    np.maximum.at(zmax, group, z.max(axis=1))
    e = np.exp(z - zmax[group, None])  # size = (P, 2), <= 1
    total = np.bincount(group, weights=e.sum(axis=1), minlength=X)
    count = np.bincount(group, minlength=X) * 2.0
    w = e * (count / total)[group, None]
    sq = np.bincount(group, weights=(w ** 2).sum(axis=1), minlength=X)
    ess = count ** 2 / sq
    return w, ess


def distill_dataset(prompt_texts: Sequence[str], response_0: Sequence[str],
                    response_1: Sequence[str], weights: np.ndarray,
                    separator: str = " ") -> dict[str, list]:
    """The records of the distillation step: ``y_1`` is ``chosen``, ``y_0`` ``rejected`` (TRL's
    columns, so the batches and steps are DPO's), with their weights ``weights[:, 1]`` and
    ``weights[:, 0]`` (:func:`distill_weights`) in :data:`WEIGHT_COLUMNS`."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != 2 or w.shape[0] != len(prompt_texts):
        raise ValueError(f"weights: expected shape ({len(prompt_texts)}, 2), got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights: must be finite and >= 0")
    records = preference_dataset(prompt_texts, response_0, response_1,
                                 np.ones(w.shape[0], dtype=np.int64), separator)
    records[WEIGHT_COLUMNS[0]] = w[:, 1].tolist()
    records[WEIGHT_COLUMNS[1]] = w[:, 0].tolist()
    return records


def margin_dataset(prompt_texts: Sequence[str], response_0: Sequence[str],
                   response_1: Sequence[str], reward: np.ndarray, utilities: np.ndarray,
                   lam: Sequence[float], separator: str = " ") -> dict[str, list]:
    """The records of the margin-regression step (``train.labels: regress``): ``y_1`` is
    ``chosen``, ``y_0`` ``rejected``, and ``reward_margin = r_lam(y_1) - r_lam(y_0)``
    (:class:`~dualgap.llm.soft_dpo.RegressDPOTrainer` regresses ``beta Delta`` on it)."""
    rl = composite_reward(reward, utilities, lam)
    records = preference_dataset(prompt_texts, response_0, response_1,
                                 np.ones(rl.shape[0], dtype=np.int64), separator)
    records["reward_margin"] = (rl[:, 1] - rl[:, 0]).tolist()
    return records

"""Pseudo-preferences from scores (model-based CAID, docs/llm.md).

For a pair ``(x, y_0, y_1)`` and the composite reward ``r_lam = r + lam^T g``::

    P(y_1 preferred) = sigmoid(r_lam(x, y_1) - r_lam(x, y_0))
    label ~ Bernoulli(P(y_1 preferred)),  winner -> chosen, loser -> rejected

drawn with ``numpy.random.default_rng(seed)`` (one uniform per pair, in pair order), so a seed
fixes the labels.  Shapes: ``reward (P, 2)``, ``utilities (m, P, 2)``, ``lam (m,)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import expit

__all__ = ["composite_reward", "preference_probabilities", "pseudo_labels", "preference_dataset"]


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

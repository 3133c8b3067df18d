"""Empirical instances: the problem seen through K sampled responses per prompt (numpy only).

The one-shot multiplier (README "Algorithms") is the exact dual solver applied to an
*empirical instance*: for every prompt ``x`` draw ``y_{x,1..K} ~ pi_ref(.|x)`` and build the
problem whose responses are the samples, with reference weights ``1/K`` each::

    r_hat(x, k)   = r(x, y_{x,k})              # size = (X, K)
    g_hat(x, k)   = g(x, y_{x,k})              # size = (m, X, K)
    pi_ref_hat    = 1/K on every column        # size = (X, K)

and the *original* problem's threshold semantics: with relative constraints the offset is
``c_hat = E_rho (1/K) sum_k g(x, y_{x,k}) + b`` (``E_ref g`` estimated from the same samples,
which is what an :class:`~dualgap.problem.AlignmentProblem` with a uniform reference computes);
with absolute constraints ``c_hat = b``.  The dual of the empirical instance is::

    D_hat(lam) = beta E_rho log (1/K) sum_k exp((r + lam^T h_hat)(x, y_{x,k}) / beta)

a sample-average estimate of ``D(lam)`` (biased upwards for a fixed ``lam``, by Jensen's
inequality on the log).  Duplicated samples stay as separate columns (weight ``1/K`` each).

The LLM half builds the same instance from sampled *scores* with
:func:`empirical_problem_from_scores`, so the exact and the empirical worlds share code.
"""

from __future__ import annotations

import numpy as np

from .dual import check_policy
from .problem import AlignmentProblem, as_real_array

__all__ = ["sample_responses", "empirical_problem", "empirical_problem_from_scores"]


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    is_bool = isinstance(rng, (bool, np.bool_))
    if rng is None or (isinstance(rng, (int, np.integer)) and not is_bool):
        return np.random.default_rng(rng)
    raise ValueError(f"rng: expected a numpy Generator, an int seed or None, got {rng!r}")


def sample_responses(policy: np.ndarray, num_samples: int,
                     rng: np.random.Generator | int | None = None) -> np.ndarray:
    """``num_samples`` i.i.d. responses per prompt from ``policy(.|x)``, shape ``(X, K)`` (int).

    Inverse-CDF sampling on the whole table at once: the per-row CDFs are shifted by the row
    index and searched in one ``searchsorted``; every CDF is set to exactly 1 from the last
    positive entry of its row on, so zero-probability responses are never drawn.

    Raises:
        ValueError: ``num_samples < 1``; ``policy`` not a 2-D table of non-negative rows summing
            to 1 (within 1e-8).
    """
    if (isinstance(num_samples, (bool, np.bool_)) or not isinstance(num_samples, (int, np.integer))
            or num_samples < 1):
        raise ValueError(f"num_samples: must be a positive int, got {num_samples!r}")
    p = check_policy(policy)
    sums = p.sum(axis=1)
    rng = _as_rng(rng)
    X, Y = p.shape
    cdf = np.cumsum(p, axis=1) / sums[:, None]  # size = (X, Y)
    last = Y - 1 - np.argmax(p[:, ::-1] > 0, axis=1)  # last positive entry per row, size = (X,)
    cdf[np.arange(Y)[None, :] >= last[:, None]] = 1.0
    rows = np.arange(X, dtype=np.float64)[:, None]
    u = rng.random((X, int(num_samples))) + rows  # size = (X, K), in [x, x + 1)
    flat = np.searchsorted((cdf + rows).ravel(), u.ravel(), side="right")
    return flat.reshape(X, -1) - (np.arange(X) * Y)[:, None]


def empirical_problem_from_scores(
    reward: np.ndarray,
    utilities: np.ndarray,
    thresholds: np.ndarray,
    beta: float,
    *,
    relative: bool = True,
    prompt_weights: np.ndarray | None = None,
    names: tuple[str, ...] | None = None,
) -> AlignmentProblem:
    """The empirical instance of K scored samples per prompt, reference weights ``1/K``.

    Args:
        reward: ``r(x, y_{x,k})``, shape ``(X, K)``.
        utilities: ``g_i(x, y_{x,k})``, shape ``(m, X, K)``.
        thresholds: ``b``, shape ``(m,)``, in the original problem's semantics (relative: the
            improvement over the reference, whose ``E_ref g`` is then the sample mean).
        beta, relative, prompt_weights, names: as in :class:`~dualgap.problem.AlignmentProblem`.
    """
    r = as_real_array("reward", reward)
    if r.ndim != 2:
        raise ValueError(f"reward: expected shape (X, K), got {r.shape}")
    X, K = r.shape
    ref = np.full((X, K), 1.0 / K) if K else np.zeros((X, 0))
    return AlignmentProblem(r, utilities, thresholds, beta, ref, prompt_weights,
                            relative=relative, names=names)


def empirical_problem(problem: AlignmentProblem, num_samples: int,
                      rng: np.random.Generator | int | None = None,
                      samples: np.ndarray | None = None) -> AlignmentProblem:
    """The empirical instance of ``problem`` on ``K = num_samples`` reference samples per prompt.

    ``samples`` (shape ``(X, K)``, response indices) replaces the draw when given (so the
    caller can keep the indices: ``samples = sample_responses(problem.reference, K, rng)``).
    The thresholds, ``relative``, ``beta``, ``rho`` and names are the original problem's.
    """
    if (isinstance(num_samples, (bool, np.bool_)) or not isinstance(num_samples, (int, np.integer))
            or num_samples < 1):
        raise ValueError(f"num_samples: must be a positive int, got {num_samples!r}")
    if samples is None:
        samples = sample_responses(problem.reference, num_samples, rng)
    idx = np.asarray(samples)
    X = problem.num_prompts
    if idx.ndim != 2 or idx.shape != (X, num_samples):
        raise ValueError(f"samples: expected shape ({X}, {num_samples}), got {idx.shape}")
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"samples: expected integer response indices, got dtype {idx.dtype}")
    if (idx < 0).any() or (idx >= problem.num_responses).any():
        raise ValueError(f"samples: indices must lie in [0, {problem.num_responses})")
    rows = np.arange(X)[:, None]
    if not problem.support[rows, idx].all():
        x, k = (int(v) for v in np.argwhere(~problem.support[rows, idx])[0])
        raise ValueError(f"samples: response {int(idx[x, k])} at x = {x} is outside the "
                         "reference support")
    return empirical_problem_from_scores(
        problem.reward[rows, idx], problem.utilities[:, rows, idx], problem.thresholds,
        problem.beta, relative=problem.relative, prompt_weights=problem.prompt_weights,
        names=problem.names,
    )

"""Estimates of the dual (sub)gradient ``u = E_rho E_pi h`` from sampled responses (numpy only).

With ``N`` responses ``y_{x,1..N} ~ pi(.|x)`` drawn for *every* prompt::

    u_hat = sum_x rho(x) (1/N) sum_n h(x, y_{x,n})            (unbiased for E_rho E_pi h)
    E ||u_hat||^2 = ||E_rho E_pi h||^2 + (1/N) sum_x rho(x)^2 tr Cov_{pi(.|x)}(h(x, .))

The second moment is the ``S^2`` of the stochastic dual-descent bound (docs/theory.md) at one
multiplier; :func:`slack_second_moment` computes it exactly.
"""

from __future__ import annotations

import numpy as np

from ..dual import constraint_slack
from ..empirical import sample_responses
from ..problem import AlignmentProblem

__all__ = ["sampled_slack", "slack_second_moment", "estimate_slack"]


def sampled_slack(problem: AlignmentProblem, policy: np.ndarray, num_samples: int,
                  rng: np.random.Generator) -> np.ndarray:
    """``u_hat = sum_x rho(x) (1/N) sum_n h(x, y_{x,n})`` with ``y_{x,n} ~ policy(.|x)``,
    shape ``(m,)``."""
    idx = sample_responses(policy, num_samples, rng)  # size = (X, N)
    rows = np.arange(problem.num_prompts)[:, None]
    mean_g = problem.utilities[:, rows, idx].mean(axis=2)  # size = (m, X)
    return mean_g @ problem.prompt_weights - problem.offsets


def estimate_slack(problem: AlignmentProblem, policy: np.ndarray, num_samples: int | None,
                   rng: np.random.Generator) -> np.ndarray:
    """The exact ``E_rho E_pi h`` when ``num_samples`` is None, else :func:`sampled_slack`."""
    if num_samples is None:
        return constraint_slack(problem, policy)
    return sampled_slack(problem, policy, num_samples, rng)


def slack_second_moment(problem: AlignmentProblem, policy: np.ndarray,
                        num_samples: int) -> float:
    """``E ||u_hat||^2 = ||E_rho E_pi h||^2 + (1/N) sum_x rho(x)^2 tr Cov_{pi(.|x)}(h(x, .))``."""
    pi = np.asarray(policy, dtype=np.float64)
    return second_moment(problem, pi, constraint_slack(problem, pi), num_samples)


def second_moment(problem: AlignmentProblem, pi: np.ndarray, mean: np.ndarray,
                  num_samples: int) -> float:
    """:func:`slack_second_moment` given the validated policy ``pi`` and its exact slack
    ``mean = E_rho E_pi h`` (the trajectory recorder has both)."""
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples: must be a positive int, got {num_samples!r}")
    g = problem.utilities  # size = (m, X, Y)
    mu = np.einsum("xy,ixy->ix", pi, g)  # size = (m, X)
    gc = g - mu[:, :, None]  # centered per prompt, size = (m, X, Y)
    var = np.einsum("xy,ixy->x", pi, gc * gc)  # tr Cov per prompt, size = (X,)
    rho = problem.prompt_weights
    return float(mean @ mean + (rho * rho) @ var / num_samples)

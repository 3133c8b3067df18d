"""Hypothesis strategies for alignment problems, for users' property tests and ours.

    from hypothesis import given
    from dualgap.testing import problems

    @given(problems(max_constraints=3))
    def test_my_rule(problem): ...

Every problem drawn is strictly feasible with a known Slater margin (``margin`` or more), so
``lam*`` is finite and strong duality holds; ``support`` restrictions and ill-conditioned
variants (tiny/huge ``beta``, large score scales, nearly collinear utilities) are opt-in.
Requires ``hypothesis`` (a ``dev`` extra).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from .instances import random_problem
from .problem import AlignmentProblem

__all__ = ["problems", "multipliers"]


@st.composite
def problems(
    draw: st.DrawFn,
    *,
    min_prompts: int = 1,
    max_prompts: int = 5,
    min_responses: int = 2,
    max_responses: int = 8,
    min_constraints: int = 0,
    max_constraints: int = 3,
    beta: st.SearchStrategy[float] | None = None,
    margin: float = 0.05,
    restrict_support: bool = True,
    relative: bool | None = None,
    ill_conditioned: bool = False,
) -> AlignmentProblem:
    """Random strictly feasible instances (Slater margin ``>= margin``).

    Args:
        beta: a strategy for ``beta`` (default log-uniform in ``[0.05, 5]``; with
            ``ill_conditioned`` in ``[1e-3, 1e2]``).
        restrict_support: let some reference entries be zero (at least one per prompt kept).
        relative: force relative/absolute constraints (default: either).
        ill_conditioned: also draw score scales up to 1e3, utilities nearly collinear with each
            other, and extreme ``beta``.
    """
    X = draw(st.integers(min_prompts, max_prompts), label="num_prompts")
    Y = draw(st.integers(min_responses, max_responses), label="num_responses")
    m = draw(st.integers(min_constraints, max_constraints), label="num_constraints")
    if beta is None:
        lo, hi = (-3.0, 2.0) if ill_conditioned else (np.log10(0.05), np.log10(5.0))
        beta_v = 10 ** draw(st.floats(lo, hi), label="log10_beta")
    else:
        beta_v = draw(beta, label="beta")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    support = draw(st.sampled_from([1.0, 0.7, 0.4]), label="support_fraction") \
        if restrict_support else 1.0
    rel = draw(st.booleans(), label="relative") if relative is None else relative
    scale = 10 ** draw(st.floats(0.0, 3.0), label="log10_scale") if ill_conditioned else 1.0
    tightness = draw(st.floats(0.2, 1.0), label="tightness")
    corr = draw(st.floats(-0.9, 0.5), label="correlation")
    problem = random_problem(
        seed, X, Y, m, beta_v, margin=margin * scale, support_fraction=support, scale=scale,
        tightness=tightness, relative=rel, correlation=corr,
    )
    if ill_conditioned and m >= 2 and draw(st.booleans(), label="collinear"):
        g = problem.utilities.copy()
        g[1] = g[0] + 1e-3 * scale * np.random.default_rng(seed).normal(size=g[0].shape)
        # re-place thresholds so that a witness stays strictly feasible
        problem = random_problem(
            seed, X, Y, m, beta_v, margin=margin * scale, support_fraction=support,
            scale=scale, tightness=tightness, relative=rel, correlation=corr,
        ).replace(utilities=g, thresholds=np.full(m, -margin * scale) if rel
                  else _absolute_levels(problem, g, margin * scale))
    return problem


def _absolute_levels(problem: AlignmentProblem, g: np.ndarray, margin: float) -> np.ndarray:
    """Levels met by ``pi_ref`` with margin: ``E_ref g - margin``."""
    return np.einsum("x,xy,ixy->i", problem.prompt_weights, problem.reference, g) - margin


def multipliers(m: int, max_value: float = 10.0) -> st.SearchStrategy[np.ndarray]:
    """Non-negative multiplier vectors of length ``m``."""
    return st.lists(st.floats(0.0, max_value, allow_nan=False), min_size=m, max_size=m).map(
        lambda v: np.asarray(v, dtype=float)
    )

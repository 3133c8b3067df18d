"""Built-in instances: random ones with a known Slater margin, and the demo instance.

All generators are seeded and return :class:`~dualgap.problem.AlignmentProblem`.  Numpy only.
"""

from __future__ import annotations

import numpy as np

from .problem import AlignmentProblem

__all__ = ["random_problem", "demo_problem", "DEMO_DESCRIPTION"]


def _check_int(name: str, value: object, lo: int) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: must be an int >= {lo}, got {value!r}")
    if value < lo:
        raise ValueError(f"{name}: must be an int >= {lo}, got {value!r}")


def _check_real(name: str, value: object, lo: float, hi: float = np.inf,
                lo_open: bool = True) -> float:
    """A finite real in ``(lo, hi]`` (``[lo, hi]`` when not ``lo_open``)."""
    from .problem import as_real_scalar

    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: must be a real number, got {value!r}")
    v = as_real_scalar(name, value)
    ok = np.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi
    if not ok:
        left = "(" if lo_open else "["
        raise ValueError(f"{name}: must be a finite number in {left}{lo:g}, {hi:g}], got {value!r}")
    return v


def random_problem(
    seed: int = 0,
    num_prompts: int = 6,
    num_responses: int = 8,
    num_constraints: int = 2,
    beta: float = 0.5,
    *,
    margin: float = 0.1,
    support_fraction: float = 1.0,
    scale: float = 1.0,
    tightness: float = 0.7,
    relative: bool = True,
    correlation: float = -0.5,
) -> AlignmentProblem:
    """A random instance that is strictly feasible with Slater margin at least ``margin``.

    Scores are Gaussian (``scale``), utilities correlated with the reward by ``correlation``
    (negative: in tension with it).  Thresholds are placed a fraction ``tightness`` of the way
    from the reference's value to a witness policy's value (the witness is the best-utility
    response per prompt mixed with ``pi_ref``), minus ``margin``; so the witness is strictly
    feasible and, for ``tightness`` near 1, the constraints bind.
    ``support_fraction < 1`` zeroes that share of reference entries (at least one kept per row).
    """
    _check_int("seed", seed, 0)
    _check_int("num_prompts", num_prompts, 1)
    _check_int("num_responses", num_responses, 1)
    _check_int("num_constraints", num_constraints, 0)
    beta = _check_real("beta", beta, lo=0.0)
    margin = _check_real("margin", margin, lo=0.0, lo_open=False)
    support_fraction = _check_real("support_fraction", support_fraction, lo=0.0, hi=1.0)
    scale = _check_real("scale", scale, lo=0.0)
    tightness = _check_real("tightness", tightness, lo=0.0, lo_open=False)
    correlation = _check_real("correlation", correlation, lo=-1.0, lo_open=False, hi=1.0)
    if not isinstance(relative, (bool, np.bool_)):
        raise ValueError(f"relative: must be a bool, got {relative!r}")
    rng = np.random.default_rng(seed)
    X, Y, m = num_prompts, num_responses, num_constraints
    ref = rng.dirichlet(np.full(Y, 1.0), size=X)
    if support_fraction < 1.0:
        keep = rng.random((X, Y)) < support_fraction
        keep[np.arange(X), rng.integers(0, Y, X)] = True
        ref = np.where(keep, ref, 0.0)
        ref /= ref.sum(axis=1, keepdims=True)
    r = scale * rng.normal(size=(X, Y))
    noise = rng.normal(size=(m, X, Y))
    g = correlation * r[None] + scale * np.sqrt(max(0.0, 1 - correlation**2)) * noise
    # witness: per prompt, the response maximizing the mean utility, mixed 50/50 with pi_ref
    mean_g = g.mean(axis=0) if m else r
    best = np.argmax(np.where(ref > 0, mean_g, -np.inf), axis=1)
    witness = 0.5 * ref
    witness[np.arange(X), best] += 0.5
    rho = np.full(X, 1.0 / X)
    e_wit = np.einsum("x,xy,ixy->i", rho, witness, g)
    e_ref = np.einsum("x,xy,ixy->i", rho, ref, g)
    level = e_ref + tightness * (e_wit - e_ref) - margin
    level = np.minimum(level, e_wit - margin)
    b = level - e_ref if relative else level
    return AlignmentProblem(r, g, b, beta, ref, rho, relative=relative)


DEMO_DESCRIPTION = """\
The demo instance ("assistant with two guard rails"): 40 prompts x 256 candidate responses.
Each response y has a latent quality q(x, y) and two risk features (toxicity-like u1 and
privacy-leak-like u2).  The reward r = q + 0.8*u1 + 0.5*u2 (risky answers look more helpful, the
tension the paper studies); the utilities are g1 = -u1 (harmlessness) and g2 = -u2 (privacy).
The reference policy is a softmax of 0.5*q with 15% of entries outside its support (responses it
never produces).  Constraints (relative, as in the paper): improve each utility over pi_ref by
b = (0.25, 0.12).  beta = 0.1 (the paper's KL coefficient)."""


def demo_problem(seed: int = 2025) -> AlignmentProblem:
    """The documented built-in instance of ``dualgap demo`` (see :data:`DEMO_DESCRIPTION`)."""
    _check_int("seed", seed, 0)
    rng = np.random.default_rng(seed)
    X, Y = 40, 256
    q = rng.normal(size=(X, Y))
    u1 = np.abs(rng.normal(size=(X, Y))) * (rng.random((X, Y)) < 0.5)
    u2 = rng.exponential(0.7, size=(X, Y)) * (rng.random((X, Y)) < 0.3)
    r = q + 0.8 * u1 + 0.5 * u2
    logits = 0.5 * q
    logits[rng.random((X, Y)) < 0.15] = -np.inf
    logits[np.arange(X), np.argmax(q, axis=1)] = 0.5 * q.max(axis=1)  # keep one per row
    ref = np.exp(logits - logits.max(axis=1, keepdims=True))
    ref /= ref.sum(axis=1, keepdims=True)
    g = np.stack([-u1, -u2])
    return AlignmentProblem(
        r, g, [0.25, 0.12], 0.1, ref, relative=True, names=("harmlessness", "privacy")
    )

"""The closed-form distribution-space dual and policy functionals (docs/problem.md).

For ``lam >= 0`` (shape ``(m,)``)::

    D(lam)      = beta * E_rho log sum_y pi_ref(y|x) exp((r + lam^T h)(x, y) / beta)
                = beta * E_rho LSE_y[log pi_ref + (r + lam^T g) / beta] - lam^T c
    pi_lam(y|x) = pi_ref(y|x) exp((r + lam^T g)(x, y) / beta) / Z_lam(x)     (c cancels per prompt)
    grad D(lam) = E_rho E_{pi_lam}[h]                 (the constraint slack at pi_lam)
    hess D(lam) = (1/beta) E_rho Cov_{pi_lam}(h)      (= (1/beta) E_rho Cov_{pi_lam}(g))

Everything is float64, whole-array and processed in blocks of prompts (so the working memory is
a few blocks, not a few copies of the ``(X, Y)`` table); the log-sum-exp is shifted by its row
maximum over the support, so scores of 1e4 with beta = 1e-4 do not overflow.

The same functions serve the exact solver, the theory checks and (through empirical instances)
the LLM pipeline.  This module imports numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .problem import AlignmentProblem

__all__ = [
    "DualEval",
    "dual_oracle",
    "dual_value",
    "dual_gradient",
    "dual_hessian",
    "lagrangian_policy",
    "expected_utilities",
    "constraint_slack",
    "kl_divergence",
    "objective",
    "lagrangian",
    "check_policy",
]

#: Target number of table entries processed per block.
BLOCK_ENTRIES = 1 << 16


@dataclass(frozen=True)
class DualEval:
    """``D(lam)`` and, when asked for, its gradient ``(m,)`` and Hessian ``(m, m)``."""

    lam: np.ndarray
    value: float
    gradient: np.ndarray | None = None
    hessian: np.ndarray | None = None


def _check_lam(problem: AlignmentProblem, lam: object, overflow_guard: bool = True) -> np.ndarray:
    """``lam`` as float64 ``(m,)``: real numbers, finite, ``>= 0`` (else ``ValueError``).

    With ``overflow_guard``, also that ``D``, its gradient and Hessian stay finite.

    The oracle works in the problem's own units: ``|r + lam^T g| / beta`` (bounded by
    ``(max |r| + lam^T max |g|) / beta``) and ``Cov(g) / beta`` (by ``(2 max |g|)^2 / beta``)
    must fit in float64; otherwise a ``ValueError`` says so (``dualgap.solve`` works in
    normalized units and is not limited by this).
    """
    from .problem import as_real_array

    if not isinstance(problem, AlignmentProblem):
        raise ValueError(f"problem: expected an AlignmentProblem, got {type(problem).__name__}")
    m = problem.num_constraints
    arr = np.zeros(0) if lam is None and m == 0 else as_real_array("lam", lam)
    arr = arr.reshape(-1) if m or arr.size == 0 else arr
    if arr.shape != (m,):
        raise ValueError(f"lam: shape {arr.shape} does not match m = {m}")
    if not np.isfinite(arr).all():
        raise ValueError(f"lam: non-finite value in {arr.tolist()}")
    if (arr < 0).any():
        raise ValueError(f"lam: multipliers must be >= 0, got {arr.tolist()}")
    if not overflow_guard:
        return arr
    beta = problem.beta
    r_max, g_max = problem.entry_bounds
    with np.errstate(over="ignore", invalid="ignore"):
        z_bound = np.float64(2.0) * (r_max + arr @ g_max) / beta
        c_bound = np.abs(arr) @ np.abs(problem.offsets) if arr.size else 0.0
        h_bound = np.square(2.0 * g_max.max(initial=0.0)) / beta
    if not (np.isfinite(z_bound) and np.isfinite(c_bound)):
        raise ValueError(f"lam: {arr.tolist()} is too large for this problem: (r + lam^T g) / beta "
                         f"overflows float64 (max |r| = {r_max:.3g}, beta = {beta:.3g})")
    if not np.isfinite(h_bound):
        raise ValueError(f"utilities: hess D = Cov(g) / beta overflows float64 (max |g| = "
                         f"{float(g_max.max()):.3g}, beta = {beta:.3g}); dualgap.solve works in "
                         "normalized units")
    return arr


def _blocks(problem: AlignmentProblem):
    X, Y = problem.reward.shape
    step = max(1, BLOCK_ENTRIES // Y)
    for start in range(0, X, step):
        yield slice(start, min(X, start + step))


def _block_log_weights(problem: AlignmentProblem, lam: np.ndarray, blk: slice) -> np.ndarray:
    """``log pi_ref + (r + lam^T g) / beta`` on a block of prompts, shape ``(b, Y)``."""
    z = problem.reward[blk].copy()  # size = (b, Y)
    for i, li in enumerate(lam):
        if li != 0.0:
            z += li * problem.utilities[i, blk]
    z *= 1.0 / problem.beta
    z += problem.log_reference[blk]
    return z


def _block_policy(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalize log-weights in place: returns ``(pi, log Z)`` with shapes ``(b, Y)``, ``(b,)``."""
    zmax = z.max(axis=1, keepdims=True)  # finite: every row has support
    z -= zmax
    np.exp(z, out=z)
    total = z.sum(axis=1)
    z /= total[:, None]
    return z, np.log(total) + zmax[:, 0]


def dual_oracle(problem: AlignmentProblem, lam: object, order: int = 2) -> DualEval:
    """``D(lam)`` with its gradient (``order >= 1``) and Hessian (``order >= 2``), in one pass."""
    lam = _check_lam(problem, lam)
    if order not in (0, 1, 2):
        raise ValueError(f"order: must be 0, 1 or 2, got {order!r}")
    m, rho, beta = problem.num_constraints, problem.prompt_weights, problem.beta
    value = 0.0
    grad = np.zeros(m)
    hess = np.zeros((m, m))
    for blk in _blocks(problem):
        p, log_z = _block_policy(_block_log_weights(problem, lam, blk))
        w = rho[blk]
        value += beta * float(w @ log_z)
        if order >= 1 and m:
            g = problem.utilities[:, blk]  # size = (m, b, Y)
            mean = np.einsum("xy,ixy->ix", p, g)  # size = (m, b)
            grad += mean @ w
            if order >= 2:
                gc = g - mean[:, :, None]  # size = (m, b, Y), centered per prompt
                wp = (p * w[:, None])[None]  # size = (1, b, Y)
                flat = gc.reshape(m, -1)
                weighted = flat * wp.reshape(1, -1)
                # m = 1: einsum, not BLAS: some OpenBLAS builds take ~200x longer on a dot
                # product of this length than numpy's own loop
                hess += np.einsum("k,k->", weighted[0], flat[0]) if m == 1 else weighted @ flat.T
    c = problem.offsets
    value -= float(lam @ c)
    return DualEval(
        lam=lam,
        value=value,
        gradient=grad - c if order >= 1 else None,
        hessian=(hess + hess.T) / (2.0 * beta) if order >= 2 else None,
    )


def dual_value(problem: AlignmentProblem, lam: object) -> float:
    """``D(lam) = beta E_rho log sum_y pi_ref exp((r + lam^T h) / beta)``."""
    return dual_oracle(problem, lam, order=0).value


def dual_gradient(problem: AlignmentProblem, lam: object) -> np.ndarray:
    """``grad D(lam) = E_rho E_{pi_lam} h``, shape ``(m,)``."""
    return dual_oracle(problem, lam, order=1).gradient  # type: ignore[return-value]


def dual_hessian(problem: AlignmentProblem, lam: object) -> np.ndarray:
    """``hess D(lam) = (1/beta) E_rho Cov_{pi_lam}(h)``, shape ``(m, m)``."""
    return dual_oracle(problem, lam, order=2).hessian  # type: ignore[return-value]


def lagrangian_policy(problem: AlignmentProblem, lam: object) -> np.ndarray:
    """``pi_lam(y|x) ∝ pi_ref(y|x) exp((r + lam^T g) / beta)``, shape ``(X, Y)``.

    The maximizer of ``L(pi, lam)`` over all policies; exactly zero outside the support.
    Computed in normalized units (:mod:`dualgap.scaling`: per-prompt constants and the offsets
    ``c`` cancel, so ``r + lam^T h`` is formed without cancellation); a ``lam`` so large that
    the exponent overflows float64 raises ``ValueError``, never a row of NaN.
    """
    lam = _check_lam(problem, lam, overflow_guard=False)
    norm = problem.normalized
    lam_n = norm.to_internal(lam)
    inner = norm.problem
    out = np.empty_like(problem.reward)
    with np.errstate(over="ignore", invalid="ignore"):
        for blk in _blocks(inner):
            out[blk], _ = _block_policy(_block_log_weights(inner, lam_n, blk))
    if not np.isfinite(out).all():
        raise ValueError(f"lam: {lam.tolist()} is too large for this problem: (r + lam^T h) / beta "
                         f"overflows float64 (beta = {problem.beta:.3g})")
    return out


# ----------------------------------------------------------------- policy functionals
def check_policy(policy: object, shape: tuple[int, int] | None = None,
                 name: str = "policy") -> np.ndarray:
    """Validate a policy table: float64 ``(X, Y)`` (``shape`` when given), finite, ``>= 0``,
    rows summing to 1 within 1e-8.  Raises ``ValueError`` naming ``name`` and the bad value."""
    from .problem import as_real_array

    pi = as_real_array(name, policy)
    if pi.ndim != 2 or pi.shape[1] == 0 or (shape is not None and pi.shape != tuple(shape)):
        want = "(X, Y)" if shape is None else str(tuple(shape))
        raise ValueError(f"{name}: shape {pi.shape} does not match {want}")
    if not np.isfinite(pi).all() or (pi < 0).any():
        raise ValueError(f"{name}: entries must be finite and >= 0")
    sums = pi.sum(axis=1)
    if np.abs(sums - 1).max() > 1e-8:
        x = int(np.argmax(np.abs(sums - 1)))
        raise ValueError(f"{name}: row x = {x} sums to {float(sums[x])!r}, not 1")
    return pi


def _check_policy(problem: AlignmentProblem, policy: object) -> np.ndarray:
    if not isinstance(problem, AlignmentProblem):
        raise ValueError(f"problem: expected an AlignmentProblem, got {type(problem).__name__}")
    return check_policy(policy, problem.reward.shape)


def expected_utilities(problem: AlignmentProblem, policy: object) -> np.ndarray:
    """``E_rho E_pi g_i``, shape ``(m,)``."""
    pi = _check_policy(problem, policy)
    return np.einsum("x,xy,ixy->i", problem.prompt_weights, pi, problem.utilities)


def constraint_slack(problem: AlignmentProblem, policy: object) -> np.ndarray:
    """``E_rho E_pi h_i`` (``>= 0`` means constraint ``i`` holds), shape ``(m,)``."""
    return expected_utilities(problem, policy) - problem.offsets


def kl_divergence(problem: AlignmentProblem, policy: object) -> np.ndarray:
    """``KL(pi(.|x) || pi_ref(.|x))`` per prompt, shape ``(X,)``; ``inf`` off the support."""
    pi = _check_policy(problem, policy)
    pos = pi > 0
    off = pos & ~problem.support
    log_ratio = np.zeros_like(pi)
    ok = pos & problem.support
    log_ratio[ok] = np.log(pi[ok]) - problem.log_reference[ok]
    kl = (pi * log_ratio).sum(axis=1)
    kl[off.any(axis=1)] = np.inf
    return np.maximum(kl, 0.0)


def objective(problem: AlignmentProblem, policy: object) -> float:
    """``J(pi) = E_rho [E_pi r - beta KL(pi(.|x) || pi_ref(.|x))]``."""
    pi = _check_policy(problem, policy)
    rho = problem.prompt_weights
    reward = float(rho @ np.einsum("xy,xy->x", pi, problem.reward))
    return reward - problem.beta * float(rho @ kl_divergence(problem, pi))


def lagrangian(problem: AlignmentProblem, policy: object, lam: object) -> float:
    """``L(pi, lam) = J(pi) + lam^T E_rho E_pi h``."""
    lam = _check_lam(problem, lam)
    return objective(problem, policy) + float(lam @ constraint_slack(problem, policy))

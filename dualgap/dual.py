"""The closed-form distribution-space dual and policy functionals (docs/problem.md).

For ``lam >= 0`` (shape ``(m,)``)::

    D(lam)      = beta * E_rho log sum_y pi_ref(y|x) exp((r + lam^T h)(x, y) / beta)
                = beta * E_rho LSE_y[log pi_ref + (r + lam^T g) / beta] - lam^T c
    pi_lam(y|x) = pi_ref(y|x) exp((r + lam^T g)(x, y) / beta) / Z_lam(x)     (c cancels per prompt)
    grad D(lam) = E_rho E_{pi_lam}[h]                 (the constraint slack at pi_lam)
    hess D(lam) = (1/beta) E_rho Cov_{pi_lam}(h)      (= (1/beta) E_rho Cov_{pi_lam}(g))

Everything is float64 and processed in blocks of prompts that fit in cache: one oracle call reads
the data once (:func:`dual_sums`), with one ``(b, Y)`` and one ``(m, b, Y)`` buffer as its only
temporaries; the log-sum-exp is shifted by its row maximum over the support, so scores of 1e4
with beta = 1e-4 do not overflow.  The per-row sums add up over any split of the prompts, which
is how chunked (out-of-memory) problems and the torch backend reuse them.

The same functions serve the exact solver, the theory checks and (through empirical instances)
the LLM pipeline.  This module imports numpy only.
"""

from __future__ import annotations

import numpy as np

from .dual_kernels import (  # noqa: F401  (re-exported: the block sums live there)
    BLOCK_ENTRIES,
    CANCELLATION,
    DualEval,
    DualSums,
    LogOf,
    PolicySums,
    check_base,
    dual_sums,
    dual_sums_batch,
    policy_sums,
)
from .problem import AlignmentProblem

__all__ = [
    "DualEval",
    "DualSums",
    "dual_sums",
    "PolicySums",
    "policy_sums",
    "policy_terms",
    "BACKENDS",
    "dual_backend",
    "dual_oracle",
    "dual_value",
    "dual_gradient",
    "dual_hessian",
    "dual_hessians",
    "lagrangian_policy",
    "expected_utilities",
    "constraint_slack",
    "kl_divergence",
    "objective",
    "lagrangian",
    "check_policy",
]



def check_multipliers(lam: object, m: int) -> np.ndarray:
    """``lam`` as float64 ``(m,)``: real numbers (no strings, bools, complex), finite, ``>= 0``.

    The check every multiplier passes, whatever holds the data (an in-memory
    :class:`AlignmentProblem` or a chunked one); raises ``ValueError`` naming ``lam``.
    """
    from .problem import as_real_array

    arr = np.zeros(0) if lam is None and m == 0 else as_real_array("lam", lam)
    arr = arr.reshape(-1) if m or arr.size == 0 else arr
    if arr.shape != (m,):
        raise ValueError(f"lam: shape {arr.shape} does not match m = {m}")
    if not np.isfinite(arr).all():
        raise ValueError(f"lam: non-finite value in {arr.tolist()}")
    if (arr < 0).any():
        raise ValueError(f"lam: multipliers must be >= 0, got {arr.tolist()}")
    return arr


def _check_lam(problem: AlignmentProblem, lam: object, overflow_guard: bool = True) -> np.ndarray:
    """``lam`` as float64 ``(m,)``: real numbers, finite, ``>= 0`` (else ``ValueError``).

    With ``overflow_guard``, also that ``D``, its gradient and Hessian stay finite.

    The oracle works in the problem's own units: ``|r + lam^T g| / beta`` (bounded by
    ``(max |r| + lam^T max |g|) / beta``) and ``Cov(g) / beta`` (by ``(2 max |g|)^2 / beta``)
    must fit in float64; otherwise a ``ValueError`` says so (``dualgap.solve`` works in
    normalized units and is not limited by this).
    """
    if not isinstance(problem, AlignmentProblem):
        raise ValueError(f"problem: expected an AlignmentProblem, got {type(problem).__name__}")
    arr = check_multipliers(lam, problem.num_constraints)
    if not overflow_guard:
        return arr
    _overflow_guard(problem, arr[None], "lam")
    return arr


def _overflow_guard(problem: AlignmentProblem, lams: np.ndarray, name: str) -> None:
    """:func:`_check_lam`'s overflow guard for each row of ``lams`` ``(K, m)`` (checked)."""
    beta = problem.beta
    r_max, g_max = problem.entry_bounds
    with np.errstate(over="ignore", invalid="ignore"):
        z_bound = np.float64(2.0) * (r_max + lams @ g_max) / beta  # size = (K,)
        c_bound = np.abs(lams) @ np.abs(problem.offsets) if lams.size else np.zeros(len(lams))
        h_bound = np.square(2.0 * g_max.max(initial=0.0)) / beta
    if not (np.isfinite(z_bound).all() and np.isfinite(c_bound).all()):
        k = int(np.argmax(~(np.isfinite(z_bound) & np.isfinite(c_bound))))
        which = lams[0].tolist() if name == "lam" else f"row {k} = {lams[k].tolist()}"
        raise ValueError(f"{name}: {which} is too large for this problem: (r + lam^T g) / beta "
                         f"overflows float64 (max |r| = {r_max:.3g}, beta = {beta:.3g})")
    if len(lams) and not np.isfinite(h_bound):
        raise ValueError(f"utilities: hess D = Cov(g) / beta overflows float64 (max |g| = "
                         f"{float(g_max.max()):.3g}, beta = {beta:.3g}); dualgap.solve works in "
                         "normalized units")


def _check_lams(problem: AlignmentProblem, lams: object) -> np.ndarray:
    """``lams`` as float64 ``(K, m)``, each row a multiplier that :func:`_check_lam` passes
    (with the overflow guard); ``ValueError`` naming ``lams`` and the first bad row."""
    from .problem import as_real_array

    if not isinstance(problem, AlignmentProblem):
        raise ValueError(f"problem: expected an AlignmentProblem, got {type(problem).__name__}")
    m = problem.num_constraints
    arr = as_real_array("lams", lams)
    if arr.ndim != 2 or arr.shape[1] != m:
        raise ValueError(f"lams: shape {arr.shape} does not match (K, m = {m})")
    for bad, what in ((~np.isfinite(arr), "non-finite value"), (arr < 0, "multipliers must be "
                                                                 ">= 0")):
        rows = bad.any(axis=1)
        if rows.any():
            k = int(np.argmax(rows))
            raise ValueError(f"lams: {what} in row {k} = {arr[k].tolist()}")
    _overflow_guard(problem, arr, "lams")
    return arr


def _check_order(order: object) -> int:
    if order not in (0, 1, 2) or isinstance(order, bool):
        raise ValueError(f"order: must be 0, 1 or 2, got {order!r}")
    return int(order)  # type: ignore[call-overload]


def _blocks(problem: AlignmentProblem):
    X, Y = problem.reward.shape
    step = max(1, BLOCK_ENTRIES // Y)
    for start in range(0, X, step):
        yield slice(start, min(X, start + step))




def dual_oracle(problem: AlignmentProblem, lam: object, order: int = 2) -> DualEval:
    """``D(lam)`` with its gradient (``order >= 1``) and Hessian (``order >= 2``), in one pass.

    ``D = beta sum_x rho_x log Z_lam(x) - lam^T c``, ``grad D = E_rho E_{pi_lam} g - c`` and
    ``hess D = (1/beta) E_rho Cov_{pi_lam}(g)``, the sums taken by :func:`dual_sums`.
    """
    lam = _check_lam(problem, lam)
    order = _check_order(order)
    sums = dual_sums(
        problem.reward,
        problem.utilities,
        problem.log_reference,
        problem.prompt_weights,
        lam,
        problem.beta,
        order,
    )
    return sums.finish(lam, problem.beta, problem.offsets, order)


#: Oracle backends accepted by :func:`dual_backend` and ``solve(..., backend=...)``.
BACKENDS = ("numpy", "numba", "torch", "torch-float32")


def dual_backend(name: str):
    """The oracle ``(problem, lam, order) -> DualEval`` of a backend in :data:`BACKENDS`.

    ``"numpy"``: :func:`dual_oracle`; ``"numba"``: the same sums as one compiled loop per prompt
    (:mod:`dualgap.dual_numba`, optional: needs numba); ``"torch"``: the same sums in torch,
    float64, on CUDA when available, else CPU; ``"torch-float32"``: the same in float32.  Torch
    and numba are imported only here.
    """
    if name == "numpy":
        return dual_oracle
    if name == "numba":
        from .dual_numba import numba_dual_oracle

        return numba_dual_oracle
    if name in ("torch", "torch-float32"):
        from .dual_torch import torch_dual_oracle

        dtype = "float32" if name == "torch-float32" else "float64"

        def oracle(problem: AlignmentProblem, lam: object, order: int = 2) -> DualEval:
            return torch_dual_oracle(problem, lam, order, dtype=dtype)

        return oracle
    raise ValueError(f"backend: must be one of {BACKENDS}, got {name!r}")


def dual_value(problem: AlignmentProblem, lam: object) -> float:
    """``D(lam) = beta E_rho log sum_y pi_ref exp((r + lam^T h) / beta)``."""
    return dual_oracle(problem, lam, order=0).value


def dual_gradient(problem: AlignmentProblem, lam: object) -> np.ndarray:
    """``grad D(lam) = E_rho E_{pi_lam} h``, shape ``(m,)``."""
    return dual_oracle(problem, lam, order=1).gradient  # type: ignore[return-value]


def dual_hessian(problem: AlignmentProblem, lam: object) -> np.ndarray:
    """``hess D(lam) = (1/beta) E_rho Cov_{pi_lam}(h)``, shape ``(m, m)``."""
    return dual_oracle(problem, lam, order=2).hessian  # type: ignore[return-value]


def dual_hessians(problem: AlignmentProblem, lams: object) -> np.ndarray:
    """``hess D`` at each row of ``lams`` ``(K, m)``, shape ``(K, m, m)``: row ``k`` is
    :func:`dual_hessian` at ``lams[k]`` (the same sums, bit for bit), all ``K`` in one pass over
    the data in cache-sized blocks of rows and multipliers (:func:`dual_sums_batch`).  Each row
    is checked as ``lam`` is (:func:`_check_lam`, overflow guard included)."""
    arr = _check_lams(problem, lams)
    sums = dual_sums_batch(problem.reward, problem.utilities, problem.log_reference,
                           problem.prompt_weights, arr, problem.beta, 2)
    return sums.hessian(problem.beta)


def lagrangian_policy(problem: AlignmentProblem, lam: object) -> np.ndarray:
    """``pi_lam(y|x) ∝ pi_ref(y|x) exp((r + lam^T g) / beta)``, shape ``(X, Y)``.

    The maximizer of ``L(pi, lam)`` over all policies; exactly zero outside the support.
    Written once, block by block (:func:`policy_sums`), in the units of
    :mod:`dualgap.scaling`: on the problem's own arrays when their range allows, else on the
    normalized copy (per-prompt constants and the offsets ``c`` cancel, so ``r + lam^T h`` is
    formed without cancellation); a ``lam`` so large that the exponent overflows float64 even
    there raises ``ValueError``, never a row of NaN.
    """
    lam = _check_lam(problem, lam, overflow_guard=False)
    return problem.normalized.policy(lam)


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
    return _expected(problem, _check_policy(problem, policy))


def _expected(problem: AlignmentProblem, pi: np.ndarray) -> np.ndarray:
    return np.einsum("x,xy,ixy->i", problem.prompt_weights, pi, problem.utilities)


def constraint_slack(problem: AlignmentProblem, policy: object) -> np.ndarray:
    """``E_rho E_pi h_i`` (``>= 0`` means constraint ``i`` holds), shape ``(m,)``."""
    return expected_utilities(problem, policy) - problem.offsets


def kl_divergence(problem: AlignmentProblem, policy: object) -> np.ndarray:
    """``KL(pi(.|x) || pi_ref(.|x))`` per prompt, shape ``(X,)``; ``inf`` off the support."""
    return _kl(problem, _check_policy(problem, policy))


def _kl(problem: AlignmentProblem, pi: np.ndarray) -> np.ndarray:
    kl = np.empty(problem.num_prompts)
    for blk in _blocks(problem):  # cache-sized blocks: no full-size temporaries
        p = pi[blk]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.log(p)  # size = (b, Y); -inf where pi = 0
            t -= problem.log_reference[blk]  # +inf where pi > 0 off the support
            t *= p
        t[p == 0] = 0.0  # 0 log 0 = 0, on or off the support
        kl[blk] = t.sum(axis=1)
    return np.maximum(kl, 0.0)


def objective(problem: AlignmentProblem, policy: object) -> float:
    """``J(pi) = E_rho [E_pi r - beta KL(pi(.|x) || pi_ref(.|x))]``."""
    return _objective(problem, _check_policy(problem, policy))


def _objective(problem: AlignmentProblem, pi: np.ndarray) -> float:
    rho = problem.prompt_weights
    reward = float(rho @ np.einsum("xy,xy->x", pi, problem.reward))
    return reward - problem.beta * float(rho @ _kl(problem, pi))


def policy_terms(problem: AlignmentProblem, policy: object) -> tuple[np.ndarray, float, np.ndarray]:
    """``(pi, J(pi), E_rho E_pi h)`` from one validation of ``policy``: :func:`objective` and
    :func:`constraint_slack` with the same arithmetic (for callers that need both often, such
    as an algorithm's trajectory recorder)."""
    pi = _check_policy(problem, policy)
    return pi, _objective(problem, pi), _expected(problem, pi) - problem.offsets


def lagrangian(problem: AlignmentProblem, policy: object, lam: object) -> float:
    """``L(pi, lam) = J(pi) + lam^T E_rho E_pi h``."""
    lam = _check_lam(problem, lam)
    return objective(problem, policy) + float(lam @ constraint_slack(problem, policy))

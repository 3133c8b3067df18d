"""The dual oracle's prompt sums in torch: CPU here, CUDA where present (docs/problem.md).

The same :class:`~dualgap.dual.DualSums` as :func:`dualgap.dual.dual_sums`, computed with whole
row blocks as tensor programs (large blocks: on a GPU a block is one kernel launch per step)::

    z      = (r + lam^T g) / beta + log pi_ref                  size = (b, Y)
    log Z  = logsumexp_y z,   pi = exp(z - log Z)
    value  = sum_x rho_x log Z(x)
    first  = sum_x rho_x mu(x),       mu(x) = sum_y pi g           size = (m,)
    second = sum_x rho_x sum_y pi (g - mu)(g - mu)^T               size = (m, m)

and :meth:`DualSums.finish` turns them into ``D``, ``grad D`` and
``hess D = (1/beta) E_rho Cov_{pi_lam}(g)`` exactly as the numpy backend does, so the two differ
only by rounding (tested to 1e-10).  ``dtype=torch.float32`` halves memory and traffic at a
measured cost in accuracy (``benchmarks/exact_solver.py``).  The data are moved to the device
once per problem and kept (:class:`TorchData`); importing :mod:`dualgap` does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .dual import DualEval, DualSums, _check_lam, _check_order
from .problem import AlignmentProblem

__all__ = ["TorchData", "torch_data", "torch_dual_sums", "torch_dual_oracle", "DTYPES"]

#: Entries per block on the device (a few hundred MB of temporaries at m = 3 in float64).
TORCH_BLOCK_ENTRIES = 1 << 23

#: Accepted ``dtype`` names.
DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class TorchData:
    """A problem's arrays as tensors on one device: ``reward``, ``log_reference`` ``(X, Y)``,
    ``utilities`` ``(m, X, Y)``, ``weights`` ``(X,)``."""

    reward: Any
    utilities: Any
    log_reference: Any
    weights: Any
    device: str
    dtype: str


def _resolve(device: str | None, dtype: str) -> tuple[Any, str, Any]:
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype: must be one of {DTYPES}, got {dtype!r}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: {device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but CUDA is not available")
    return torch, str(dev), getattr(torch, dtype)


def torch_data(problem: AlignmentProblem, device: str | None = None,
               dtype: str = "float64") -> TorchData:
    """Move a problem's arrays to ``device`` (default: CUDA if available, else CPU), once.

    Cached on the problem per ``(device, dtype)``, so repeated oracle calls do not copy.
    """
    torch, dev, dt = _resolve(device, dtype)
    cache = problem.__dict__.setdefault("_torch_data", {})
    key = (dev, dtype)
    if key not in cache:
        def put(a: np.ndarray) -> Any:
            return torch.as_tensor(a, dtype=dt, device=dev)

        cache[key] = TorchData(
            put(problem.reward),
            put(problem.utilities),
            put(problem.log_reference),
            put(problem.prompt_weights),
            dev,
            dtype,
        )
    return cache[key]


def torch_dual_sums(data: TorchData, lam: np.ndarray, beta: float, order: int = 2,
                    block_entries: int = TORCH_BLOCK_ENTRIES) -> DualSums:
    """The :class:`DualSums` of the rows in ``data`` (see the module docstring), as float64."""
    import torch

    g_all = data.utilities
    m = g_all.shape[0]
    X, Y = data.reward.shape
    lam_t = torch.as_tensor(lam, dtype=g_all.dtype, device=g_all.device)
    step = max(1, block_entries // Y)
    value = torch.zeros((), dtype=torch.float64, device=g_all.device)
    first = torch.zeros(m, dtype=torch.float64, device=g_all.device)
    second = torch.zeros((m, m), dtype=torch.float64, device=g_all.device)
    with torch.no_grad():
        for start in range(0, X, step):
            blk = slice(start, min(X, start + step))
            g = g_all[:, blk]  # size = (m, b, Y)
            w = data.weights[blk]  # size = (b,)
            z = data.reward[blk] + torch.einsum("i,ixy->xy", lam_t, g) if m else data.reward[blk]
            z = z / beta + data.log_reference[blk]  # size = (b, Y)
            log_z = torch.logsumexp(z, dim=1)  # size = (b,)
            value += (w * log_z).sum(dtype=torch.float64)
            if order == 0 or m == 0:
                continue
            pi = torch.exp(z - log_z[:, None])  # size = (b, Y)
            mu = torch.einsum("xy,ixy->ix", pi, g)  # size = (m, b)
            first += (mu @ w).to(torch.float64)
            if order >= 2:
                gc = g - mu[:, :, None]  # size = (m, b, Y), centered per prompt
                wp = (pi * w[:, None]).reshape(-1)  # size = (b * Y,)
                flat = gc.reshape(m, -1)
                second += ((flat * wp) @ flat.T).to(torch.float64)
    return DualSums(
        float(value.item()),
        first.cpu().numpy(),
        second.cpu().numpy(),
    )


def torch_dual_oracle(problem: AlignmentProblem, lam: object, order: int = 2,
                      device: str | None = None, dtype: str = "float64") -> DualEval:
    """:func:`dualgap.dual_oracle` computed by torch on ``device`` in ``dtype``."""
    lam = _check_lam(problem, lam)
    order = _check_order(order)
    data = torch_data(problem, device, dtype)
    sums = torch_dual_sums(data, lam, problem.beta, order)
    return sums.finish(lam, problem.beta, problem.offsets, order)

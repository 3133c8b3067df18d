"""The stats pass of :mod:`dualgap.scaling` in numpy, and ``q = log pi_ref + r / beta``.

Both walk the table in cache-sized blocks of prompts, split over :mod:`dualgap.threads` (each
block the same arithmetic on any number of threads; the sums over blocks in block order).
"""

from __future__ import annotations

import numpy as np

from .dual import BLOCK_ENTRIES
from .problem import AlignmentProblem
from .threads import map_blocks, run_ranges

__all__ = ["log_reference_blocks"]


def log_reference_blocks(p: AlignmentProblem, out: np.ndarray, rows: int, start: int = 0,
                         stop: int | None = None):
    """Write ``log pi_ref`` into ``out`` block by block of ``rows`` prompts (of prompts
    ``start:stop``) and yield each block's ``(lo, hi)`` while it is in cache, for the caller to
    finish it (``-inf`` off the support; ``p.log_reference`` is copied when it is already
    cached)."""
    cached = p.__dict__.get("log_reference")
    stop = out.shape[0] if stop is None else stop
    with np.errstate(divide="ignore", over="ignore"):
        for lo in range(start, stop, rows):
            hi = min(stop, lo + rows)
            if cached is None:
                np.log(p.reference[lo:hi], out=out[lo:hi])
            else:
                np.copyto(out[lo:hi], cached[lo:hi])
            yield lo, hi


def _log_reference_plus(p: AlignmentProblem) -> np.ndarray:
    """``q = log pi_ref + r / beta`` (``-inf`` off the support), block by block (temporaries of
    a block's size)."""
    out = np.empty_like(p.reward)
    inv_beta = 1.0 / p.beta

    def rows(start: int, stop: int) -> None:
        for a, b in log_reference_blocks(p, out, max(1, BLOCK_ENTRIES // out.shape[1]), start,
                                         stop):
            out[a:b] += p.reward[a:b] * inv_beta

    run_ranges(rows, *out.shape)  # each entry the same arithmetic on any number of threads
    return out


def _stats_numpy(problem: AlignmentProblem, ref_g: bool) -> dict:
    """The stats pass in numpy, in cache-sized blocks of prompts (temporaries of a block's size
    and a few numbers per prompt); the same fields as :func:`dualgap.dual_numba.numba_stats`
    (``ref_g``: the sum ``E_rho E_ref g``, when asked for; no ``q``)."""
    m, X, Y = problem.utilities.shape
    rho = problem.prompt_weights
    step = max(1, BLOCK_ENTRIES // Y)
    shift, width_all = np.empty(X), np.empty(X)
    top = np.empty((m, X))  # max_supp g_i per prompt
    low = np.empty((m, X))  # min_supp g_i per prompt
    at = np.empty((m, m, X))  # g_j(x, argmax_supp g_i)

    def block(start: int, stop: int, buf: np.ndarray) -> tuple[int, float, np.ndarray, object]:
        """The block's per-prompt rows written; its support entries, ``max |r|``, ``max |g_i|``
        and ``E_ref g`` sum (combined by the caller: maxima in any order, sums in block
        order)."""
        bx = stop - start
        t = buf[: bx * Y].reshape(bx, Y)  # size = (bx, Y)
        ref = problem.reference[start:stop]
        off = np.where(ref > 0, 0.0, -np.inf)  # size = (bx, Y): 0 on the support
        r = problem.reward[start:stop]
        np.add(r, off, out=t)
        hi_r = t.max(axis=1)  # size = (bx,)
        np.subtract(r, off, out=t)
        width_all[start:stop] = hi_r - t.min(axis=1)
        shift[start:stop] = hi_r
        rows = np.arange(bx)
        G = problem.utilities[:, start:stop]  # size = (m, bx, Y)
        g_abs = np.zeros(m)
        for i in range(m):
            np.add(G[i], off, out=t)
            best = t.argmax(axis=1)  # size = (bx,)
            top[i, start:stop] = t[rows, best]
            at[i, :, start:stop] = G[:, rows, best]
            np.subtract(G[i], off, out=t)
            low[i, start:stop] = t.min(axis=1)
            g_abs[i] = max(float(G[i].max()), -float(G[i].min()))
        ref_add = np.einsum("xy,ixy->ix", ref, G) @ rho[start:stop] if m and ref_g else None
        return (int(np.count_nonzero(ref)), max(0.0, float(r.max()), -float(r.min())), g_abs,
                ref_add)

    with np.errstate(over="ignore", invalid="ignore"):  # in the workers too (run_ranges)
        parts = map_blocks(block, X, step, Y, lambda: np.empty(min(step, X) * Y))
    entries = sum(p[0] for p in parts)  # support entries
    r_abs = max(p[1] for p in parts)  # max |r| over the whole table
    g_abs = np.max([p[2] for p in parts], axis=0)  # max |g| over the whole table
    ref_sum = np.zeros(m)  # sum_x rho E_ref g
    for part in parts:
        if part[3] is not None:
            ref_sum += part[3]
    return {"shift": shift, "width": width_all, "entries": entries, "ref_g": ref_sum,
            "top": top, "low": low, "at": at, "r_abs": r_abs, "g_abs": g_abs}

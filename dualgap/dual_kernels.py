"""The dual's prompt sums over cache-sized blocks of rows, in numpy (docs/problem.md).

:func:`dual_sums` (D, gradient and Hessian sums) and :func:`policy_sums` (the policy and its
sums) read each block of rows once; the per-row sums add up over any split of the prompts (blocks,
chunks of an out-of-memory problem, the torch and numba backends).  :mod:`dualgap.dual` builds
the oracle and the public functions on them.  This module imports numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .threads import map_blocks

__all__ = ["BLOCK_ENTRIES", "CANCELLATION", "DualEval", "DualSums", "dual_sums", "dual_sums_batch",
           "PolicySums", "policy_sums", "check_base", "LogOf"]

#: Target number of table entries processed per block: the block's working set (one ``(b, Y)``
#: weight buffer, one ``(m, b, Y)`` product buffer and the block's inputs, ~3 MB at m = 3) stays
#: in cache, and the ~25 numpy calls per block are amortized (2^16 took 1.3x less CPU time than
#: 2^14 and the same as 2^17 at 1e7 entries, m = 3, on the 2-core development machine).
BLOCK_ENTRIES = 1 << 16

#: The uncentered covariance ``E_p[g g^T] - mu mu^T`` is used when it keeps at least
#: ``log10(1 / CANCELLATION) = 4`` fewer digits than float64 holds; below that a block is redone
#: centered per prompt (exact, one more pass over the block's utilities).
CANCELLATION = 1e-4


@dataclass(frozen=True)
class DualEval:
    """``D(lam)`` and, when asked for, its gradient ``(m,)`` and Hessian ``(m, m)``."""

    lam: np.ndarray
    value: float
    gradient: np.ndarray | None = None
    hessian: np.ndarray | None = None


@dataclass
class DualSums:
    """Prompt sums of the dual over a set of rows (a block, a chunk or the whole table).

    ``value = sum_x rho_x log Z_lam(x)``, ``first = sum_x rho_x E_{pi_lam} g``, ``(m,)``, and
    ``second = sum_x rho_x Cov_{pi_lam}(g)``, ``(m, m)``.  Sums over disjoint row sets add up;
    :meth:`finish` turns the total into ``D``, its gradient and Hessian.
    """

    value: float
    first: np.ndarray
    second: np.ndarray

    def __iadd__(self, other: DualSums) -> DualSums:
        self.value += other.value
        self.first += other.first
        self.second += other.second
        return self

    def finish(self, lam: np.ndarray, beta: float, offsets: np.ndarray, order: int) -> DualEval:
        """``D = beta * value - lam^T c``, ``grad = first - c``, ``hess = second / beta``."""
        return DualEval(
            lam=lam,
            value=beta * self.value - float(lam @ offsets),
            gradient=self.first - offsets if order >= 1 else None,
            hessian=self.hessian(beta) if order >= 2 else None,
        )

    def hessian(self, beta: float) -> np.ndarray:
        """``hess D = second / beta``, symmetrized; ``(m, m)``, or ``(K, m, m)`` for the sums of
        :func:`dual_sums_batch`."""
        return (self.second + self.second.swapaxes(-1, -2)) / (2.0 * beta)


# The block kernels use numpy's own loops (einsum), never BLAS: a multithreaded OpenBLAS called
# on every cache-sized block spends more time synchronizing its threads than computing (one
# oracle call at 1e7 entries, m = 3, on the loaded 2-core machine: 0.94 s wall against 0.105 s
# with one BLAS thread), and some builds take ~200x longer on a dot of this length.
def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``sum_k a_k b_k`` of two vectors of at most a block's length."""
    return float(np.einsum("k,k->", a, b))


def _gram(A: np.ndarray, B: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``A B^T`` for ``(m, n)`` rows with ``m`` small and ``A B^T`` symmetric: ``m (m + 1) / 2``
    dot products (written into ``out`` ``(m, m)`` when given)."""
    m = A.shape[0]
    out = np.empty((m, m)) if out is None else out
    for i in range(m):
        for j in range(i, m):
            out[i, j] = out[j, i] = _dot(A[i], B[j])
    return out


def _block_exponent(z: np.ndarray, reward: np.ndarray, G: np.ndarray, log_reference: np.ndarray,
                    lam: np.ndarray, inv_beta: float, active: list[int],
                    base: np.ndarray | None = None) -> None:
    """Write the exponent of one block into ``z`` ``(b, Y)``: ``(r + lam^T g) / beta + log
    pi_ref``, or with ``base`` (the block of ``q = log pi_ref + r / beta``) ``base + (lam /
    beta)^T g`` (``r`` and ``log pi_ref`` are not read)."""
    m, b, Y = G.shape
    coef = lam if base is None else lam * inv_beta
    if len(active) == m and m > 1:
        np.einsum("i,ik->k", coef, G.reshape(m, b * Y), out=z.reshape(-1))
    elif base is None:
        np.copyto(z, reward)
        for i in active:
            z += coef[i] * G[i]
    else:
        z.fill(0.0)
        for i in active:
            z += coef[i] * G[i]
    if base is None:
        if len(active) == m and m > 1:
            z += reward
        z *= inv_beta
        z += log_reference
        return
    z += base


def _block_exponents(z: np.ndarray, reward: np.ndarray, G: np.ndarray,
                     log_reference: np.ndarray, lams: np.ndarray, inv_beta: float,
                     actives: list[list[int]], base: np.ndarray | None = None) -> None:
    """:func:`_block_exponent` at each row of ``lams`` ``(n, m)`` into ``z`` ``(n, b, Y)``: the
    same operations, batched over the rows when every constraint of every row is active (the
    ``n`` einsum products ``lam^T g`` as one, the same sums element by element)."""
    n, m = lams.shape
    if n == 1 or m < 2 or any(len(a) < m for a in actives):
        for j in range(n):
            _block_exponent(z[j], reward, G, log_reference, lams[j], inv_beta, actives[j], base)
        return
    coef = lams if base is None else lams * inv_beta
    np.einsum("ki,in->kn", coef, G.reshape(m, -1), out=z.reshape(n, -1))
    if base is not None:
        z += base
        return
    z += reward
    z *= inv_beta
    z += log_reference


def check_base(beta: float, base_beta: float | None) -> None:
    """``q = log pi_ref + r / base_beta`` serves the pass at ``beta`` only when the two agree to
    rounding (a few ulps, as ``beta' s`` and ``beta`` do): elsewhere ``q - r / base_beta + r /
    beta`` would cancel ``r / base_beta``'s rounding error into the exponent."""
    if base_beta is None or abs(beta - base_beta) > 4 * np.finfo(float).eps * base_beta:
        raise ValueError(f"base_beta: {base_beta!r} does not match beta = {beta!r}")


class LogOf:
    """``log a`` computed per slice on access (``-inf`` where ``a = 0``): ``log pi_ref`` for
    a pass that reads it once, without a full-size array."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a

    def __getitem__(self, key: object) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.a[key])


def dual_sums(
    reward: np.ndarray,
    utilities: np.ndarray,
    log_reference: np.ndarray,
    weights: np.ndarray,
    lam: np.ndarray,
    beta: float,
    order: int = 2,
    block_entries: int = BLOCK_ENTRIES,
    base: np.ndarray | None = None,
    base_beta: float | None = None,
) -> DualSums:
    """The :class:`DualSums` of rows ``(X', Y)`` in one fused pass over them.

    ``reward``, ``log_reference``: ``(X', Y)``; ``utilities``: ``(m, X', Y)``; ``weights``:
    ``rho`` on these rows, ``(X',)`` (not renormalized); ``lam``: checked, ``(m,)``.  Per block
    of rows that fits in cache, the data are read once:

        z = (r + lam^T g) / beta + log pi_ref,  e = exp(z - max_y z),  log Z = log sum_y e + max
        value  += sum_x rho_x log Z(x)
        first  += sum_{x,y} w g                  with w = rho_x e / sum_y e = rho_x pi_lam
        second += sum_{x,y} w g g^T - sum_x rho_x mu(x) mu(x)^T,   mu(x) = E_{pi_lam(.|x)} g

    The uncentered ``second`` loses ``log10(E g^2 / Var g)`` digits; a block where that exceeds
    ``-log10(CANCELLATION)`` is redone as ``sum w (g - mu)(g - mu)^T`` (centered per prompt).
    Temporaries: one ``(b, Y)`` and one ``(m, b, Y)`` buffer, reused by every block.

    ``base``: ``q = log pi_ref + r / beta`` on these rows (:meth:`dualgap.scaling.
    Normalization.exponent_base`, with ``base_beta = beta``), read instead of ``reward`` and
    ``log_reference`` (which may then be None): ``z = q + (lam / beta)^T g``, ``m + 1`` arrays
    per pass instead of ``m + 2``.  The one-``lam`` case of :func:`dual_sums_batch` (the same
    arithmetic).
    """
    sums = dual_sums_batch(reward, utilities, log_reference, weights, lam[None], beta, order,
                           block_entries, base, base_beta)
    return DualSums(float(sums.value[0]), sums.first[0], sums.second[0])  # type: ignore[index]


def dual_sums_batch(
    reward: np.ndarray,
    utilities: np.ndarray,
    log_reference: np.ndarray,
    weights: np.ndarray,
    lams: np.ndarray,
    beta: float,
    order: int = 2,
    block_entries: int = BLOCK_ENTRIES,
    base: np.ndarray | None = None,
    base_beta: float | None = None,
) -> DualSums:
    """:func:`dual_sums` at each row of ``lams`` (checked, ``(K, m)``), in one pass over the rows.

    The result's fields carry a leading ``K`` axis: ``value`` ``(K,)``, ``first`` ``(K, m)``,
    ``second`` ``(K, m, m)``; row ``k`` is :func:`dual_sums` at ``lams[k]``, bit for bit (the
    same operations, the per-prompt reductions along the same axis).  A block is ``b`` rows
    (``b Y <= block_entries``) at ``n`` multipliers (``n b Y <= block_entries``, so ``n = 1``
    once a block of rows fills the cache): each block of data is read once for all ``K``.
    Temporaries: one ``(n, b, Y)`` and one ``(n, m, b, Y)`` buffer.
    """
    m = utilities.shape[0]
    X, Y = reward.shape
    K = lams.shape[0]
    step = max(1, block_entries // Y)
    rows = min(step, X)
    per = max(1, block_entries // (rows * Y))  # multipliers per block
    n_max = min(per, K)
    inv_beta = 1.0 / beta
    if base is not None:
        check_base(beta, base_beta)
    actives = [[i for i, a in enumerate(row) if a != 0.0] for row in lams.tolist()]

    def buffers() -> tuple[np.ndarray, np.ndarray]:  # one (zbuf, gbuf) per thread
        return (np.empty(n_max * rows * Y),
                np.empty(n_max * m * rows * Y if order >= 2 else 0))

    def additions(start: int, stop: int, bufs: tuple[np.ndarray, np.ndarray]) -> list[tuple]:
        """The block's additions to ``value`` / ``first`` / ``second``, not yet made."""
        zbuf, gbuf = bufs
        adds: list[tuple] = []
        b = stop - start
        G = utilities[:, start:stop]  # size = (m, b, Y)
        Gf = G.reshape(m, b * Y)
        w = weights[start:stop]
        for k0 in range(0, K, per):
            n = min(K, k0 + per) - k0
            # one row per (multiplier, prompt): the per-prompt softmax as for one multiplier
            z = zbuf[: n * b * Y].reshape(n * b, Y)  # size = (n b, Y)
            z3 = z.reshape(n, b, Y)
            _block_exponents(z3, reward[start:stop], G, None if base is not None else
                             log_reference[start:stop], lams[k0:k0 + n], inv_beta,
                             actives[k0:k0 + n], None if base is None else base[start:stop])
            zmax = z.max(axis=1)  # size = (n b,), finite: every row has support
            z -= zmax[:, None]
            np.exp(z, out=z)  # e, unnormalized
            total = z.sum(axis=1)  # size = (n b,)
            logz = np.log(total) + zmax  # size = (n b,)
            for j in range(n):  # not one einsum: its buffered loop sums > 8192 terms otherwise
                adds.append((0, k0 + j, _dot(w, logz[j * b:(j + 1) * b])))
            if order == 0 or m == 0:
                continue
            z *= ((w if n == 1 else np.tile(w, n)) / total)[:, None]  # w = rho pi_lam
            if order == 1:
                for j in range(n):
                    adds.append((1, k0 + j, [_dot(z3[j].reshape(-1), Gf[i]) for i in range(m)]))
                continue
            GW = gbuf[: n * m * b * Y].reshape(n, m, b, Y)  # size = (n, m, b, Y)
            np.multiply(G[None], z3[:, None], out=GW)
            M1 = np.einsum("kixy->kix", GW)  # size = (n, m, b): rho_x mu(x)
            mu = M1 / np.where(w > 0, w, 1.0)  # size = (n, m, b)
            M2 = np.empty((n, m, m))
            for j in range(n):
                _gram(GW[j].reshape(m, b * Y), Gf, M2[j])
            H = M2 - np.matmul(M1, mu.transpose(0, 2, 1))  # size = (n, m, m)
            lost = H.diagonal(0, 1, 2) < CANCELLATION * M2.diagonal(0, 1, 2)  # size = (n, m)
            for c in np.flatnonzero(lost.any(axis=1)) if lost.any() else ():
                C = GW[c]  # too many digits lost: center
                np.subtract(G, mu[c][:, :, None], out=C)  # g - mu, size = (m, b, Y)
                C = C.reshape(m, b * Y)
                H[c] = _gram(C * z3[c].reshape(1, -1), C)
            adds.append((1, slice(k0, k0 + n), M1.sum(axis=2)))
            adds.append((2, slice(k0, k0 + n), H))
        return adds

    value = [0.0] * K  # Python floats: the same float64 sums, cheaper per block than indexing
    first = np.zeros((K, m))
    second = np.zeros((K, m, m))
    # the blocks split over threads; their additions made here, in block order (the same bits
    # on any number of threads)
    for adds in map_blocks(additions, X, step, Y, buffers):
        for field, k, v in adds:
            if field == 0:
                value[k] += v
            elif field == 1:
                first[k] += v
            else:
                second[k] += v
    return DualSums(np.array(value), first, second)  # type: ignore[arg-type]


@dataclass
class PolicySums:
    """What the final pass of :func:`policy_sums` adds up over its rows (``rho`` weighted):
    ``utilities = sum_x rho_x E_pi g`` ``(m,)``, ``reward = sum_x rho_x E_pi r`` and
    ``kl = sum_x rho_x KL(pi(.|x) || pi_ref(.|x))`` (zeros when not asked for); ``finite``:
    every row's exponent and normalizer were finite, so the policy written is finite."""

    utilities: np.ndarray
    reward: float
    kl: float
    finite: bool


def policy_sums(
    reward: np.ndarray,
    utilities: np.ndarray,
    log_reference: np.ndarray,
    weights: np.ndarray,
    lam: np.ndarray,
    beta: float,
    out: np.ndarray,
    sums: bool = True,
    block_entries: int = BLOCK_ENTRIES,
    base: np.ndarray | None = None,
    base_beta: float | None = None,
) -> PolicySums:
    """Write ``pi_lam`` into ``out`` ``(X', Y)`` and add up its :class:`PolicySums`, one pass.

    Per block of rows (arguments as for :func:`dual_sums`): ``pi = exp(z - max z) / sum``
    with ``z = (r + lam^T g) / beta + log pi_ref``, written in place into ``out``; then
    ``E_pi g``, ``E_pi r`` and ``KL = sum_y pi (log pi - log pi_ref)`` (``0 log 0 = 0``) from
    the policy itself (not from ``D``).  Temporaries: one ``(b, Y)`` buffer.  With ``sums=False``
    only the policy is written.  ``base``, ``base_beta``: as for :func:`dual_sums` (then
    ``log pi_ref = q - r / beta`` in the KL term).
    """
    m = utilities.shape[0]
    X, Y = reward.shape
    step = max(1, block_entries // Y)
    inv_beta = 1.0 / beta
    if base is not None:
        check_base(beta, base_beta)
    active = [i for i in range(m) if lam[i] != 0.0]

    def block(start: int, stop: int, tbuf: np.ndarray) -> tuple:
        """The block's policy written; its additions ``(finite, E g, E r, KL)``, not made."""
        b = stop - start
        z = out[start:stop]  # size = (b, Y), becomes pi
        G = utilities[:, start:stop]  # size = (m, b, Y)
        _block_exponent(z, reward[start:stop], G, None if base is not None else
                        log_reference[start:stop], lam, inv_beta, active,
                        None if base is None else base[start:stop])
        zmax = z.max(axis=1)  # size = (b,)
        z -= zmax[:, None]
        np.exp(z, out=z)
        total = z.sum(axis=1)  # size = (b,), >= 1 when zmax is finite
        finite = bool(np.isfinite(zmax).all() and np.isfinite(total).all())
        z *= (1.0 / total)[:, None]
        if not sums:
            return finite, None, 0.0, 0.0
        w = weights[start:stop]
        mu = np.einsum("ixy,xy->ix", G, z)  # size = (m, b): E_pi g per prompt
        eg = [_dot(mu[i], w) for i in range(m)]
        er = _dot(w, np.einsum("xy,xy->x", z, reward[start:stop]))
        t = tbuf[: b * Y].reshape(b, Y)  # size = (b, Y)
        with np.errstate(divide="ignore", invalid="ignore"):
            np.log(z, out=t)  # -inf where pi = 0
            if base is None:
                t -= log_reference[start:stop]
            else:  # log pi_ref = q - r / base_beta
                t -= base[start:stop]
                t += reward[start:stop] * (1.0 / base_beta)  # type: ignore[operator]
            t *= z
        t[z == 0] = 0.0  # 0 log 0 = 0, on or off the support
        return finite, eg, er, _dot(w, t.sum(axis=1))

    eg, er, kl, finite = np.zeros(m), 0.0, 0.0, True
    # the blocks split over threads; their additions made here, in block order
    for fin, eg_b, er_b, kl_b in map_blocks(block, X, step, Y,
                                            lambda: np.empty(min(step, X) * Y if sums else 0)):
        finite = finite and fin
        if sums:
            eg += eg_b
            er += er_b
            kl += kl_b
    return PolicySums(eg, er, kl, finite)

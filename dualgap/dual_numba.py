"""The dual oracle's prompt sums as one compiled loop per prompt (optional: needs numba).

``solve(problem, backend="numba")`` and ``dual_backend("numba")`` use it; without numba
installed (extra ``fast``) they raise a one-line ``ValueError`` naming ``backend``.  The sums
are those of :func:`dualgap.dual.dual_sums` (tested against it to 1e-12), but each prompt's row
is read from memory once and everything is computed while it sits in cache::

    z_y   = base_y + kappa r_y + sum_i c_i g_iy        (c = lam / beta; base = log pi_ref or q)
    e_y   = exp(z_y - max_y z)                         (a vectorized exp, below)
    value += rho_x (log sum_y e + max z),  first += rho_x mu,  second += rho_x Cov(g)

with the m sums and m (m + 1) / 2 products unrolled (the kernel's source is generated per
``(m, order)`` and compiled once per process; numba's cache keeps it across processes).  The
row's covariance is redone centered (``sum e (g - mu)(g - mu)^T``) when the uncentered one
would lose more than ``-log10(CANCELLATION)`` digits, as in numpy.

``exp`` is computed in the loop as ``2^k p(t)`` (``k = round(x / ln 2)``, ``t = x - k ln 2``
in two parts, ``p`` the degree-13 Taylor polynomial, within 1e-15 relative of ``np.exp``);
arguments below ``-708`` (``exp < 3e-308``, against a row sum ``>= 1``) give 0 rather than a
subnormal.  numba has no vectorized ``exp`` of its own here (no SVML), and the scalar libm call
costs more than the rest of the pass.

Two more compiled passes serve ``solve``: the policy pass (:func:`numba_policy_sums`: writes
``pi_lam`` and adds up its slack, ``E r`` and KL; with ``hessian`` also the oracle's sums, for
a last iterate that writes ``pi*`` itself), and the normalization's stats pass fused with ``q =
log pi_ref + r / beta`` (:func:`numba_stats`).

Threads: every pass splits the prompts into :func:`dualgap.threads.get_threads` contiguous
ranges, one Python thread each (the kernels release the GIL, numpy's ``log`` of the stats pass
too), when the table has at least ``dualgap.threads.THREAD_MIN_ENTRIES`` entries.  Each
prompt's row is computed by the same code whatever the split and the sums over prompts stay
numpy's, so a pass gives the same bits on any number of threads (tested).
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from .dual import CANCELLATION, DualEval, DualSums, PolicySums, _check_lam, _check_order
from .problem import AlignmentProblem
from .threads import run_ranges

__all__ = ["available", "numba_dual_sums", "numba_policy_sums", "numba_dual_oracle",
           "numba_stats", "exp_nonpositive", "ROWS_PER_CALL"]

#: Prompts per compiled call (the Python loop around it is negligible above a few hundred).
ROWS_PER_CALL = 4096

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # fdlibm's split of ln 2: k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_EXP_MIN = -708.0  # 2^k stays a normal number


def available() -> bool:
    """Whether numba can be imported."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _require():
    try:
        import numba
    except ImportError:
        raise ValueError("backend: 'numba' needs the numba package (pip install "
                         "'dualgap[fast]'); use backend='numpy'") from None
    return numba


def _row_buffers(Y: int) -> tuple:
    """A thread's row buffers ``(z, e, bits)``."""
    return np.empty(Y), np.empty(Y), np.empty(Y, np.int64)


_INV_FACT = tuple(1.0 / math.factorial(n) for n in range(14))


# The plain-Python bodies of the compiled helpers (module level, so numba's cache finds them).
def _exp_bits(x, shift, e, bits):  # pragma: no cover - runs compiled
    """``e = p(t)`` and ``bits = 2^k`` as float64 bits, for ``x - shift = k ln 2 + t``."""
    for y in range(x.shape[0]):
        v = max(x[y] - shift, _EXP_MIN)
        k = math.floor(v * _LOG2E + 0.5)
        t = (v - k * _LN2_HI) - k * _LN2_LO
        p = _INV_FACT[13]
        p = p * t + _INV_FACT[12]
        p = p * t + _INV_FACT[11]
        p = p * t + _INV_FACT[10]
        p = p * t + _INV_FACT[9]
        p = p * t + _INV_FACT[8]
        p = p * t + _INV_FACT[7]
        p = p * t + _INV_FACT[6]
        p = p * t + _INV_FACT[5]
        p = p * t + _INV_FACT[4]
        p = p * t + _INV_FACT[3]
        p = p * t + _INV_FACT[2]
        p = p * t + 1.0
        p = p * t + 1.0
        e[y] = p
        bits[y] = (np.int64(k) + 1023) << 52


def _exp_scale(x, shift, e, powers):  # pragma: no cover - runs compiled
    """``e *= 2^k`` (0 below the cut) and the row sum."""
    total = 0.0
    for y in range(x.shape[0]):
        v = e[y] * powers[y] if x[y] - shift >= _EXP_MIN else 0.0
        e[y] = v
        total += v
    return total


@cache
def _compiled():
    """``exp_row`` compiled: ``exp_row(x, shift, e, bits)`` writes ``e = exp(x -
    shift)`` (``x - shift <= 0``) and returns its sum.

    Two loops (the first writes ``2^k`` as bits into an int64 buffer, the second scales): both
    vectorize; the first allows only ``contract`` (fused multiply-add), so the two-part
    reduction ``t = (x - k ln2_hi) - k ln2_lo`` is not reassociated."""
    numba = _require()
    exp_bits = numba.njit(fastmath={"contract"}, cache=True)(_exp_bits)
    scale = numba.njit(fastmath={"contract", "reassoc"}, cache=True)(_exp_scale)

    def exp_row(x, shift, e, bits):  # pragma: no cover - runs compiled
        exp_bits(x, shift, e, bits)
        return scale(x, shift, e, bits.view(np.float64))

    return numba.njit(exp_row)


def exp_nonpositive(x: np.ndarray) -> np.ndarray:
    """The kernel's ``exp`` of a 1-d float64 array of values ``<= 0`` (for tests)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    e, bits = np.empty_like(x), np.empty(x.shape, np.int64)
    _compiled()(x, 0.0, e, bits)
    return e


def _exponent_lines(m: int) -> list[str]:
    """The kernel lines writing the row's exponent ``z`` and its maximum ``zmax``.

    The maximum is a branch in the loop that writes ``z`` (rarely taken after a row's first
    entries): numba does not vectorize a float max reduction here, and a loop of its own cost
    about 1 ns per entry (a chain of dependent ``max``).  A NaN never becomes ``zmax`` (it still
    reaches the sums through ``e``)."""
    lin = " + ".join(["base[x, y]"] + [f"c{i} * G[{i}, x, y]" for i in range(m)])
    loop = ["                z[y] = zy", "                if zy > zmax:",
            "                    zmax = zy"]
    return [
        "        zmax = -np.inf",
        "        if kappa != 0.0:",
        "            for y in range(Y):",
        f"                zy = {lin} + kappa * reward[x, y]",
        *loop,
        "        else:",
        "            for y in range(Y):",
        f"                zy = {lin}",
        *loop,
        "        tot = exp_row(z, zmax, e, bits)",
    ]


def _kernel_source(m: int, order: int) -> str:
    """The source of the row kernel for ``m`` constraints at ``order`` (unrolled sums).

    Per row ``x`` it writes ``rows[0, x] = log Z(x)``, ``rows[1 + i, x] = mu_i(x)`` and
    ``rows[1 + m + k, x] = Cov_{ij}(x)`` for the ``k``-th pair ``j <= i``; the weighted sums
    over rows are numpy's (pairwise)."""
    I = range(m)
    pairs = [(i, j) for i in I for j in range(i + 1)]
    src = [
        "def kernel(base, reward, kappa, G, c, lo, hi, z, e, bits, rows):",
        "    Y = base.shape[1]",
        *[f"    c{i} = c[{i}]" for i in I],
        "    for x in range(lo, hi):",
        *_exponent_lines(m),
        "        rows[0, x] = math.log(tot) + zmax",
    ]
    if order >= 1 and m:
        body = ["            ey = e[y]"] + [f"            g{i} = G[{i}, x, y]" for i in I]
        body += [f"            t{i} = ey * g{i}" for i in I]
        body += [f"            a{i} += t{i}" for i in I]
        if order >= 2:
            body += [f"            b{i}{j} += t{i} * g{j}" for i, j in pairs]
        src += [f"        a{i} = 0.0" for i in I]
        if order >= 2:
            src += [f"        b{i}{j} = 0.0" for i, j in pairs]
        src += ["        for y in range(Y):", *body, "        inv = 1.0 / tot"]
        src += [f"        mu{i} = a{i} * inv" for i in I]
        src += [f"        rows[{1 + i}, x] = mu{i}" for i in I]
    if order >= 2 and m:
        src += [f"        v{i}{j} = b{i}{j} * inv - mu{i} * mu{j}" for i, j in pairs]
        lost = " or ".join(f"v{i}{i} < {CANCELLATION!r} * b{i}{i} * inv" for i in I)
        src += [f"        if {lost}:"]
        src += [f"            v{i}{j} = 0.0" for i, j in pairs]
        src += ["            for y in range(Y):", "                ey = e[y]"]
        src += [f"                d{i} = G[{i}, x, y] - mu{i}" for i in I]
        src += [f"                v{i}{j} += ey * d{i} * d{j}" for i, j in pairs]
        src += [f"            v{i}{j} *= inv" for i, j in pairs]
        src += [f"        rows[{1 + m + k}, x] = v{i}{j}" for k, (i, j) in enumerate(pairs)]
    return "\n".join(src)


def _policy_source(m: int, hessian: bool = False) -> str:
    """The source of the policy kernel: ``out[x] = pi(.|x)``; ``rows[i, x] = E_pi g_i``,
    ``rows[m, x] = E_pi r``, ``rows[m + 1, x] = KL(pi || pi_ref)`` with ``log pi = z - log Z``
    and ``log pi_ref = base - r / beta_q`` (``inv_bq = 1 / beta_q``, 0 when ``base`` is
    ``log pi_ref``); ``rows[m + 2, x] = 1`` where ``max z`` and ``Z`` are finite.  With
    ``hessian`` also the oracle's rows: ``rows[m + 3, x] = log Z`` and ``rows[m + 4 + k, x] =
    Cov_{ij}(x)`` for the ``k``-th pair ``j <= i`` (centered redo as in the oracle kernel)."""
    I = range(m)
    pairs = [(i, j) for i in I for j in range(i + 1)] if hessian else []
    src = [
        "def kernel(base, reward, kappa, G, c, inv_bq, lo, hi, z, e, bits, out, rows):",
        "    Y = base.shape[1]",
        *[f"    c{i} = c[{i}]" for i in I],
        "    for x in range(lo, hi):",
        *_exponent_lines(m),
        "        inv = 1.0 / tot",
        "        log_z = zmax + math.log(tot)",
        *[f"        a{i} = 0.0" for i in I],
        *[f"        b{i}{j} = 0.0" for i, j in pairs],
        "        er = 0.0",
        "        kl = 0.0",
        "        for y in range(Y):",
        "            p = e[y] * inv",
        "            out[x, y] = p",
        "            ry = reward[x, y]",
        *([f"            g{i} = G[{i}, x, y]" for i in I] + [f"            t{i} = p * g{i}"
                                                         for i in I]
          + [f"            a{i} += t{i}" for i in I]
          + [f"            b{i}{j} += t{i} * g{j}" for i, j in pairs] if hessian else
          [f"            a{i} += p * G[{i}, x, y]" for i in I]),
        "            er += p * ry",
        "            if p > 0.0:",
        "                kl += p * ((z[y] - log_z) - (base[x, y] - ry * inv_bq))",
        *[f"        rows[{i}, x] = a{i}" for i in I],
        f"        rows[{m}, x] = er",
        f"        rows[{m + 1}, x] = kl",
        f"        rows[{m + 2}, x] = 1.0 if np.isfinite(zmax) and np.isfinite(tot) else 0.0",
    ]
    if hessian:
        src += [f"        rows[{m + 3}, x] = log_z"]
        src += [f"        v{i}{j} = b{i}{j} - a{i} * a{j}" for i, j in pairs]
        if m:
            lost = " or ".join(f"v{i}{i} < {CANCELLATION!r} * b{i}{i}" for i in I)
            src += [f"        if {lost}:"]
            src += [f"            v{i}{j} = 0.0" for i, j in pairs]
            src += ["            for y in range(Y):", "                p = e[y] * inv"]
            src += [f"                d{i} = G[{i}, x, y] - a{i}" for i in I]
            src += [f"                v{i}{j} += p * d{i} * d{j}" for i, j in pairs]
        src += [f"        rows[{m + 4 + k}, x] = v{i}{j}" for k, (i, j) in enumerate(pairs)]
    return "\n".join(src)


@cache
def _kernel(m: int, order: int, policy: bool = False):
    """The compiled row kernel: the oracle's at ``order``, or the policy pass (``order`` 2:
    with the oracle's rows too)."""
    numba = _require()
    scope = {"math": math, "np": np, "exp_row": _compiled()}
    source = _policy_source(m, order == 2) if policy else _kernel_source(m, order)
    exec(compile(source, f"<dualgap.dual_numba m={m} order={order} policy={policy}>", "exec"),
         scope)
    return numba.njit(fastmath={"contract", "reassoc"}, nogil=True)(scope["kernel"])


def _inputs(*arrays: np.ndarray) -> list:
    """The kernel's inputs as C-contiguous float64."""
    return [np.ascontiguousarray(a, dtype=np.float64) for a in arrays]


def numba_dual_sums(
    base: np.ndarray,
    reward: np.ndarray,
    kappa: float,
    utilities: np.ndarray,
    weights: np.ndarray,
    coefficients: np.ndarray,
    order: int = 2,
) -> DualSums:
    """The :class:`~dualgap.dual.DualSums` of rows with exponent ``z = base + kappa r + c^T g``.

    ``base``, ``reward``: ``(X', Y)`` (``reward`` is not read when ``kappa == 0``);
    ``utilities``: ``(m, X', Y)``; ``weights``: ``(X',)``; ``coefficients``: ``c = lam / beta``,
    ``(m,)``.  With ``base = log pi_ref`` and ``kappa = 1 / beta`` these are the sums of
    :func:`dualgap.dual.dual_sums` at ``lam``; with ``base = q = log pi_ref + r / beta_q`` (cached
    by :class:`dualgap.scaling.Normalization`) and ``kappa = 1 / beta - 1 / beta_q`` the same
    sums read ``m + 1`` arrays per pass instead of ``m + 2``.
    """
    m, X = utilities.shape[0], base.shape[0]
    order = order if m else 0
    base, reward, utilities, c, w = _inputs(base, reward, utilities, coefficients, weights)
    kernel = _kernel(m, order)
    npairs = m * (m + 1) // 2
    rows = np.empty((1 + (m if order >= 1 else 0) + (npairs if order >= 2 else 0), X))

    def task(lo: int, hi: int) -> None:
        z, e, bits = _row_buffers(base.shape[1])
        for a in range(lo, hi, ROWS_PER_CALL):
            kernel(base, reward, float(kappa), utilities, c, a, min(hi, a + ROWS_PER_CALL), z, e,
                   bits, rows)

    run_ranges(task, X, base.shape[1])
    sums = (rows * w).sum(axis=1)  # pairwise over the prompts
    first, second = np.zeros(m), np.zeros((m, m))
    if order >= 1:
        first = sums[1:1 + m]
    if order >= 2:
        low = np.tril_indices(m)
        second[low] = sums[1 + m:]
        second = second + np.tril(second, -1).T
    return DualSums(float(sums[0]), first, second)


def numba_policy_sums(
    base: np.ndarray,
    reward: np.ndarray,
    kappa: float,
    utilities: np.ndarray,
    weights: np.ndarray,
    coefficients: np.ndarray,
    inv_base_beta: float,
    out: np.ndarray,
    hessian: bool = False,
) -> PolicySums | tuple[PolicySums, DualSums]:
    """:func:`dualgap.dual.policy_sums` through the compiled kernel: ``pi_lam`` written into
    ``out`` ``(X', Y)`` (C-contiguous float64) and its sums, one pass (arguments as for
    :func:`numba_dual_sums`; ``inv_base_beta = 1 / beta_q``, 0 when ``base`` is ``log pi_ref``).
    With ``hessian``, the same pass also returns the oracle's :class:`DualSums` (order 2, the
    moments of the policy it writes): ``(PolicySums, DualSums)``.
    """
    m, X = utilities.shape[0], base.shape[0]
    if not (out.flags.c_contiguous and out.dtype == np.float64 and out.shape == base.shape):
        raise ValueError(f"out: must be a C-contiguous float64 array of shape {base.shape}")
    base, reward, utilities, c, w = _inputs(base, reward, utilities, coefficients, weights)
    kernel = _kernel(m, 2 if hessian else 0, True)
    npairs = m * (m + 1) // 2
    rows = np.empty((m + 3 + (1 + npairs if hessian else 0), X))

    def task(lo: int, hi: int) -> None:
        z, e, bits = _row_buffers(base.shape[1])
        for a in range(lo, hi, ROWS_PER_CALL):
            kernel(base, reward, float(kappa), utilities, c, float(inv_base_beta), a,
                   min(hi, a + ROWS_PER_CALL), z, e, bits, out, rows)

    run_ranges(task, X, base.shape[1])
    finite = bool(rows[m + 2].all())
    sums = (rows[:m + 2] * w).sum(axis=1)
    ps = PolicySums(sums[:m], float(sums[m]), float(sums[m + 1]), finite)
    if not hessian:
        return ps
    second = np.zeros((m, m))
    second[np.tril_indices(m)] = (rows[m + 4:] * w).sum(axis=1)
    second = second + np.tril(second, -1).T
    return ps, DualSums(float(rows[m + 3] @ w), sums[:m].copy(), second)


def _stats_source(m: int) -> str:
    """The source of the stats kernel for ``m`` constraints: rows ``lo:hi``, one loop over a
    row for all of its statistics (``q += r / beta``, where ``q`` holds ``log pi_ref``;
    ``rows[0]`` / ``rows[1]`` = max / min of ``r`` over the support, ``rows[2]`` = #supp,
    ``rows[3 + i]`` = ``E_ref g_i`` per prompt; ``top`` / ``low`` = support max / min of each
    ``g_i``, ``at[i, j] = g_j`` at the first maximizer of ``g_i`` (numpy's argmax);
    ``absmax`` = ``max |r|``, ``max |g_i|`` over the whole table).  The max and min updates
    are branches, rarely taken after a row's first entries: numba does not vectorize a float
    max reduction here, and branches let the ``2 + 2 m`` independent max / min updates of a
    support entry overlap (``max |.|`` is taken off the support only, and from the row's max
    and min on it)."""
    I = range(m)
    return "\n".join([
        "def kernel(ref, r, G, q, inv_beta, lo, hi, rows, top, low, at, absmax):",
        "    Y = ref.shape[1]",
        "    for x in range(lo, hi):",
        "        r_hi, r_lo, r_abs, n = -np.inf, np.inf, 0.0, 0",
        *[f"        g_hi{i}, g_lo{i}, g_abs{i}, s{i}, b{i} = -np.inf, np.inf, 0.0, 0.0, 0"
          for i in I],
        "        for y in range(Y):",
        "            p = ref[x, y]",
        "            v = r[x, y]",
        "            q[x, y] += v * inv_beta",
        *[f"            u{i} = G[{i}, x, y]" for i in I],
        *[f"            s{i} += p * u{i}" for i in I],
        "            if p > 0.0:",
        "                n += 1",
        "                if v > r_hi:",
        "                    r_hi = v",
        "                if v < r_lo:",
        "                    r_lo = v",
        *[line for i in I for line in (
            f"                if u{i} > g_hi{i}:", f"                    g_hi{i} = u{i}",
            f"                    b{i} = y", f"                if u{i} < g_lo{i}:",
            f"                    g_lo{i} = u{i}")],
        "            else:",  # |.| off the support; on it, the row's max and min give it
        "                av = abs(v)",
        "                if av > r_abs:",
        "                    r_abs = av",
        *[line for i in I for line in (
            f"                au{i} = abs(u{i})", f"                if au{i} > g_abs{i}:",
            f"                    g_abs{i} = au{i}")],
        "        r_abs = max(r_abs, abs(r_hi), abs(r_lo)) if n else r_abs",
        *[f"        g_abs{i} = max(g_abs{i}, abs(g_hi{i}), abs(g_lo{i})) if n else g_abs{i}"
          for i in I],
        "        rows[0, x], rows[1, x], rows[2, x] = r_hi, r_lo, n",
        "        absmax[0] = max(absmax[0], r_abs)",
        *[f"        top[{i}, x], low[{i}, x], rows[{3 + i}, x] = g_hi{i}, g_lo{i}, s{i}"
          for i in I],
        *[f"        at[{i}, {j}, x] = G[{j}, x, b{i}]" for i in I for j in I],
        *[f"        absmax[{1 + i}] = max(absmax[{1 + i}], g_abs{i})" for i in I],
    ])


@cache
def _stats_compiled(m: int):
    numba = _require()
    scope = {"np": np}
    exec(compile(_stats_source(m), f"<dualgap.dual_numba stats m={m}>", "exec"), scope)
    # no "contract": q = log pi_ref + r / beta is rounded as numpy rounds it (no fused add)
    return numba.njit(fastmath={"reassoc", "nsz", "nnan"}, nogil=True)(scope["kernel"])


def numba_stats(problem: AlignmentProblem, block_rows: int) -> dict:
    """The normalization's stats pass compiled and fused with ``q = log pi_ref + r / beta``
    (one read of ``pi_ref``, ``r`` and the utilities; ``log`` is numpy's, per block of
    ``block_rows`` prompts while the block is in cache).  Returns the per-prompt arrays of
    :func:`dualgap.scaling.normalize`'s numpy pass (``shift``, ``width``, ``top``, ``low``,
    ``at``, ``ref_rows`` = ``E_ref g`` per prompt), the table-wide ``r_abs``, ``g_abs``,
    ``entries``, and ``q``."""
    from .stats_pass import log_reference_blocks

    ref, r, G = problem.reference, problem.reward, problem.utilities
    m, X, _ = G.shape
    kernel = _stats_compiled(m)
    q = np.empty_like(r)
    rows = np.empty((3 + m, X))
    top, low, at = np.empty((m, X)), np.empty((m, X)), np.empty((m, m, X))
    inv_beta = 1.0 / problem.beta

    def task(start: int, stop: int) -> np.ndarray:
        absmax = np.zeros(1 + m)  # the range's maxima (a max is exact in any order)
        for lo, hi in log_reference_blocks(problem, q, block_rows, start, stop):
            kernel(ref, r, G, q, inv_beta, lo, hi, rows, top, low, at, absmax)
        return absmax

    absmax = np.max(run_ranges(task, X, r.shape[1]), axis=0)
    return {"shift": rows[0], "width": rows[0] - rows[1], "entries": int(rows[2].sum()),
            "ref_rows": rows[3:], "top": top, "low": low, "at": at, "r_abs": float(absmax[0]),
            "g_abs": absmax[1:], "q": q}


def numba_dual_oracle(problem: AlignmentProblem, lam: object, order: int = 2) -> DualEval:
    """:func:`dualgap.dual_oracle` through the compiled kernel (``base = log pi_ref``,
    ``kappa = 1 / beta``); multipliers whose ``lam / beta`` overflows fall back to numpy."""
    from .dual import dual_oracle

    _require()
    lam = _check_lam(problem, lam)
    order = _check_order(order)
    with np.errstate(over="ignore"):
        c = lam * (1.0 / problem.beta)
    if not np.isfinite(c).all() or not np.isfinite(1.0 / problem.beta):
        return dual_oracle(problem, lam, order)
    sums = numba_dual_sums(problem.log_reference, problem.reward, 1.0 / problem.beta,
                           problem.utilities, problem.prompt_weights, c, order)
    return sums.finish(lam, problem.beta, problem.offsets, order)

"""Hypothesis strategies for alignment problems, for users' property tests and ours.

    from hypothesis import given
    from dualgap.testing import problems

    @given(problems(max_constraints=3))
    def test_my_rule(problem): ...

Every problem drawn is strictly feasible with a known Slater margin (``margin`` or more), so
``lam*`` is finite and strong duality holds; ``support`` restrictions and ill-conditioned
variants (tiny/huge ``beta``, large score scales, nearly collinear utilities) are opt-in.
Requires ``hypothesis`` (a ``dev`` extra).

Checking a dual update rule
---------------------------
A *dual update rule* is ``rule(problem, eta) -> step`` where ``step(lam) -> lam_next`` (shape
``(m,)``) does one policy step and one multiplier step; ``step`` may keep state in a closure
(a PID integral, a warm start), and gets a fresh state from a new ``rule(problem, eta)`` call.
Every rule for ``min_{lam >= 0} D(lam)`` must satisfy, and the checkers below test:

* :func:`check_nonnegative`: ``lam_t >= 0`` (finite, shape ``(m,)``) along a run;
* :func:`check_fixed_point`: ``step(lam*) = lam*`` (``lam*`` from :func:`dualgap.solve`);
* :func:`check_descent`: for ``eta <= 1/L_D`` (``L_D`` = :func:`dualgap.theory.smoothness_bound`),
  ``D(step(lam)) <= D(lam)``;
* :func:`check_convergence`: after ``T`` steps of size ``eta <= 1/L_D`` from ``lam_0``,
  ``D(lam_T) - D* <= ||lam_0 - lam*||^2 / (2 eta T)`` (the rate of projected gradient descent,
  Beck 2017, Thm 10.21), and ``||lam_T - lam*||_inf <= lam_tol`` when a tolerance is stated.

Each raises :class:`DualUpdateViolation` (an ``AssertionError``) naming the property, the
multiplier and the numbers, so hypothesis shrinks to a small counterexample.
:func:`check_dual_update` runs all four.  Example: testing your own rule::

    import numpy as np
    from hypothesis import given, strategies as st
    from dualgap import dual_gradient
    from dualgap.testing import problems, check_dual_update

    def my_rule(problem, eta):
        def step(lam):
            return np.maximum(lam - eta * dual_gradient(problem, lam), 0.0)
        return step

    @given(problems(min_constraints=1), st.floats(0.05, 1.0))
    def test_my_rule(problem, fraction):
        check_dual_update(my_rule, problem, eta_fraction=fraction)

The rules this project ships are in :func:`dualgap.algorithms.dual_update_rule` (linear, log
and PID multipliers) and :func:`dualgap.algorithms.caid_update_rule` (CAID's step with a
parametrized policy class).  What the project's own tests found with them: the linear
multiplier passes all four (also on ill-conditioned problems); the log-parametrized multiplier
of Safe RLHF, ``lam exp(-eta lam u)``, keeps the sign and the fixed point but is not a descent
step for ``eta <= 1/L_D`` (nor does it meet the rate); the PID multiplier with gains keeps the
sign, the fixed point and first-step descent but misses the rate.

:func:`assert_same_bits_on_threads` checks that a computation (a pass of your own over
:func:`dualgap.threads.run_ranges`, a solve) gives the same bits on any number of threads.

Float comparisons allow ``ftol = 1e-10 (1 + M) (1 + ||lam||_1)`` (the rounding scale of ``D`` at
``lam``; ``M`` the score bound) and nothing more.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import strategies as st

from .dual import dual_value
from .instances import random_problem
from .problem import AlignmentProblem
from .solver import DualSolution, solve

__all__ = ["problems", "multipliers", "step_fractions", "DualStep", "DualUpdateRule",
           "DualUpdateViolation", "check_nonnegative", "check_fixed_point", "check_descent",
           "check_convergence", "check_dual_update", "assert_same_bits_on_threads"]


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


def step_fractions(min_fraction: float = 1e-2) -> st.SearchStrategy[float]:
    """``eta L_D`` in ``[min_fraction, 1]``, log-uniform (multiply by ``1/L_D`` for ``eta``)."""
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction: must be in (0, 1], got {min_fraction!r}")
    return st.floats(float(np.log10(min_fraction)), 0.0).map(lambda e: min(1.0, 10.0 ** e))


# ----------------------------------------------------------------- dual update rules
DualStep = Callable[[np.ndarray], np.ndarray]
DualUpdateRule = Callable[[AlignmentProblem, float], DualStep]


class DualUpdateViolation(AssertionError):
    """A dual update rule broke a property.

    Attributes:
        prop: ``"nonnegative"``, ``"fixed_point"``, ``"descent"`` or ``"convergence"``.
        details: the numbers behind the verdict (multipliers, values, bounds).
    """

    def __init__(self, prop: str, message: str, details: dict) -> None:
        self.prop, self.details = prop, details
        super().__init__(f"[{prop}] {message}")


def _smoothness(problem: AlignmentProblem, smoothness: float | None) -> float:
    if smoothness is None:
        from .theory import smoothness_bound
        smoothness = smoothness_bound(problem)
    L = float(smoothness)
    if not (np.isfinite(L) and L >= 0):
        raise ValueError(f"smoothness: must be a finite float >= 0, got {smoothness!r}")
    return L


def _max_step(L: float) -> float:
    return np.inf if L == 0 else 1.0 / L


def _ftol(problem: AlignmentProblem, lam: np.ndarray) -> float:
    """Rounding scale of ``D`` at ``lam``: ``1e-10 (1 + M)(1 + ||lam||_1)``."""
    return 1e-10 * (1.0 + problem.score_bound) * (1.0 + float(np.abs(lam).sum()))


def _exact(problem: AlignmentProblem, solution: DualSolution | None) -> DualSolution:
    return solve(problem) if solution is None else solution


def _call(step: DualStep, lam: np.ndarray, m: int, prop: str) -> np.ndarray:
    out = np.asarray(step(lam.copy()), dtype=np.float64)
    if out.shape != (m,):
        raise DualUpdateViolation(prop, f"step returned shape {out.shape}, expected ({m},)",
                                  {"lam": lam, "returned": out})
    if not np.isfinite(out).all():
        raise DualUpdateViolation(prop, f"step({lam!r}) returned a non-finite multiplier {out!r}",
                                  {"lam": lam, "returned": out})
    return out


def check_nonnegative(rule: DualUpdateRule, problem: AlignmentProblem, lam0: np.ndarray,
                      eta: float, steps: int = 20) -> np.ndarray:
    """``lam_t >= 0`` (finite, shape ``(m,)``) for ``t = 1..steps`` from ``lam0``; returns
    ``lam_T``."""
    lam = np.asarray(lam0, dtype=np.float64).reshape(problem.num_constraints)
    step = rule(problem, eta)
    for t in range(1, steps + 1):
        new = _call(step, lam, problem.num_constraints, "nonnegative")
        if (new < 0).any():
            i = int(np.argmin(new))
            raise DualUpdateViolation(
                "nonnegative", f"step {t} from lam = {lam!r} gave lam_{i} = {new[i]!r} < 0 "
                f"(eta = {eta:.6g})", {"t": t, "lam": lam, "returned": new, "eta": eta})
        lam = new
    return lam


def check_fixed_point(rule: DualUpdateRule, problem: AlignmentProblem, eta: float,
                      solution: DualSolution | None = None, atol: float | None = None) -> float:
    """``||step(lam*) - lam*||_inf <= atol`` (default ``1e-7 max(1, ||lam*||_inf)``, well above
    the solver's ``lam*`` error); returns the displacement."""
    sol = _exact(problem, solution)
    lam_star = np.asarray(sol.lam, dtype=np.float64)
    if atol is None:
        atol = 1e-7 * max(1.0, float(np.abs(lam_star).max(initial=0.0)))
    new = _call(rule(problem, eta), lam_star, problem.num_constraints, "fixed_point")
    moved = float(np.abs(new - lam_star).max(initial=0.0))
    if moved > atol:
        raise DualUpdateViolation(
            "fixed_point", f"step(lam*) moved by {moved:.6g} > {atol:.3g}: lam* = {lam_star!r} "
            f"-> {new!r} (eta = {eta:.6g})",
            {"lam_star": lam_star, "returned": new, "moved": moved, "atol": atol, "eta": eta})
    return moved


def check_descent(rule: DualUpdateRule, problem: AlignmentProblem, lam: np.ndarray,
                  eta: float, smoothness: float | None = None) -> float:
    """``D(step(lam)) <= D(lam) + ftol`` for a step ``eta <= 1/L_D``; returns the decrease.

    Raises:
        ValueError: ``eta > 1/L_D`` (the property is not owed for such steps).
    """
    L = _smoothness(problem, smoothness)
    if eta > _max_step(L) * (1 + 1e-12):
        raise ValueError(f"eta: {eta!r} exceeds 1/L_D = {_max_step(L)!r}; descent is only "
                         "owed for eta <= 1/L_D")
    lam = np.asarray(lam, dtype=np.float64).reshape(problem.num_constraints)
    new = _call(rule(problem, eta), lam, problem.num_constraints, "descent")
    if (new < 0).any():
        raise DualUpdateViolation("nonnegative", f"step({lam!r}) = {new!r} has a negative entry",
                                  {"lam": lam, "returned": new})
    before, after = dual_value(problem, lam), dual_value(problem, new)
    tol = _ftol(problem, np.maximum(lam, new))
    if after > before + tol:
        raise DualUpdateViolation(
            "descent", f"D rose from {before!r} to {after!r} (by {after - before:.6g} > ftol "
            f"{tol:.3g}) stepping lam = {lam!r} -> {new!r} with eta = {eta:.6g} <= 1/L_D = "
            f"{_max_step(L):.6g}",
            {"lam": lam, "returned": new, "before": before, "after": after, "eta": eta,
             "smoothness": L})
    return before - after


def check_convergence(rule: DualUpdateRule, problem: AlignmentProblem, steps: int,
                      eta: float | None = None, lam0: np.ndarray | None = None,
                      solution: DualSolution | None = None, smoothness: float | None = None,
                      lam_tol: float | None = None) -> dict:
    """After ``steps`` steps of size ``eta <= 1/L_D`` (default ``1/L_D``) from ``lam0``
    (default 0): ``D(lam_T) - D* <= ||lam_0 - lam*||^2 / (2 eta T) + ftol`` and, when
    ``lam_tol`` is given, ``||lam_T - lam*||_inf <= lam_tol``.

    Returns ``{"gap", "bound", "distance", "lam"}``.  (The rate is owed by deterministic
    rules at least as good as projected gradient descent; it does not apply to sampled ones.)
    """
    if int(steps) < 1:
        raise ValueError(f"steps: must be >= 1, got {steps!r}")
    m = problem.num_constraints
    L = _smoothness(problem, smoothness)
    if eta is None:
        eta = _max_step(L)
        if not np.isfinite(eta):
            raise ValueError("eta: L_D = 0 (no constraints); pass eta")
    elif eta > _max_step(L) * (1 + 1e-12):
        raise ValueError(f"eta: {eta!r} exceeds 1/L_D = {_max_step(L)!r}")
    sol = _exact(problem, solution)
    lam_star = np.asarray(sol.lam, dtype=np.float64)
    lam = np.zeros(m) if lam0 is None else np.asarray(lam0, dtype=np.float64).reshape(m)
    start = lam.copy()
    step = rule(problem, eta)
    for _ in range(int(steps)):
        lam = _call(step, lam, m, "convergence")
    gap = dual_value(problem, lam) - sol.dual_value
    bound = float(np.sum((start - lam_star) ** 2)) / (2.0 * eta * int(steps))
    tol = _ftol(problem, np.maximum(lam, lam_star))
    dist = float(np.abs(lam - lam_star).max(initial=0.0))
    details = {"gap": gap, "bound": bound, "distance": dist, "lam": lam, "lam_star": lam_star,
               "eta": eta, "steps": int(steps)}
    if gap > bound + tol:
        raise DualUpdateViolation(
            "convergence", f"after {steps} steps (eta = {eta:.6g}) D(lam_T) - D* = {gap:.6g} "
            f"> ||lam_0 - lam*||^2 / (2 eta T) = {bound:.6g} (lam_T = {lam!r}, lam* = "
            f"{lam_star!r})", details)
    if lam_tol is not None and dist > lam_tol:
        raise DualUpdateViolation(
            "convergence", f"after {steps} steps ||lam_T - lam*||_inf = {dist:.6g} > {lam_tol:.3g}"
            f" (lam_T = {lam!r}, lam* = {lam_star!r})", details)
    return {"gap": gap, "bound": bound, "distance": dist, "lam": lam}


def check_dual_update(rule: DualUpdateRule, problem: AlignmentProblem, *,
                      eta_fraction: float = 1.0, steps: int = 50, seed: int = 0,
                      points: list[np.ndarray] | None = None, smoothness: float | None = None,
                      solution: DualSolution | None = None, lam_tol: float | None = None,
                      lam0: np.ndarray | None = None) -> dict:
    """All four properties at ``eta = eta_fraction / L_D``.

    Descent is tested at ``points`` (default: ``0``, ``lam*``, ``2 lam* + 1`` and an
    exponential draw around ``lam*`` from ``seed``); non-negativity along ``steps`` steps from
    each point; the fixed point at ``lam*``; convergence from ``lam0`` (default 0) after
    ``steps`` steps.
    Returns the numbers each check measured.
    """
    if not 0 < eta_fraction <= 1:
        raise ValueError(f"eta_fraction: must be in (0, 1], got {eta_fraction!r}")
    m = problem.num_constraints
    L = _smoothness(problem, smoothness)
    eta = eta_fraction * _max_step(L) if L > 0 else eta_fraction
    sol = _exact(problem, solution)
    lam_star = np.asarray(sol.lam, dtype=np.float64)
    if points is None:
        rng = np.random.default_rng(seed)
        points = [np.zeros(m), lam_star, 2.0 * lam_star + 1.0,
                  rng.exponential(1.0 + lam_star, size=m)]
    out: dict = {"eta": eta, "smoothness": L}
    for lam in points:
        check_nonnegative(rule, problem, lam, eta, steps=min(steps, 20))
    out["descent"] = [check_descent(rule, problem, lam, eta, smoothness=L) for lam in points]
    out["fixed_point"] = check_fixed_point(rule, problem, eta, solution=sol)
    out["convergence"] = check_convergence(rule, problem, steps, eta=eta, lam0=lam0,
                                           solution=sol, smoothness=L, lam_tol=lam_tol)
    return out


def _leaves(x: object) -> list[np.ndarray]:
    """The arrays in ``x``: dataclass fields, dict values (by key), list and tuple items."""
    import dataclasses

    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return _leaves([getattr(x, f.name) for f in dataclasses.fields(x)])
    if isinstance(x, dict):
        return [v for k in sorted(x) for v in _leaves(x[k])]
    if isinstance(x, list | tuple):
        return [v for item in x for v in _leaves(item)]
    return [np.asarray(x)]


def assert_same_bits_on_threads(run: Callable[[], object], counts: tuple[int, ...] = (2, 3)
                                ) -> None:
    """Assert that ``run()`` gives the same bits on one thread and on each of ``counts``
    threads of :mod:`dualgap.threads` (every array in its result: dataclass fields, dict
    values, list and tuple items; every table split, whatever its size; the thread settings
    are restored afterwards)."""
    from . import threads

    saved = threads._threads, threads.THREAD_MIN_ENTRIES
    try:
        threads.THREAD_MIN_ENTRIES = 0
        threads.set_threads(1)
        want = _leaves(run())
        for count in counts:
            threads.set_threads(count)
            got = _leaves(run())
            if len(got) != len(want):
                raise AssertionError(f"{count} threads: {len(got)} results against {len(want)}")
            for k, (a, b) in enumerate(zip(got, want, strict=True)):
                np.testing.assert_array_equal(a, b, err_msg=f"result {k} on {count} threads")
    finally:
        threads._threads, threads.THREAD_MIN_ENTRIES = saved

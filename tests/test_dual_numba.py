"""The compiled oracle (backend "numba") against numpy's to 1e-12, and its switch."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dualgap as dg
from dualgap import dual_numba
from dualgap.dual import dual_backend, policy_sums
from dualgap.instances import random_problem
from dualgap.testing import assert_same_bits_on_threads, multipliers, problems

needs_numba = pytest.mark.skipif(not dual_numba.available(), reason="numba is not installed")


@needs_numba
def test_exp_matches_numpy_to_an_ulp_and_flushes_below_the_cut():
    x = np.concatenate([-np.linspace(0.0, 708.0, 100_001), -np.geomspace(1e-300, 1.0, 1000)])
    want = np.exp(x)
    got = dual_numba.exp_nonpositive(x)
    assert np.max(np.abs(got - want) / want) <= 4e-16
    # below -708 (exp < 3.3e-308, against a row sum >= 1) the kernel gives 0, never a NaN
    np.testing.assert_array_equal(dual_numba.exp_nonpositive(np.array([-709.0, -1e300, -np.inf])),
                                  0.0)


@needs_numba
@settings(max_examples=25, deadline=None)
@given(problems(max_constraints=3), st.data())
def test_numba_oracle_matches_numpy_to_1e_12(p, data):
    lam = data.draw(multipliers(p.num_constraints, 3.0))
    oracle = dual_backend("numba")
    for order in (0, 1, 2):
        want = dg.dual_oracle(p, lam, order)
        got = oracle(p, lam, order)
        assert abs(got.value - want.value) <= 1e-12 * max(1.0, abs(want.value))
        if order >= 1:
            np.testing.assert_allclose(got.gradient, want.gradient, rtol=0,
                                       atol=1e-12 * max(1.0, p.score_bound))
        if order == 2:
            scale = max(1.0, float(np.abs(want.hessian).max(initial=0.0)))
            np.testing.assert_allclose(got.hessian, want.hessian, rtol=0, atol=1e-12 * scale)


@needs_numba
def test_the_centered_redo_is_taken_where_the_uncentered_covariance_cancels():
    # utilities 1e6 + tiny noise: E g^2 / Var g ~ 1e16, the uncentered form keeps no digit
    p = random_problem(3, 20, 30, 2)
    p = p.replace(utilities=1e6 + 1e-2 * p.utilities)
    lam = np.array([0.5, 0.2])
    want = dg.dual_oracle(p, lam)
    got = dual_backend("numba")(p, lam)
    np.testing.assert_allclose(got.hessian, want.hessian, rtol=1e-9)


@needs_numba
@pytest.mark.parametrize("m", [0, 1, 3])
def test_numba_policy_pass_matches_numpy(m):
    p = random_problem(11 + m, 40, 35, m, support_fraction=0.7)
    lam = np.linspace(0.3, 1.2, m)
    out_np, out_nb = np.empty_like(p.reward), np.empty_like(p.reward)
    want = policy_sums(p.reward, p.utilities, p.log_reference, p.prompt_weights, lam, p.beta,
                       out_np)
    got = dual_numba.numba_policy_sums(p.log_reference, p.reward, 1.0 / p.beta, p.utilities,
                                       p.prompt_weights, lam / p.beta, 0.0, out_nb)
    np.testing.assert_allclose(out_nb, out_np, rtol=0, atol=1e-14)
    np.testing.assert_allclose(got.utilities, want.utilities, rtol=0, atol=1e-13)
    assert got.reward == pytest.approx(want.reward, abs=1e-13)
    assert got.kl == pytest.approx(want.kl, abs=1e-12)
    assert got.finite and want.finite


@needs_numba
@settings(max_examples=10, deadline=None)
@given(problems(max_constraints=3))
def test_solve_with_numba_gives_numpys_solution(p):
    a, b = dg.solve(p), dg.solve(p.replace(), backend="numba")
    assert a.converged == b.converged
    scale = max(1.0, p.score_bound)
    np.testing.assert_allclose(b.lam, a.lam, rtol=1e-6, atol=1e-7 * scale)
    np.testing.assert_allclose(b.policy, a.policy, atol=1e-8)
    assert abs(b.primal_value - a.primal_value) <= 1e-9 * (1 + abs(a.primal_value))
    assert b.kkt_residual <= b.kkt_tolerance or not a.converged


def test_backend_numba_without_numba_is_one_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_numba(name, *args, **kw):
        if name == "numba" or name.startswith("numba."):
            raise ImportError("no numba")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_numba)
    assert not dual_numba.available()
    p = random_problem(0, 5, 6, 1)
    with pytest.raises(ValueError, match=r"^backend: 'numba' needs the numba package"):
        dual_backend("numba")(p, np.zeros(1))


@needs_numba
@settings(max_examples=25, deadline=None)
@given(problems(max_constraints=3, ill_conditioned=True), st.integers(1, 4))
def test_compiled_stats_pass_gives_numpys_normalization_and_q(p, block_rows):
    from dualgap.scaling import _log_reference_plus, _stats_numpy, normalize

    want = _stats_numpy(p, True)
    got = dual_numba.numba_stats(p, block_rows)
    for k in ("shift", "width", "top", "low", "at", "g_abs"):  # maxima, minima: exact
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert (got["r_abs"], got["entries"]) == (want["r_abs"], want["entries"])
    scale = max(1.0, float(np.abs(p.utilities).max(initial=0.0)))
    np.testing.assert_allclose(got["ref_rows"] @ p.prompt_weights, want["ref_g"], rtol=0,
                               atol=1e-14 * scale)
    np.testing.assert_array_equal(got["q"], _log_reference_plus(p))  # the same rounding
    a, b = normalize(p.replace()), normalize(q := p.replace(), compiled=True)
    assert a.direct == b.direct and a.support_entries == b.support_entries
    np.testing.assert_allclose(b.maxima, a.maxima, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(b.constraint_scales, a.constraint_scales, rtol=1e-12)
    assert ("q" in b.memo) == b.direct  # kept for the oracle only where it is used
    assert q is b.source


@needs_numba
def test_numba_solve_takes_the_compiled_stats_pass(monkeypatch):
    from dualgap import scaling

    p = random_problem(4, 30, 40, 2)
    seen = []
    real = scaling._stats_numpy
    monkeypatch.setattr(scaling, "_stats_numpy", lambda *a: seen.append(a) or real(*a))
    sol = dg.solve(p, backend="numba")
    assert sol.converged and not seen and "q" in p.normalized.memo
    dg.solve(p.replace())  # the numpy backend keeps numpy's pass
    assert len(seen) == 1


@needs_numba
@pytest.mark.parametrize("m", [0, 1, 3])
def test_policy_pass_with_hessian_is_the_oracle_and_the_policy_in_one(m):
    p = random_problem(21 + m, 40, 35, m, support_fraction=0.7)
    lam = np.linspace(0.3, 1.2, m)
    args = (p.log_reference, p.reward, 1.0 / p.beta, p.utilities, p.prompt_weights, lam / p.beta)
    out_a, out_b = np.empty_like(p.reward), np.empty_like(p.reward)
    plain = dual_numba.numba_policy_sums(*args, 0.0, out_a)
    ps, sums = dual_numba.numba_policy_sums(*args, 0.0, out_b, hessian=True)
    np.testing.assert_allclose(out_b, out_a, rtol=0, atol=1e-15)
    np.testing.assert_allclose(ps.utilities, plain.utilities, rtol=0, atol=1e-14)
    assert (ps.reward, ps.kl) == pytest.approx((plain.reward, plain.kl), abs=1e-14)
    want = dg.dual_oracle(p, lam)
    got = sums.finish(lam, p.beta, p.offsets, 2)
    assert got.value == pytest.approx(want.value, abs=1e-12 * max(1.0, abs(want.value)))
    np.testing.assert_allclose(got.gradient, want.gradient, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.hessian, want.hessian, rtol=0,
                               atol=1e-12 * max(1.0, float(np.abs(want.hessian).max(initial=0))))


@needs_numba
def test_numba_solve_writes_pi_in_its_last_oracle_pass():
    p = random_problem(8, 60, 50, 2, tightness=0.9)
    a = dg.solve(p.replace())
    b = dg.solve(q := p.replace(), backend="numba")
    assert b.passes == a.passes - 1  # no final pass of its own
    assert "policy_at" not in q.normalized.memo  # released by the solve
    pi, slack, j_n = q.normalized.final(b.lam, "numba")  # what the final pass would give
    np.testing.assert_allclose(b.policy, pi, rtol=0, atol=1e-15)
    np.testing.assert_allclose(b.slack, slack, rtol=0, atol=1e-14)
    assert b.primal_value == pytest.approx(q.normalized.value(j_n), abs=1e-13)
    np.testing.assert_allclose(b.policy, a.policy, rtol=0, atol=1e-12)
    norm = q.normalized  # a kept policy serves only its own lam, bit for bit
    lam_n = norm.to_internal(b.lam)
    lam = norm.to_problem(lam_n, q.names)  # the lam solve's final pass gets for lam_n
    norm.dual_sums_at(lam_n, norm.beta, 2, "numba", policy=True)
    assert norm.take_policy(np.nextafter(lam, np.inf)) is None
    assert norm.take_policy(lam) is None  # released by the miss
    norm.dual_sums_at(lam_n, norm.beta, 2, "numba", policy=True)
    np.testing.assert_allclose(norm.take_policy(lam)[0], pi, rtol=0, atol=1e-15)


@needs_numba
@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 3), st.sampled_from(["scale", "offset", "tiny"]),
       st.integers(-300, 300))
def test_numba_solve_at_the_float64_extremes_gives_numpys_answer(seed, m, kind, k):
    """Scores of 1e+-300 (beta with them), per-prompt reward offsets of 1e12 (the normalized
    copy), reference entries down to 1e-320: the compiled stats pass, the speculated last pass
    and their fallbacks give numpy's solution."""
    import warnings

    p = random_problem(seed, 3, 6, m, 0.5, support_fraction=0.6, margin=0.05)
    if kind == "scale":
        c = 10.0**k
        p = p.replace(reward=p.reward * c, utilities=p.utilities * c,
                      thresholds=p.thresholds * c, beta=p.beta * c)
    elif kind == "offset":
        off = np.random.default_rng(seed).uniform(-1e12, 1e12, size=(p.num_prompts, 1))
        p = p.replace(reward=p.reward + off)
    else:
        p = p.replace(reference=np.where(p.support, p.reference, 10.0 ** -(20 + abs(k))))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, b = dg.solve(p.replace()), dg.solve(p.replace(), backend="numba")
    assert a.converged and b.converged
    np.testing.assert_allclose(b.lam, a.lam, rtol=1e-6, atol=1e-6 * (1 + np.abs(a.lam).max()))
    np.testing.assert_allclose(b.policy, a.policy, rtol=0, atol=1e-9)
    assert b.passes in (a.passes, a.passes - 1)


@needs_numba
@pytest.mark.parametrize("m", [0, 1, 3])
def test_every_pass_gives_the_same_bits_on_any_number_of_threads(m):
    """The prompts split into contiguous ranges, one thread each: each row is the same code,
    the sums over prompts are numpy's, so 1, 2 and 3 threads agree bit for bit (oracle at each
    order, policy pass with and without the Hessian, the stats pass and ``q``, a whole solve)."""
    p = random_problem(31 + m, 37, 23, m, support_fraction=0.7)  # 37 rows: uneven splits
    lam = np.linspace(0.3, 1.2, m)
    args = (p.log_reference, p.reward, 1.0 / p.beta, p.utilities, p.prompt_weights, lam / p.beta)

    def passes() -> list:
        got = [dual_numba.numba_dual_sums(*args, order) for order in (0, 1, 2)]
        for hessian in (False, True):
            out = np.empty_like(p.reward)
            got += [dual_numba.numba_policy_sums(*args, 0.0, out, hessian=hessian), out]
        stats = dual_numba.numba_stats(p, 5)
        sol = dg.solve(p.replace(), backend="numba")
        return got + [stats, sol.lam, sol.policy, sol.dual_value, sol.passes]

    assert_same_bits_on_threads(passes)


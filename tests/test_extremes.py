"""The exact core at the extremes of float64: a fuzz suite and a table of bad inputs.

The fuzz tests draw extreme-but-valid instances (scores scaled by up to 1e+-300, so beta from
~1e-301 to ~1e301; per-prompt reward offsets of up to 1e12; constraint scales of 1e+-150;
reference entries down to 1e-320; m up to 10) and check them against what the mathematics
guarantees, not against numbers from the solver: homogeneity of D (scaling r, h, beta by c
scales D by c and leaves lam*, pi* unchanged), invariance under per-prompt reward constants,
lam_i* scaling as 1 / a_i under h_i -> a_i h_i, and continuity in vanishing reference entries.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dualgap as dg
from dualgap.dual import check_policy
from dualgap.empirical import sample_responses
from dualgap.instances import random_problem


@st.composite
def base_problems(draw, max_constraints=10, support_fraction=1.0):
    """Small strictly feasible instances with m from 1 to ``max_constraints``."""
    seed = draw(st.integers(0, 10_000))
    X = draw(st.integers(1, 4))
    Y = draw(st.integers(2, 6))
    m = draw(st.integers(1, max_constraints))
    beta = 10.0 ** draw(st.floats(-1.0, 1.0))
    return random_problem(seed, X, Y, m, beta, support_fraction=support_fraction,
                          margin=0.05)


def _solve(p):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning, no overflow RuntimeWarning
        sol = dg.solve(p)
    assert sol.converged and sol.kkt_residual <= sol.kkt_tolerance
    assert np.isfinite(sol.lam).all() and np.isfinite(sol.policy).all()
    assert np.isfinite([sol.dual_value, sol.primal_value, sol.kkt_residual]).all()
    return sol


def _same_lam(a, b, rtol=1e-6):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * (1.0 + np.abs(b).max(initial=0.0)))


@given(base_problems(), st.integers(-300, 300))
def test_homogeneity_over_600_orders_of_magnitude(p, k):
    c = 10.0**k
    q = p.replace(reward=p.reward * c, utilities=p.utilities * c,
                  thresholds=p.thresholds * c, beta=p.beta * c)
    a, b = _solve(p), _solve(q)
    _same_lam(b.lam, a.lam)
    np.testing.assert_allclose(b.policy, a.policy, atol=1e-9)
    # D(lam*) scales by c; the slack E h by c (up to the tolerance, scaled by c too)
    assert abs(b.dual_value - c * a.dual_value) <= 1e-9 * c * (1.0 + abs(a.dual_value))
    np.testing.assert_allclose(b.slack, c * a.slack, rtol=0, atol=c * 10 * a.kkt_tolerance)
    assert b.kkt_tolerance == pytest.approx(c * a.kkt_tolerance, rel=1e-6)


@given(base_problems(), st.integers(0, 2**31), st.floats(1.0, 1e12))
def test_per_prompt_reward_offsets_up_to_1e12_change_nothing(p, seed, size):
    offset = np.random.default_rng(seed).uniform(-size, size, size=(p.num_prompts, 1))
    shifted = p.reward + offset
    # the same float information without the offset: (r + f) - f (Sterbenz: the differences
    # within a row are then bit-identical to those of `shifted`)
    q = p.replace(reward=shifted)
    base = p.replace(reward=shifted - offset)
    a, b = _solve(base), _solve(q)
    _same_lam(b.lam, a.lam, rtol=1e-9)
    np.testing.assert_allclose(b.policy, a.policy, atol=1e-12)
    # J and D move by E_rho f exactly (up to the rounding of numbers of size |f|)
    shift = float(p.prompt_weights @ offset[:, 0])
    tol = 1e-9 * (1 + abs(a.primal_value)) + 4e-16 * size
    assert abs((b.primal_value - a.primal_value) - shift) <= tol
    assert abs((b.dual_value - a.dual_value) - shift) <= tol


@given(base_problems(), st.data())
def test_constraint_scales_move_only_their_multiplier(p, data):
    k = np.array(data.draw(st.lists(st.integers(-150, 150), min_size=p.num_constraints,
                                    max_size=p.num_constraints)), dtype=float)
    a_i = 10.0**k
    q = p.replace(utilities=p.utilities * a_i[:, None, None], thresholds=p.thresholds * a_i)
    a, b = _solve(p), _solve(q)
    _same_lam(b.lam * a_i, a.lam)  # lam_i* -> lam_i* / a_i
    np.testing.assert_allclose(b.policy, a.policy, atol=1e-9)
    assert b.primal_value == pytest.approx(a.primal_value, rel=1e-9, abs=1e-9)
    assert (b.slack >= -b.kkt_tolerance).all()


@given(base_problems(support_fraction=0.6), st.integers(100, 320))
def test_vanishing_reference_entries_tend_to_the_zero_support(p, k):
    eps = 10.0**-k  # subnormal below 1e-308
    q = p.replace(reference=np.where(p.support, p.reference, eps))
    assert q.support.all() or eps == 0.0
    a, b = _solve(p), _solve(q)
    _same_lam(b.lam, a.lam, rtol=1e-7)
    np.testing.assert_allclose(b.policy, a.policy, atol=1e-12)
    check_policy(b.policy, p.reward.shape)


@given(base_problems(max_constraints=4), st.integers(3, 300))
def test_huge_beta_is_solved_to_tolerance(p, k):
    # beta >> scores: pi* is a tiny tilt of pi_ref and lam* ~ beta; feasible for any beta
    q = p.replace(beta=p.beta * 10.0**k)
    sol = _solve(q)
    assert (sol.slack >= -sol.kkt_tolerance).all()
    # D - J = lam^T slack (Lemma 2); J's beta * KL is evaluated from log pi - log pi_ref, whose
    # rounding (eps |log pi_ref| per entry) beta multiplies: the float64 floor of J itself
    kl_floor = 8 * np.finfo(float).eps * q.beta * (1 + np.abs(q.log_reference[q.support]).max())
    gap_tol = 1e-9 * (1 + abs(sol.primal_value)) + sol.lam.sum() * sol.kkt_tolerance + kl_floor
    assert abs(sol.dual_value - sol.primal_value) <= gap_tol


@given(base_problems(max_constraints=4), st.integers(-300, 300), st.data())
def test_policy_and_oracle_are_finite_or_raise_for_any_multiplier(p, k, data):
    c = 10.0**k
    q = p.replace(reward=p.reward * c, utilities=p.utilities * c,
                  thresholds=p.thresholds * c, beta=p.beta * c)
    lam = np.array(data.draw(st.lists(st.floats(0.0, 1e308), min_size=q.num_constraints,
                                      max_size=q.num_constraints)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # overflow on the way is a bug, not a warning
        try:
            pi = dg.lagrangian_policy(q, lam)
        except ValueError as err:
            assert str(err).startswith("lam: ")
        else:
            check_policy(pi, q.reward.shape)
            assert (pi[~q.support] == 0).all()
        try:
            ev = dg.dual_oracle(q, lam)
        except ValueError as err:
            assert str(err).startswith(("lam: ", "utilities: hess D"))
        else:
            assert np.isfinite(ev.value) and np.isfinite(ev.gradient).all()
            assert np.isfinite(ev.hessian).all()


def test_widest_scale_range_and_beta_range_solved():
    p = random_problem(3, 4, 6, 3, 0.5)
    ref = _solve(p)
    for c in (1e-300, 1e300):  # beta from 5e-301 to 5e299
        q = p.replace(reward=p.reward * c, utilities=p.utilities * c,
                      thresholds=p.thresholds * c, beta=p.beta * c)
        _same_lam(_solve(q).lam, ref.lam)
    # the cases: utilities (and thresholds) alone scaled by 1e300 and 1e150
    for c in (1e300, 1e150):
        q = p.replace(utilities=p.utilities * c, thresholds=p.thresholds * c)
        sol = _solve(q)
        _same_lam(sol.lam * c, ref.lam)
        assert (sol.slack >= -sol.kkt_tolerance).all()


def test_tiny_beta_with_binding_constraints_is_refused_not_faked():
    p = random_problem(1, 6, 8, 2)
    assert (_solve(p).lam > 0).all()
    with pytest.raises(ValueError, match=r"^beta: 1e-300 is too small for float64"):
        dg.solve(p.replace(beta=1e-300))


def test_tiny_beta_with_slack_constraints_is_solved():
    # one prompt; the reward's argmax also maximizes g, so lam* = 0 at any beta
    r = np.array([[1.0, 0.0, -1.0]])
    g = np.array([[[1.0, 0.0, -1.0]]])
    p = dg.AlignmentProblem(r, g, [0.1], 1e-300, np.full((1, 3), 1 / 3))
    sol = _solve(p)
    assert sol.lam.tolist() == [0.0]
    np.testing.assert_array_equal(sol.policy, [[1.0, 0.0, 0.0]])


def test_kkt_residual_is_free_of_cancellation():
    # lam - (lam - grad) would be 0 here; the residual is |grad| = 1e-20
    assert dg.kkt_residual(np.array([1.0]), np.array([-1e-20])) == 1e-20
    assert dg.kkt_residual(np.array([0.0]), np.array([5.0])) == 0.0
    assert dg.kkt_residual(np.array([2.0]), np.array([5.0])) == 2.0


def test_joint_certificate_uses_constraint_names():
    g = np.array([[[1.0, -1.0]], [[-1.0, 1.0]]]) * 1e200
    p = dg.AlignmentProblem(np.zeros((1, 2)), g, [0.2e200, 0.2e200], 0.1,
                            np.array([[0.5, 0.5]]), relative=False, names=("safe", "kind"))
    with pytest.raises(dg.InfeasibleError) as err:
        dg.solve(p)
    text = str(err.value)
    assert "E h[safe]" in text and "E h[kind]" in text and "h[0]" not in text
    assert dg.ray_bound(p, err.value.weights) == pytest.approx(err.value.bound, rel=1e-9)
    assert err.value.bound < 0


# ------------------------------------------------------------------------ bad inputs
def _problem_kw(**over):
    rng = np.random.default_rng(0)
    kw = dict(reward=rng.normal(size=(2, 3)), utilities=rng.normal(size=(2, 2, 3)),
              thresholds=[-0.5, -0.5], beta=0.5, reference=np.full((2, 3), 1 / 3))
    kw.update(over)
    return kw


def _make(**over):
    return lambda: dg.AlignmentProblem(**_problem_kw(**over))


_P = random_problem(1, 6, 8, 2)
_big = 1.7e308


def _scaled(r=1.0, g=1.0, beta=1.0):
    return _P.replace(reward=_P.reward * r, utilities=_P.utilities * g,
                      thresholds=_P.thresholds * g, beta=_P.beta * beta)


BAD_INPUTS = [
    # strict types: nothing is coerced
    ("beta str", _make(beta="0.5"), "beta: must be a positive finite float, got '0.5'"),
    ("beta bool", _make(beta=True), "beta: must be a positive finite float, got True"),
    ("beta complex", _make(beta=0.5 + 0j), "beta: must be a real number"),
    ("reward complex", _make(reward=np.ones((2, 3)) + 1j), "reward: must hold real numbers"),
    ("reward str", _make(reward=[["1", "2", "3"]] * 2), "reward: must hold real numbers"),
    ("utilities bool", _make(utilities=np.ones((2, 2, 3), bool)), "utilities: must hold real"),
    ("thresholds obj", _make(thresholds=np.array([None, 1.0])), "thresholds: must hold real"),
    ("reference str", _make(reference=np.full((2, 3), "x")), "reference: must hold real"),
    ("names int", _make(names=(1, 2)), "names: name 0 is 1 (int), not a string"),
    ("names dup", _make(names=("a", "a")), "names: duplicate name 'a'"),
    ("names str", _make(names="ab"), "names: expected a sequence of 2 strings"),
    ("names empty", _make(names=("a", " ")), "names: name 1 is empty"),
    ("relative int", _make(relative=1), "relative: must be a bool"),
    # solve's arguments
    ("tol negative", lambda: dg.solve(_P, tol=-1), "tol: must be a positive finite float"),
    ("tol zero", lambda: dg.solve(_P, tol=0.0), "tol: must be a positive finite float"),
    ("tol nan", lambda: dg.solve(_P, tol=float("nan")), "tol: must be a positive finite"),
    ("tol one", lambda: dg.solve(_P, tol=1.0), "tol: must be a positive finite float below 1"),
    ("tol str", lambda: dg.solve(_P, tol="1e-8"), "tol: must be a positive finite float"),
    ("tol bool", lambda: dg.solve(_P, tol=True), "tol: must be a positive finite float"),
    ("max_iter 0", lambda: dg.solve(_P, max_iter=0), "max_iter: must be a positive int"),
    ("max_iter float", lambda: dg.solve(_P, max_iter=2.5), "max_iter: must be a positive int"),
    ("lam0 negative", lambda: dg.solve(_P, lam0=[-1.0, 0.0]), "lam: multipliers must be >= 0"),
    ("lam0 shape", lambda: dg.solve(_P, lam0=[1.0]), "lam: shape (1,) does not match m = 2"),
    ("check_slater", lambda: dg.solve(_P, check_slater="no"), "check_slater: must be a bool"),
    ("eps length", lambda: dg.perturbation(_P, [0.1, 0.1, 0.1]),
     "eps: expected a scalar or 2 values (one per constraint), got shape (3,)"),
    ("eps nan", lambda: _P.tightened(float("nan")), "eps: 1 non-finite"),
    # multipliers and policies
    ("lam huge policy", lambda: dg.lagrangian_policy(_P, [1e308, 0.0]), "lam: [1e+308, 0.0] is "
     "too large for this problem"),
    ("lam huge dual", lambda: dg.dual_value(_P, [1e308, 0.0]), "lam: [1e+308, 0.0] is too large"),
    ("lam complex", lambda: dg.dual_value(_P, [1j, 0.0]), "lam: must hold real numbers"),
    ("lam str", lambda: dg.lagrangian_policy(_P, ["1", "0"]), "lam: must hold real numbers"),
    ("lam shape", lambda: dg.dual_gradient(_P, [1.0, 2.0, 3.0]), "lam: shape (3,) does not"),
    ("policy complex", lambda: dg.objective(_P, _P.reference + 0j), "policy: must hold real"),
    ("policy shape", lambda: dg.objective(_P, np.ones((2, 2)) / 2), "policy: shape (2, 2)"),
    ("weights nan", lambda: dg.ray_bound(_P, [np.nan, 1.0]), "weights: must be finite"),
    ("weights negative", lambda: dg.ray_bound(_P, [-1.0, 1.0]), "weights: need shape (2,)"),
    # float64 cannot hold the answer: say which field and why
    ("beta tiny", lambda: dg.solve(_P.replace(beta=1e-300)), "beta: 1e-300 is too small"),
    ("spread/beta", lambda: dg.solve(_scaled(r=1e300, beta=1e-300)), "beta: "),
    ("reward spread", lambda: dg.solve(_P.replace(reward=np.where(_P.reward > 0, _big, -_big))),
     "reward: the spread of the reward over the support of prompt x = 0 overflows float64"),
    ("offset overflow", lambda: dg.solve(_P.replace(utilities=np.full_like(_P.utilities, _big),
                                                    thresholds=[_big, 0.0])),
     "thresholds: the offset c = E_ref g + b of constraint 'g1' overflows float64"),
    ("h overflow", lambda: dg.solve(_P.replace(utilities=np.full_like(_P.utilities, _big),
                                               thresholds=[-_big, 0.0], relative=False)),
     "utilities: h = g - c of constraint 'g1' overflows float64"),
    ("multiplier overflow", lambda: dg.solve(_scaled(r=1e300, g=1e-300, beta=1e300)),
     "utilities: the multiplier of constraint"),
    ("hessian overflow", lambda: dg.dual_hessian(_scaled(g=1e300), [0.0, 0.0]),
     "utilities: hess D = Cov(g) / beta overflows float64"),
    ("problem dict", lambda: dg.solve({"reward": 1}), "problem: expected an AlignmentProblem"),
    ("problem oracle", lambda: dg.dual_value(None, []), "problem: expected an AlignmentProblem"),
    ("slacks shape", lambda: dg.feasibility.mixture_margin(np.ones(3)), "slacks: expected shape"),
    ("kkt shapes", lambda: dg.kkt_residual(np.zeros(2), np.zeros(3)), "kkt_residual: lam and"),
    ("margin problem", lambda: dg.feasibility_margin("p.npz"), "problem: expected an Alignment"),
    ("cvxpy problem", lambda: dg.solve_primal_cvxpy([1.0]), "problem: expected an Alignment"),
    # instances and sampling
    ("num_prompts 0", lambda: random_problem(num_prompts=0), "num_prompts: must be an int >= 1"),
    ("num_responses 0", lambda: random_problem(num_responses=0), "num_responses: must be an int"),
    ("num_constraints bool", lambda: random_problem(num_constraints=True), "num_constraints: "),
    ("random beta 0", lambda: random_problem(beta=0.0), "beta: must be a finite number in (0"),
    ("support_fraction", lambda: random_problem(support_fraction=0.0), "support_fraction: "),
    ("correlation", lambda: random_problem(correlation=2.0), "correlation: must be a finite"),
    ("seed negative", lambda: random_problem(seed=-1), "seed: must be an int >= 0"),
    ("num_samples bool", lambda: sample_responses(_P.reference, True), "num_samples: must be"),
]


@pytest.mark.parametrize("label,call,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_one_clear_error(label, call, message):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning on the way to the error
        with pytest.raises(ValueError) as err:
            call()
    text = str(err.value)
    assert message in text, text
    assert "\n" not in text and "allow_pickle" not in text


@pytest.mark.parametrize("offset,rtol", [(1e6, 1e-8), (1e12, 1e-3)])
def test_utility_offsets_cancel_up_to_their_float_resolution(offset, rtol):
    # relative constraints: g + K and E_ref g + K cancel in h = g - c; what remains is the
    # rounding of numbers of size K (eps K ~ 1e-4 for K = 1e12), which moves c by that much
    p = random_problem(5, 5, 7, 3, 0.5)
    g = p.utilities + offset
    base = _solve(p.replace(utilities=g - offset))
    sol = _solve(p.replace(utilities=g))
    _same_lam(sol.lam, base.lam, rtol=rtol)
    assert (sol.slack >= -sol.kkt_tolerance).all()
    assert sol.kkt_tolerance <= 1e-9 * p.score_bound  # the tolerance stays in the units of h

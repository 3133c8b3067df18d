"""The exact solver against cvxpy, closed forms, KKT conditions and the theory's invariances."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dualgap as dg
from dualgap.instances import random_problem
from dualgap.testing import problems


def _active_hessian_well_posed(sol, tol=1e-6):
    active = sol.lam > 1e-8
    if not active.any():
        return True
    H = sol.hessian[np.ix_(active, active)]
    return np.linalg.eigvalsh(H).min() > tol * max(1.0, np.trace(H))


@settings(max_examples=40)
@given(problems(max_constraints=3))
def test_strong_duality_against_cvxpy(p):
    sol = dg.solve(p)
    ref = dg.solve_primal_cvxpy(p)
    assert sol.converged
    # P* = D* (Lemma 2) and both agree with an independent primal solver
    assert abs(sol.dual_value - sol.primal_value) <= 1e-8 * (1 + abs(sol.primal_value))
    assert abs(sol.primal_value - ref.primal_value) <= 1e-6 * (1 + abs(ref.primal_value))
    if _active_hessian_well_posed(sol):  # lam* unique
        np.testing.assert_allclose(
            sol.lam, ref.lam, rtol=1e-4, atol=1e-4 * (1 + sol.lam.max(initial=0))
        )
    np.testing.assert_allclose(sol.policy, ref.policy, atol=1e-4)


@given(problems(max_constraints=4, restrict_support=True))
def test_kkt_conditions(p):
    sol = dg.solve(p)
    h_scale = max(1.0, p.score_bound)
    assert sol.kkt_residual <= 1e-10 * h_scale
    assert (sol.lam >= 0).all()
    assert (sol.slack >= -1e-9 * h_scale).all()  # primal feasibility
    assert abs(sol.lam @ sol.slack) <= 1e-8 * h_scale * (1 + sol.lam.sum())  # complementarity
    np.testing.assert_allclose(sol.slack, dg.dual_gradient(p, sol.lam), atol=1e-12 * h_scale)
    assert (sol.policy[~p.support] == 0).all()


@given(problems(max_constraints=3), st.integers(0, 2**31))
def test_adding_a_prompt_function_to_the_reward_changes_nothing(p, seed):
    f = np.random.default_rng(seed).normal(size=(p.num_prompts, 1)) * 5
    q = p.replace(reward=p.reward + f)
    a, b = dg.solve(p), dg.solve(q)
    np.testing.assert_allclose(a.lam, b.lam, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a.policy, b.policy, atol=1e-8)
    assert abs((b.primal_value - a.primal_value) - p.prompt_weights @ f[:, 0]) < 1e-8 * (
        1 + abs(b.primal_value)
    )


@given(problems(max_constraints=3, relative=True))
def test_relative_equals_absolute_with_shifted_thresholds(p):
    a, b = dg.solve(p), dg.solve(p.as_absolute())
    np.testing.assert_allclose(a.lam, b.lam, rtol=1e-8, atol=1e-10)
    assert a.primal_value == pytest.approx(b.primal_value, rel=1e-12, abs=1e-12)


@given(problems(min_constraints=1, max_constraints=3), st.floats(0.0, 0.04))
def test_tightening_never_raises_p_star(p, eps):
    # problems() have a Slater margin of 0.05 >= eps, so the tightened problem stays feasible
    base = dg.solve(p).primal_value
    tight = dg.perturbation(p, eps)
    assert tight <= base + 1e-10 * (1 + abs(base))
    # and concavity in eps: -lam* is a supergradient of P*(eps) at 0
    lam = dg.solve(p).lam
    assert tight <= base - eps * lam.sum() + 1e-8 * (1 + abs(base))


def test_two_responses_one_constraint_closed_form():
    q, beta = 0.7, 0.3
    r = np.array([[1.0, 0.0]])
    g = np.array([[[0.0, 1.0]]])
    c = 0.6  # absolute: E_pi g = pi(y1) >= 0.6
    p = dg.AlignmentProblem(r, g, [c], beta, np.array([[q, 1 - q]]), relative=False)
    sol = dg.solve(p)
    # unconstrained pi(y1) = sigmoid(logit(1-q) - 1/beta) < 0.6, so the constraint binds:
    # pi(y1) = 0.6 = sigmoid(logit(1-q) + (lam - 1)/beta)  =>  lam = 1 + beta (logit .6 - logit .3)
    logit = lambda z: np.log(z / (1 - z))  # noqa: E731
    lam = 1.0 + beta * (logit(c) - logit(1 - q))
    assert sol.lam[0] == pytest.approx(lam, rel=1e-10)
    assert sol.policy[0, 1] == pytest.approx(c, abs=1e-12)
    kl = c * np.log(c / (1 - q)) + (1 - c) * np.log((1 - c) / q)
    assert sol.primal_value == pytest.approx((1 - c) - beta * kl, rel=1e-10)


def test_unconstrained_closed_form():
    p = random_problem(2, 5, 6, 0, beta=0.7)
    sol = dg.solve(p)
    expected = 0.7 * p.prompt_weights @ np.log((p.reference * np.exp(p.reward / 0.7)).sum(1))
    assert sol.dual_value == pytest.approx(expected, rel=1e-12)
    assert sol.primal_value == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("m", [1, 3, 10])
@pytest.mark.parametrize("beta", [1e-4, 1e-2, 1.0, 1e3])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_robust_across_beta_scale_and_m(m, beta, scale):
    p = random_problem(
        m * 7 + 1, 8, 12, m, beta, scale=scale, support_fraction=0.7, margin=0.05 * scale
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning
        sol = dg.solve(p)
    assert sol.converged and sol.strictly_feasible
    # 1e-10 relative, or the float64 floor ||H|| ulp(lam) where that is larger (beta 1e-4 with
    # scores 1e4: ||H|| ~ 1e11); the floor itself must stay small in the units of h
    assert sol.kkt_residual <= sol.kkt_tolerance <= 1e-6 * max(1.0, p.score_bound)
    # D* - P* = lam*^T slack: small up to the multiplier mass times the KKT tolerance
    gap_tol = 1e-9 * (1 + abs(sol.primal_value)) + sol.lam.sum() * sol.kkt_tolerance
    assert abs(sol.dual_value - sol.primal_value) <= gap_tol


def test_warm_start_and_to_dict():
    p = random_problem(5, 6, 7, 2)
    sol = dg.solve(p)
    again = dg.solve(p, lam0=sol.lam)
    assert again.iterations <= 1
    d = sol.to_dict()
    assert "policy" not in d and isinstance(d["lam"], list)


@given(problems(ill_conditioned=True, max_constraints=4))
def test_ill_conditioned_instances_converge(p):
    with warnings.catch_warnings():
        warnings.simplefilter("error", dg.ConvergenceWarning)
        sol = dg.solve(p)
    assert sol.converged and sol.kkt_residual <= sol.kkt_tolerance
    assert (sol.slack >= -sol.kkt_tolerance).all()
    assert sol.kkt_tolerance <= 1e-6 * max(1.0, p.score_bound)


def test_a_null_direction_of_the_hessian_reaches_the_bound_in_one_step():
    """Found by the ill-conditioned fuzz (session 5): g2 = g1 + 1e-3 noise and beta = 1e-3, so
    pi* is nearly an argmax and hess D is rank one (eigenvalues 1.5e3 and ~1e-13): D is linear
    along (1, -1) in (lam1, lam2).  The Newton step runs along that direction, every step past
    lam2 = 0 was bent by the projection and rejected, and the accepted steps short of it shrank
    lam2 only geometrically: 228 iterations at KKT residual 1.1e-4.  The search now tries the
    breakpoint itself.  Checked against cvxpy's primal."""
    p = dg.AlignmentProblem(
        np.array([[2.4321881354280794, 0.9822884283060862, 1.030435830538638],
                  [0.537060214794574, -0.7359145350114841, -2.4895158775456956]]),
        np.array([[[-0.2231995648680775, 0.4081595890804811, -1.1741839080128393],
                   [0.5355023660415867, -0.3268377740616942, -0.2842020970851118]],
                  [[-0.22533721497477419, 0.4068416193857993, -1.1757983445352262],
                   [0.5369589710644959, -0.3272558257225765, -0.28527345818458183]],
                  [[3.2649286391849586, -1.5217829561953788, -3.9760576098189255],
                   [1.3434365323875455, 1.3426494386669274, -0.0920158050006954]],
                  [[-1.47353185009386, 0.688244725725356, -0.13163273462889555],
                   [-3.4349970707792195, 1.0319565801785298, -0.2589831782987058]]]),
        np.array([-0.1490161431113416, -0.15016169588835726, 0.3553531939094233,
                  0.12866849371373118]),
        0.001,
        np.array([[0.34715737201159574, 0.6528426279884043, 0.0],
                  [0.0, 0.5859142930376078, 0.4140857069623923]]),
        relative=False,
    )
    _converges_to_cvxpy(p, 50)


def _converges_to_cvxpy(p, max_iterations=60):
    with warnings.catch_warnings():
        warnings.simplefilter("error", dg.ConvergenceWarning)
        sol = dg.solve(p)
    assert sol.converged and sol.iterations < max_iterations
    ref = dg.solve_primal_cvxpy(p)
    assert abs(sol.primal_value - ref.primal_value) <= 1e-6 * (1 + abs(ref.primal_value))


def test_a_near_null_direction_does_not_take_the_whole_trust_region():
    """Found by the ill-conditioned fuzz (session 5): one prompt, g2 = g1 + 1e-3 noise, beta =
    70 against scores of 1e3.  hess D has an eigenvalue 3e-13 (the other three 6e-3 to 2), so
    the Newton step is 1e8 along g1 - g2 and 1e4 where the gradient is; scaled down to the trust
    region and bent by the projection at lam1 = 0, it moved the multipliers that mattered by
    ~1e-4 of the radius: 200 iterations at KKT residual 365.  A free multiplier at 0 with a
    negative step is now held there for the step and the others' step recomputed.  Checked
    against cvxpy's primal."""
    p = dg.AlignmentProblem(
        np.array([[-296.37551995698817, 155.5989305420232, 143.12015995591514,
                   371.40433286451923, -1247.7392413863643, 652.9038572383508]]),
        np.array([[[-308.06834773605647, -1461.2226767720013, -385.8907076512464,
                    913.8554329201697, 703.9672449297819, -380.6229133741213]],
                  [[-308.0885576746248, -1461.0630871767169, -386.3849374763434,
                    912.99207103908, 704.4880593306196, -380.9192888940783]],
                  [[-257.8950858470103, 1011.7605468581584, -272.09901631417085,
                    -1332.550701117219, -95.18806451026609, -340.29767006514965]],
                  [[870.1098396645007, 719.5995797479674, -1685.3866843592302,
                    -540.681200198506, 482.2584844314765, 31.371546206841145]]]),
        np.full(4, -37.05286400674178),
        69.76680692844336,
        np.array([[0.09871807498771959, 0.3071229344899427, 0.08832719519998748,
                   0.21381442612203685, 0.13672058470261797, 0.15529678449769552]]),
        relative=True,
    )
    _converges_to_cvxpy(p)


def test_a_held_multiplier_steps_to_its_bound():
    """Found by the ill-conditioned fuzz (session 5): g2 = g1 + 1e-3 noise, beta = 0.013 against
    scores of 80, so that hess D is rank one along (1, 1, .) (1.8e4) and flat along g1 - g2.
    The held lam2 (1.8e-5, gradient 2.5e-5 > 0) stepped by -g_2 / H_22 = -4e-9 per iteration,
    H_22 coming from the shared direction: 225 iterations at KKT residual 2e-3.  A held
    multiplier now steps to 0 (the search checks the descent).  Checked against cvxpy's primal."""
    p = dg.AlignmentProblem(
        np.array([[-34.40707797869456, -39.415544390943886, -42.01895932009319,
                   -48.435953781380796, 46.17967034164946]]),
        np.array([[[5.99699223960117, 64.74739357584727, 70.14900465495808, 45.7066557751112,
                    -55.29237605112744]],
                  [[5.981812245742545, 64.69987854839987, 70.11992672658873, 45.73480167339181,
                    -55.295391664560256]],
                  [[7.654797094658868, 33.59691307842999, 68.59928165943009, 69.84526319197766,
                    -84.42321315811392]]]),
        np.full(3, -3.1135382372499225),
        0.012828109968520393,
        np.array([[0.13131553518031894, 0.1740199191455785, 0.33500232162522026,
                   0.010797449164505347, 0.34886477488437706]]),
        relative=True,
    )
    _converges_to_cvxpy(p)


def test_a_held_multiplier_does_not_stall_the_free_ones():
    """Found by the ill-conditioned fuzz (issue 15): two nearly equal constraints and beta far
    below the score spread, so that hess D nearly vanishes (~1e-84) at the last stage.  The held
    multiplier's raw step -g_i / H_ii (~1e82) used to set the trust-region scaling and shrink the
    free multipliers' steps to ~1e-41: 200 iterations at KKT residual 0.14.  Checked against
    cvxpy's primal."""
    p = dg.AlignmentProblem(
        np.array([[-0.5298324597594923, -13.617453396278032], [13.293753824293963,
                  0.04479185487131207], [0.8048641922066853, -12.203764706299378],
                  [0.7986745772337386, 0.20257115881307472], [1.8158343264199284,
                  -7.573681118863219]]),
        np.array([[[9.044321033911414, -6.199460806650083], [-14.420850333625786,
                    -11.62473297716627], [14.016348173655473, -8.255178743278693],
                   [-17.056956631797178, -4.869711781390458], [-11.309945637370761,
                    2.6533613230849444]],
                  [[9.036802235656182, -6.1966167852395], [-14.410875485157385,
                    -11.634014846661849], [14.011358348330825, -8.246983684615463],
                   [-17.05927642979231, -4.868490397951506], [-11.314562156901278,
                    2.6672369018116044]],
                  [[-0.7225153178798801, -1.3715560438621506], [1.5856003019557021,
                    -9.416965288277401], [3.5868942589614354, 2.7142459710268896],
                   [-3.505728383353751, -2.996276633755109], [-5.839213844265127,
                    4.9955232451141764]]]),
        np.array([-1.371052226318135, -1.3729965129680868, -1.8563939569731314]),
        0.00437144481261109,
        np.array([[0.8626014142819587, 0.13739858571804128], [0.2007652424209935,
                  0.7992347575790065], [0.9548002883965692, 0.04519971160343077],
                  [0.3696588075198563, 0.6303411924801438], [0.4112428291368186,
                  0.5887571708631814]]),
        relative=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", dg.ConvergenceWarning)
        sol = dg.solve(p)
    assert sol.converged and sol.iterations < 50
    ref = dg.solve_primal_cvxpy(p)
    assert abs(sol.primal_value - ref.primal_value) <= 1e-6 * (1 + abs(ref.primal_value))

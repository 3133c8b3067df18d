"""A1, A4, A5, A6 measured and Lemma 4 in both forms (dualgap.assumptions)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dualgap as dg
from dualgap.assumptions import (
    hessian_lipschitz,
    lemma4_paper,
    lemma4_segment,
    perturbed_feasibility,
    segment_curvature,
    strict_feasibility_margin,
    utility_span,
)
from dualgap.instances import random_problem


@pytest.fixture(scope="module")
def counterexample():
    """The issue-9 instance where Lemma 4's paper form fails without A5."""
    from dualgap.gaps import parametrized_dual
    from dualgap.policies import LogLinearPolicy, problem_features

    p = random_problem(4, 2, 6, 1, 0.05, margin=0.05, tightness=0.6816)
    pc = LogLinearPolicy(p, problem_features(p, noise=3, seed=4))
    return p, dg.solve(p).lam, parametrized_dual(p, pc).lam


def test_lemma4_counterexample_pinned(counterexample):
    p, lam, lam_p = counterexample
    assert lam[0] == pytest.approx(0.616, abs=1e-3)
    assert lam_p[0] == pytest.approx(2.345, abs=2e-3)
    curv = segment_curvature(p, lam, lam_p)
    assert curv.mu_star == pytest.approx(11.73, abs=0.01)
    assert curv.grid_min == pytest.approx(0.0034, abs=2e-4)
    assert 0.0 <= curv.certified_lower <= curv.grid_min
    nu = 1.2  # the class's nu is about 1.25: any nu <= 1.25 keeps the paper bound below 1.73
    paper = lemma4_paper(p, lam, lam_p, nu, curvature=curv)
    segment = lemma4_segment(p, lam, lam_p, nu, curvature=curv)
    assert paper.lhs == pytest.approx(1.729, abs=3e-3)
    assert paper.rhs < paper.lhs and not paper.holds and paper.assumption_met is False
    assert segment.holds and segment.assumption_met and segment.rhs > segment.lhs


def test_segment_curvature_brackets_a_dense_grid():
    p = random_problem(2, 4, 5, 2, 0.3)
    a, b = np.array([0.1, 0.4]), np.array([2.0, 0.0])
    c = segment_curvature(p, a, b, points=11, budget=200)
    dense = min(np.linalg.eigvalsh(dg.dual_hessian(p, a + t * (b - a)))[0]
                for t in np.linspace(0, 1, 2001))
    assert c.certified_lower <= dense + 1e-12
    assert c.grid_min >= dense - 1e-6 * (1 + dense)  # the grid errs high, by little here
    assert c.mu_star == pytest.approx(np.linalg.eigvalsh(dg.dual_hessian(p, a))[0])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), beta=st.floats(0.05, 2.0))
def test_hessian_lipschitz_bound(seed, beta):
    """``||hess D(a) - hess D(b)||_op <= L_H ||a - b||`` on random pairs (a proved bound)."""
    p = random_problem(seed, 3, 4, 2, beta)
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0, 3, 2), rng.uniform(0, 3, 2)
    diff = np.linalg.norm(dg.dual_hessian(p, a) - dg.dual_hessian(p, b), 2)
    assert diff <= hessian_lipschitz(p) * np.linalg.norm(a - b) * (1 + 1e-12) + 1e-14


def test_utility_span_detects_a_redundant_constraint():
    p = random_problem(1, 3, 5, 2, 0.5)
    assert utility_span(p).met and utility_span(p).rank == 2
    g = p.utilities.copy()
    g[1] = 2.0 * g[0] + 1.0  # affine copy: spans a line only
    q = p.replace(utilities=g, thresholds=[0.0, 0.0])
    s = utility_span(q)
    assert not s.met and s.rank == 1 and abs(s.min_eig) < 1e-10
    # strict convexity fails with it: hess D is singular everywhere
    assert np.linalg.eigvalsh(dg.dual_hessian(q, [0.3, 0.2]))[0] < 1e-10


def test_a4_and_a6():
    p = random_problem(0, 4, 5, 1, 0.5)
    assert strict_feasibility_margin(p, 0.2, 0.01).met
    assert not strict_feasibility_margin(p, 0.2, 10.0).met
    with pytest.raises(ValueError, match="nu"):
        strict_feasibility_margin(p, 0.2, -1.0)
    t0 = dg.feasibility_margin(p).margin
    a6 = perturbed_feasibility(p, [0.0], [t0 / 2])
    assert a6.margins[0] == pytest.approx(t0) and a6.margins[1] == pytest.approx(t0 / 2)
    assert a6.met
    assert not perturbed_feasibility(p, [0.0], [t0 + 0.1]).met
    with pytest.raises(ValueError, match="eps_b"):
        perturbed_feasibility(p, [0.0], [np.nan])


def test_segment_curvature_is_the_grid_minimum_of_the_hessian_eigenvalue():
    """mu_seg against numpy eigenvalues at points not on its grid: the grid minimum can only be
    above the true minimum (an upper estimate), and a one-point segment is mu*_D there."""
    from dualgap.assumptions import segment_curvature
    from dualgap.dual import dual_hessian
    from dualgap.theory import dual_curvature

    p = random_problem(3, 4, 5, 2, 0.3)
    a, b = np.array([0.1, 0.2]), np.array([2.0, 0.5])
    mu = segment_curvature(p, a, b, points=11, budget=11).grid_min
    ends = [np.linalg.eigvalsh(dual_hessian(p, lam))[0] for lam in (a, b)]
    assert mu <= min(ends) + 1e-15
    fine = min(np.linalg.eigvalsh(dual_hessian(p, (1 - t) * a + t * b))[0]
               for t in np.linspace(0, 1, 101))
    assert fine <= mu + 1e-15  # the coarse grid errs high
    assert segment_curvature(p, a, a).grid_min == pytest.approx(dual_curvature(p, a),
                                                                rel=1e-12)
    with pytest.raises(ValueError, match="points"):
        segment_curvature(p, a, b, points=1)


def test_utility_span_measures_a1():
    """A1: positive for generic utilities, zero when one constraint repeats another (the
    centred utilities then lie on a line), and the weighted covariance matches numpy's."""
    from dualgap import AlignmentProblem
    from dualgap.assumptions import utility_span

    p = random_problem(0, 3, 4, 2, 0.5)
    assert utility_span(p).min_eig > 1e-6
    g = p.utilities.copy()
    g[1] = 2.0 * g[0]
    q = AlignmentProblem(reward=p.reward, utilities=g, thresholds=p.thresholds, beta=p.beta,
                         reference=p.reference, prompt_weights=p.prompt_weights)
    assert abs(utility_span(q).min_eig) < 1e-12 and not utility_span(q).met
    # the reference-weighted covariance of g(x, .), against numpy's weighted np.cov per prompt
    cov = sum(w * np.cov(p.utilities[:, x, :], aweights=p.reference[x], bias=True)
              for x, w in enumerate(p.prompt_weights))
    assert utility_span(p).min_eig == pytest.approx(np.linalg.eigvalsh(cov)[0], rel=1e-10)


def test_segment_feasibility_is_the_exact_margin_at_the_worse_end():
    """A6: the margin over a segment of tightenings equals the LP margin at its worse end, and
    no interior point is worse (concavity), checked against the LP on a grid."""
    from dualgap.assumptions import perturbed_feasibility
    from dualgap.feasibility import feasibility_margin

    p = random_problem(5, 3, 4, 2, 0.5)
    a, b = np.array([0.0, 0.01]), np.array([0.03, -0.02])
    v = min(perturbed_feasibility(p, a, b).margins)
    ends = [feasibility_margin(p.tightened(e)).margin for e in (a, b)]
    assert v == pytest.approx(min(ends), abs=1e-12)
    inner = [feasibility_margin(p.tightened((1 - t) * a + t * b)).margin
             for t in np.linspace(0, 1, 7)]
    assert min(inner) >= v - 1e-9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segment_grid_is_dual_hessians_eigenvalue(seed):
    """The segment's grid (no bisection: budget = points) is lambda_min of dual_hessian at each
    grid point, exactly, on a sparse support with large exponents (beta small): fails if the
    segment's points or the batched Hessians are wrong."""
    from dualgap.dual import dual_hessian

    rng = np.random.default_rng(seed)
    p = random_problem(seed, 6, 9, 3, 0.05, support_fraction=0.6)
    a, b = rng.uniform(0, 2, 3), rng.uniform(0, 2, 3)
    ts = np.linspace(0.0, 1.0, 13)
    want = [np.linalg.eigvalsh(dual_hessian(p, a + t * (b - a)))[0] for t in ts]
    c = segment_curvature(p, a, b, points=13, budget=13)
    assert c.evaluations == 13 and not p.support.all()
    assert c.grid_min == min(want) and c.mu_star == want[0]
    assert c.argmin_t == ts[int(np.argmin(want))]
    for name, bad in (("lam_a", (-a, b)), ("lam_b", (a, b + np.nan))):
        with pytest.raises(ValueError, match=f"^{name}: multipliers must be finite and >= 0"):
            segment_curvature(p, *bad)


def test_segment_bisection_evaluated_ahead_splits_as_one_at_a_time(monkeypatch):
    """The bisection with its midpoints evaluated ahead in batches against one midpoint at a
    time (AHEAD = 1): the same grid minimum, certified bound, argmin and evaluation count
    (fails if the look-ahead changed which interval is split or at which t)."""
    import dualgap.assumptions as asm

    p = random_problem(5, 6, 9, 2, 0.05, support_fraction=0.6)
    a, b = np.array([0.1, 0.3]), np.array([3.0, 0.2])
    ahead = asm.segment_curvature(p, a, b, points=21, budget=400)
    monkeypatch.setattr(asm, "AHEAD", 1)
    single = asm.segment_curvature(p, a, b, points=21, budget=400)
    assert ahead.evaluations > 21  # the bisection ran
    assert ahead.evaluations == single.evaluations
    assert ahead.argmin_t == single.argmin_t
    assert ahead.grid_min == pytest.approx(single.grid_min, rel=1e-13)
    assert ahead.certified_lower == pytest.approx(single.certified_lower, rel=1e-12, abs=1e-15)

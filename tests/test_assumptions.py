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

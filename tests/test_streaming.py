"""Chunked (out-of-memory) problems against the same data solved in memory."""

import tracemalloc
import warnings

import numpy as np
import pytest

import dualgap as dg
from dualgap.errors import UserError
from dualgap.instances import random_problem
from dualgap.streaming import ChunkedProblem, PromptChunk


def _save(p, d, weights=True):
    d.mkdir(exist_ok=True)
    np.save(d / "reward.npy", p.reward)
    np.save(d / "utilities.npy", p.utilities)
    np.save(d / "reference.npy", p.reference)
    if weights:
        np.save(d / "prompt_weights.npy", p.prompt_weights)
    return d


def _same(sol, ref):
    assert sol.converged and sol.kkt_residual <= sol.kkt_tolerance
    np.testing.assert_allclose(sol.lam, ref.lam, rtol=1e-8, atol=1e-10)
    assert sol.dual_value == pytest.approx(ref.dual_value, rel=1e-12, abs=1e-12)
    assert sol.primal_value == pytest.approx(ref.primal_value, rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(sol.slack, ref.slack, atol=1e-10)
    assert sol.strictly_feasible == ref.strictly_feasible


def test_memory_mapped_npy_solves_like_the_in_memory_problem(tmp_path):
    p = random_problem(1, 2000, 500, 1, beta=0.5, support_fraction=0.9, tightness=0.9)
    cp = ChunkedProblem.from_npy(_save(p, tmp_path / "a"), p.thresholds, p.beta,
                                 chunk_prompts=137)
    assert (cp.num_prompts, cp.num_responses, cp.num_constraints) == (2000, 500, 1)
    np.testing.assert_allclose(cp.offsets, p.offsets, rtol=1e-13)
    _same(dg.solve(cp), dg.solve(p))


def test_peak_memory_is_bounded_by_the_chunk_not_the_table(tmp_path):
    """tracemalloc sees numpy buffers, not the mapped files: the solve allocates a few chunks.
    The in-memory solve of the same data allocates more than its input."""
    p = random_problem(2, 4000, 250, 1, beta=0.5, support_fraction=0.9)
    table = p.reward.nbytes + p.utilities.nbytes + p.reference.nbytes  # 24 MB
    cp = ChunkedProblem.from_npy(_save(p, tmp_path / "b", weights=False), p.thresholds, p.beta,
                                 chunk_prompts=100)  # 200 kB per chunk array
    tracemalloc.start()
    sol = dg.solve(cp)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert sol.converged
    assert peak < 0.1 * table, (peak, table)
    tracemalloc.start()
    dg.solve(p.replace())
    _, in_memory = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert in_memory > 0.5 * table  # the comparison is not vacuous


@pytest.mark.parametrize("weighted", [True, False])
def test_chunk_iterator_with_and_without_prompt_weights(weighted):
    rng = np.random.default_rng(0)
    p = random_problem(3, 60, 30, 3, beta=0.4, support_fraction=0.8, tightness=0.9)
    if weighted:
        p = p.replace(prompt_weights=rng.dirichlet(np.ones(60)))
    cuts = [0, 7, 8, 31, 60]

    def chunks():
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            yield PromptChunk(p.reward[a:b], p.utilities[:, a:b], p.reference[a:b],
                              p.prompt_weights[a:b] if weighted else None)

    cp = ChunkedProblem(chunks, p.thresholds, p.beta)
    lam = np.array([0.2, 0.0, 1.5])
    ev, want = cp.dual_oracle(lam), dg.dual_oracle(p, lam)
    assert ev.value == pytest.approx(want.value, rel=1e-13)
    np.testing.assert_allclose(ev.hessian, want.hessian, rtol=1e-12, atol=1e-14)
    _same(dg.solve(cp), dg.solve(p))
    got = np.vstack(list(cp.policies(dg.solve(p).lam)))
    np.testing.assert_allclose(got, dg.solve(p).policy, rtol=1e-12, atol=1e-15)


def test_infeasible_chunked_problem_raises_with_a_certificate():
    p = random_problem(0, 10, 6, 1)
    best = dg.attainable_maxima(p)
    q = p.replace(thresholds=p.thresholds + best + 0.1)

    def chunks():
        yield PromptChunk(q.reward[:4], q.utilities[:, :4], q.reference[:4])
        yield PromptChunk(q.reward[4:], q.utilities[:, 4:], q.reference[4:])

    with pytest.raises(dg.InfeasibleError) as err:
        dg.solve(ChunkedProblem(chunks, q.thresholds, q.beta))
    assert err.value.maxima[0] == pytest.approx(-0.1)


def test_bad_chunks_name_the_chunk_and_the_field(tmp_path):
    p = random_problem(0, 6, 5, 2)

    def make(*chunks):
        return lambda: iter(chunks)

    good = PromptChunk(p.reward[:3], p.utilities[:, :3], p.reference[:3])
    bad_ref = PromptChunk(p.reward[3:], p.utilities[:, 3:], 2 * p.reference[3:])
    with pytest.raises(ValueError, match=r"chunk 1: reference: row x = 0 sums to"):
        ChunkedProblem(make(good, bad_ref), p.thresholds, p.beta)
    narrow = PromptChunk(p.reward[3:, :4], p.utilities[:, 3:, :4],
                         p.reference[3:, :4] / p.reference[3:, :4].sum(1, keepdims=True))
    with pytest.raises(ValueError, match=r"chunk 1: \(Y, m\) = \(4, 2\) differs"):
        ChunkedProblem(make(good, narrow), p.thresholds, p.beta)
    half = PromptChunk(p.reward[:3], p.utilities[:, :3], p.reference[:3], np.full(3, 0.1))
    with pytest.raises(ValueError, match="prompt_weights: sum to 0.3"):
        ChunkedProblem(make(half), p.thresholds, p.beta)
    with pytest.raises(ValueError, match="prompt_weights must be given in every chunk or in none"):
        ChunkedProblem(make(half, good), p.thresholds, p.beta)
    with pytest.raises(ValueError, match="thresholds: shape"):
        ChunkedProblem(make(good), [0.1], p.beta)
    with pytest.raises(UserError, match="reward.npy' does not exist"):
        ChunkedProblem.from_npy(tmp_path, p.thresholds, p.beta)
    with pytest.raises(ValueError, match="backend: chunked problems are streamed by numpy"):
        dg.solve(ChunkedProblem(make(good), p.thresholds, p.beta), backend="torch")
    with pytest.raises(ValueError, match="problem: expected an AlignmentProblem"):
        with warnings.catch_warnings():
            dg.solve({"reward": 1})

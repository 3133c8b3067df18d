"""The exact problem of the synthetic task (dualgap.llm.synthetic.task) against the solver."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")
torch = pytest.importorskip("torch")


from dualgap import solve  # noqa: E402
from dualgap.llm.synthetic.config import SIZES  # noqa: E402
from dualgap.llm.synthetic.task import exact_problem  # noqa: E402

pytestmark = pytest.mark.llm

TINY = SIZES["tiny"]


def test_exact_problem_solution(tiny_task):
    t = tiny_task
    pb, sol = t.problem, t.solution
    assert pb.names == ("safety",) and pb.relative
    assert sol.converged and sol.lam[0] > 0  # the constraint binds: reward and safety in tension
    assert abs(sol.slack[0]) < 1e-8
    again = solve(exact_problem(t.language, t.problem.reference, TINY.beta, TINY.constraints,
                                TINY.thresholds))
    assert again.lam == pytest.approx(sol.lam, abs=1e-10)

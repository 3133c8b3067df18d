"""The whole comparison (dualgap.llm.synthetic.compare), end to end on the tiny size."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")
torch = pytest.importorskip("torch")


from dualgap.llm.synthetic.config import SIZES  # noqa: E402

pytestmark = pytest.mark.llm

TINY = SIZES["tiny"]


@pytest.mark.slow
def test_small_end_to_end_run_has_every_row(tiny_comparison, workdir):
    c = tiny_comparison
    T = TINY.iterations
    assert set(c.traces) == {"caid", "one-shot"}
    rows = c.pipeline_rows()
    assert len(rows) == 2 + 2 * T  # header, exact, T iterates per method
    assert [r[0] for r in rows[2:]] == ["caid"] * T + ["one-shot"] * T
    for tr in c.traces.values():
        assert [it.iteration for it in tr.iterates] == list(range(T))
        assert tr.iterates[-1].slack_estimate is not None  # the final stage measured it
        for it in tr.iterates:
            assert np.isfinite(it.objective) and it.lagrangian_gap >= -1e-12
            assert it.objective <= c.task.solution.primal_value + 1e-9 or it.slack[0] < 0
    # caid moved lam after its first step; one-shot kept it
    lam_c = [it.lam[0] for it in c.traces["caid"].iterates]
    lam_o = [it.lam[0] for it in c.traces["one-shot"].iterates]
    assert lam_c[0] == lam_o[0] and len(set(lam_o)) == 1 and lam_c[1] != lam_c[0]
    # theory: the reference class and the sweep, each with every statement
    assert [k.arch for k in c.classes] == [TINY.arch, *TINY.sweep]
    pb_m = c.task.problem.num_constraints
    for k in c.classes:
        stmts = {r.statement for r in k.rows}
        assert {"Lemma 3 at lam*", "Theorem 2 (upper)", "Lemma 4"} <= stmts
        assert k.nu > 0 and k.dual_p.shape == (k.lams.shape[0],)
        # D_p <= D at every evaluated lam (weak duality of the cuts: never loosened)
        assert (k.dual_p <= k.dual + 1e-9).all()
        # the class's rows are the core report's, and every m gets lam*_p from the bundle
        assert k.rows == k.report.rows and k.lam_p.shape == (pb_m,)
    assert len(c.theory_rows()) == 1 + len(c.classes)
    text = str(c)
    assert "theory per transformer class" in text and "caid" in text
    assert "summary" in text and "comparison.json" in text and "improvement over pi_ref" in text
    saved = json.loads((workdir / "comparison.json").read_text())
    assert saved["exact"]["lam*"] == pytest.approx(c.task.solution.lam.tolist())
    assert all((workdir / f).exists() for f in ("pipeline_vs_exact.png", "gaps_vs_nu.png"))


@pytest.mark.slow
def test_the_sweep_in_a_second_process_gives_the_same_classes(tiny_task, workdir, tmp_path):
    """compare(parallel=True) measures the sweep in a fresh process (the reference reloaded
    from the output directory); its classes equal the same classes measured here."""
    import dataclasses
    import shutil

    from dualgap.llm.synthetic.capacity import measure_class
    from dualgap.llm.synthetic.compare import compare
    from dualgap.llm.synthetic.config import TransformerArch

    small = dataclasses.replace(TINY, sweep=(TransformerArch(2, 1, 1),), distill_steps=10,
                                warm_steps=5, sweep_init_steps=10, refine=0,
                                lam_scales=(1.0,))
    shutil.copytree(workdir / "reference", tmp_path / "reference")  # same reference settings
    c = compare(small, tmp_path, methods=(), figures=False, progress=False, parallel=True)
    assert "capacity sweep (second process)" in c.seconds
    assert not (tmp_path / "sweep_job.pkl").exists()
    task = dataclasses.replace(tiny_task, size=small)
    here = measure_class(task, small.sweep[0], None, False)
    there = c.classes[1]
    assert there.arch == small.sweep[0] and there.report.instance is c.task.problem
    assert there.nu == here.nu and there.dual_p_star == here.dual_p_star
    assert [(r.statement, r.measured, r.holds) for r in there.rows] == \
        [(r.statement, r.measured, r.holds) for r in here.rows]

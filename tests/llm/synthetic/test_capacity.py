"""Tests of dualgap/llm/synthetic/capacity.py: a class's measured theory is read off its core
gap report field by field, written as standard JSON, and ``extra_thetas`` is refused for a
class that is not the reference architecture before any work (the comparison that measures every
class: tests/llm/synthetic/test_compare.py)."""

from __future__ import annotations

import json
import math
import types

import numpy as np
import pytest

from dualgap.dual import dual_value
from dualgap.llm.synthetic.capacity import ClassGaps, measure_class
from dualgap.llm.synthetic.config import SIZES, TransformerArch
from dualgap.report_rows import GapRow

TINY = SIZES["tiny"]


def _gaps(rows):
    return ClassGaps(
        arch=TransformerArch(4, 1, 1), num_params=12, reference_fit=0.5, nu=0.1, nu_1=0.2,
        nu_kl=0.3, per_target={"lam*": 0.1}, lams=np.array([[1.0], [2.0]]),
        dual=np.array([1.0, 1.5]), dual_p=np.array([0.9, math.nan]), lam_p=np.array([1.2]),
        dual_p_star=0.8, dual_p_lower=math.nan, primal_p=-math.inf, margin=-0.1, lam_nu=None,
        mu=np.float64(math.inf), rows=rows)


def test_to_dict_is_standard_json():
    rows = [GapRow("Lemma 3", "D_p", 0.9, bound=1.0, holds=True)]
    data = json.loads(json.dumps(_gaps(rows).to_dict(), allow_nan=False))
    assert data["arch"] == {"width": 4, "depth": 1, "heads": 1}
    assert data["lams"] == [[1.0], [2.0]] and data["lam_nu"] is None and data["report"] is None
    assert (data["dual_p_lower"], data["primal_p"], data["mu"]) == ("nan", "-inf", "inf")
    assert data["dual_p"] == [0.9, "nan"]  # inside arrays too (comparison.json stays JSON)
    assert data["rows"] == [rows[0].to_dict()]


def test_all_hold_counts_only_failed_rows():
    undecided = GapRow("Theorem 1 (upper)", "P*_p", 1.0, kind="undecided: A5 not decided")
    held = GapRow("Lemma 3", "D_p", 0.9, bound=1.0, holds=True)
    failed = GapRow("Lemma 4", "dist", 2.0, bound=1.0, holds=False)
    assert _gaps([held, undecided]).all_hold
    assert not _gaps([held, failed]).all_hold


def test_extra_thetas_only_for_the_reference_architecture():
    task = types.SimpleNamespace(size=TINY, problem=None, language=None)  # never reached
    with pytest.raises(ValueError, match=r"extra_thetas: only for the reference architecture "
                       r"w16-d1, not w2-d1"):
        measure_class(task, TransformerArch(2, 1, 1), extra_thetas=[object()], progress=False)


@pytest.mark.slow
def test_each_field_is_read_off_the_class_report(tiny_comparison):
    pb = tiny_comparison.task.problem
    for k in tiny_comparison.classes:
        q = k.report.quantities
        assert k.nu == q["nu"] and k.nu_1 == q["nu_1"] and k.nu_kl == q["nu_KL"]
        np.testing.assert_array_equal(k.lam_p, q["lam*_p"])
        assert k.dual_p_star == q["D*_p (point estimate)"] and k.mu == q["mu*_D"]
        assert k.dual_p_lower == q["D*_p certified lower bound"] if q["box certified"] else (
            math.isnan(k.dual_p_lower))
        assert list(k.per_target) == [t.label for t in k.report.targets]
        np.testing.assert_array_equal(k.lams, [t.lam for t in k.report.targets])
        np.testing.assert_allclose(k.dual, [dual_value(pb, lam) for lam in k.lams], rtol=1e-12)
        assert k.rows == k.report.rows and k.seconds > 0
    ref, *sweep = tiny_comparison.classes
    assert ref.arch == TINY.arch and ref.reference_fit == 0.0  # the reference class is pi_ref
    assert [k.arch for k in sweep] == list(TINY.sweep)
    assert all(k.reference_fit > 0 and k.num_params < ref.num_params for k in sweep)

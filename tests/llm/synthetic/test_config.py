"""Tests of dualgap/llm/synthetic/config.py: the transformer shapes and the sizes refuse bad
values naming the field, the theory budget a size hands to ``gap_report``, and the lookup of
the built-in sizes (numpy only: nothing here builds a model)."""

from __future__ import annotations

import dataclasses

import pytest

from dualgap.llm.config import METHODS as PIPELINE_METHODS
from dualgap.llm.synthetic.config import (
    METHODS,
    SIZES,
    SyntheticSize,
    TransformerArch,
    get_size,
)
from dualgap.llm.synthetic.language import SCORE_NAMES

TINY = SIZES["tiny"]


@pytest.mark.parametrize("kwargs, message", [
    ({"width": 0}, "width: must be a positive integer, got 0"),
    ({"depth": 1.5}, "depth: must be a positive integer, got 1.5"),
    ({"heads": -2}, "heads: must be a positive integer, got -2"),
    ({"width": 10, "heads": 4}, "heads: width 10 is not divisible by heads 4"),
])
def test_a_bad_shape_names_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TransformerArch(**kwargs)


def test_a_shape_is_a_hashable_label():
    arch = TransformerArch(8, 3, 2)
    assert arch.label() == "w8-d3" and arch == TransformerArch(8, 3, 2)
    assert len({arch, TransformerArch(8, 3, 2), TransformerArch(8, 3, 4)}) == 2


@pytest.mark.parametrize("change, message", [
    ({"constraints": ("helpfulness",), "thresholds": (0.1,)}, "constraints: need utility scorer"),
    ({"constraints": ("speed",), "thresholds": (0.1,)}, "constraints: need utility scorer"),
    ({"constraints": (), "thresholds": ()}, "constraints: need utility scorer"),
    ({"beta": 0.0}, "beta: must be > 0, got 0.0"),
    ({"dual_samples": 0}, "dual_samples: must be a positive integer, got 0"),
    ({"iterations": 2.5}, "iterations: must be a positive integer, got 2.5"),
    ({"warm_steps": -1}, "warm_steps: must be a positive integer, got -1"),
    ({"refine": -1}, "refine: must be an integer >= 0, got -1"),
    ({"lam_scales": ()}, r"lam_scales: need scales >= 0, got \(\)"),
    ({"lam_scales": (1.0, -0.5)}, r"lam_scales: need scales >= 0, got \(1.0, -0.5\)"),
    ({"dual_step": "fast"}, "dual_step: 'auto' or a number, got 'fast'"),
    ({"dpo_labels": "hard"}, r"dpo_labels: must be one of \('sampled', 'soft', 'regress', "
                             r"'distill'\), got 'hard'"),
    ({"dpo_pool": "fresh"}, "dpo_pool: 'fixed', or 'onpolicy' with dpo_labels 'distill', got "
                            "'fresh'"),
    ({"dpo_pool": "onpolicy"}, "dpo_pool: 'fixed', or 'onpolicy' with dpo_labels 'distill'"),
])
def test_a_bad_size_names_the_field(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TINY, **change)


def test_every_utility_scorer_and_several_constraints_are_allowed():
    both = dataclasses.replace(TINY, constraints=("safety", "brevity"), thresholds=(0.1, 0.0),
                               refine=0, dual_step=0.5)
    assert both.constraints == tuple(n for n in SCORE_NAMES if n != "helpfulness")
    assert "safety >= E_ref + 0.1, brevity >= E_ref + 0" in both.describe()


def test_report_options_hand_the_size_budget_to_gap_report():
    size = dataclasses.replace(TINY, lam_scales=(0.25, 1.0, 2.0), refine=3, warm_steps=7,
                               seed=11)
    opts = size.report_options()
    assert opts["grid"] == (0.25, 2.0)  # lam* itself is a target anyway
    assert opts["dual_options"] == {"init_scales": (0.25, 1.0, 2.0), "max_iter": 3,
                                    "polish_steps": 0, "verify": 0}
    assert (opts["fit_steps"], opts["seed"], opts["starts"]) == (7, 11, 1)
    assert opts["fit_at"] == ("lam*", "lam*_p") and opts["cvxpy_check"] is False


def test_sizes_by_name():
    assert get_size("tiny") is TINY and get_size(TINY) is TINY
    assert {"tiny", "default"} <= set(SIZES)
    assert all(name == s.name for name, s in SIZES.items())
    with pytest.raises(ValueError, match=r"size: unknown size 'huge'; known: \['default', "):
        get_size("huge")
    assert set(METHODS) <= set(PIPELINE_METHODS)
    assert all(isinstance(s, SyntheticSize) and s.arch not in s.sweep for s in SIZES.values())


def test_the_default_size_distills_and_tiny_samples():
    # the measured winner on this language (benchmarks/README.md "Policy steps") at its rate
    assert (SIZES["default"].dpo_labels, SIZES["default"].dpo_learning_rate) == ("distill", 3e-3)
    assert (TINY.dpo_labels, TINY.dpo_learning_rate) == ("sampled", 1e-3)
    assert (SIZES["default"].dpo_pool, TINY.dpo_pool) == ("onpolicy", "fixed")

"""Tests of dualgap/llm/judge/cache.py: the judgment key and the append-only cache file."""

from __future__ import annotations

import warnings

import pytest

from dualgap.errors import UserError
from dualgap.llm.judge.cache import JudgmentCache, judgment_key
from dualgap.llm.judge.templates import (
    TEMPLATE_VERSION,
)


def test_cache_key_separates_orders_models_and_versions():
    k = judgment_key(TEMPLATE_VERSION, "m", "safety", "q", "a", "b")
    assert k != judgment_key(TEMPLATE_VERSION, "m", "safety", "q", "b", "a")
    assert k != judgment_key(TEMPLATE_VERSION, "m2", "safety", "q", "a", "b")
    assert k != judgment_key("v0", "m", "safety", "q", "a", "b")
    assert k != judgment_key(TEMPLATE_VERSION, "m", "helpfulness", "q", "a", "b")


def test_cache_survives_a_torn_last_line_and_rejects_damage(tmp_path):
    path = tmp_path / "cache.jsonl"
    c = JudgmentCache(path)
    c.add({"key": "k1", "scores": [1, 2]})
    c.add({"key": "k2", "scores": [3, 4]})
    with open(path, "a") as f:
        f.write('{"key": "k3", "sco')  # a kill during the write
    with pytest.warns(UserWarning, match="torn last line"):
        c2 = JudgmentCache(path)
    assert sorted(c2.records) == ["k1", "k2"]
    c2.add({"key": "k3", "scores": [5, 6]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sorted(JudgmentCache(path).records) == ["k1", "k2", "k3"]
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with pytest.raises(UserError, match="line 2 .* is damaged"):
        JudgmentCache(path)

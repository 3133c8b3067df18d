"""Tests of dualgap/llm/hub_cache.py: inside :func:`private_hub_cache` the real Hugging Face
loaders read the snapshots and dataset caches it writes, offline; outside it (also after an
error) the user's environment and cache are back."""

from __future__ import annotations

import json
import os
import re

import pytest

from dualgap.llm.hub_cache import (
    fake_commit,
    private_hub_cache,
    write_dataset_cache,
    write_model_snapshot,
)


def test_the_private_cache_is_left_behind(pku_standins):
    """Outside the block, the stand-ins are gone and the user's cache is back."""
    from huggingface_hub import constants

    from dualgap.llm.resolve import resolve_model_config

    home, cfg = pku_standins
    before = constants.HF_HUB_CACHE
    with private_hub_cache(home):
        assert resolve_model_config("policy.model", cfg.policy.model)["architectures"]
    assert constants.HF_HUB_CACHE == before
    with pytest.raises(ValueError, match="policy.model: .* not in the local Hugging Face cache"):
        resolve_model_config("policy.model", cfg.policy.model)


def test_fake_commits_are_stable_hex_digests_and_keep_real_hashes():
    real = "0123456789abcdef0123456789abcdef01234567"
    assert fake_commit("org/m", real) == real
    a = fake_commit("org/m", "v1")
    assert re.fullmatch(r"[0-9a-f]{40}", a) and a == fake_commit("org/m", "v1")
    assert len({a, fake_commit("org/m", "v2"), fake_commit("org/n", "v1")}) == 3
    assert fake_commit("org/m", None) == fake_commit("org/m", "main")


def test_a_written_snapshot_is_read_by_the_hub_library_offline(tmp_path):
    from huggingface_hub import snapshot_download

    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "llama"}))
    home = tmp_path / "hf"
    with private_hub_cache(home):
        snap = write_model_snapshot(home / "hub", "acme/m", src, revision="v2")
        assert snap.name == fake_commit("acme/m", "v2")
        assert (home / "hub" / "models--acme--m" / "refs" / "v2").read_text() == snap.name
        for revision in ("v2", "main", None):
            got = snapshot_download("acme/m", revision=revision)
            assert json.loads(open(f"{got}/config.json").read()) == {"model_type": "llama"}
        with pytest.raises(Exception, match="(?i)offline|cache|local"):
            snapshot_download("acme/other")  # nothing else is there, and nothing is downloaded


def test_a_written_dataset_is_read_by_load_dataset_offline(tmp_path):
    import datasets

    rows = {"train": [{"prompt": "a", "label": True}, {"prompt": "b", "label": False}],
            "test": [{"prompt": "c", "label": True}]}
    home = tmp_path / "hf"
    with private_hub_cache(home):
        target = write_dataset_cache(home / "datasets", "Acme/Some-Data", "v1", rows,
                                     tmp_path / "work")
        assert target.is_relative_to(home / "datasets" / "Acme___some-data" / "v1")
        train = datasets.load_dataset("Acme/Some-Data", "v1", split="train")
        test = datasets.load_dataset("Acme/Some-Data", "v1", split="test")
    assert train.to_list() == rows["train"] and test.to_list() == rows["test"]
    assert train.features["label"].dtype == "bool"
    assert not (tmp_path / "work" / "build").exists()


def test_the_environment_is_restored_even_after_an_error(tmp_path, monkeypatch):
    import datasets.config
    import huggingface_hub.constants as hub

    monkeypatch.setenv("HF_HOME", "/somewhere/else")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    before = (hub.HF_HUB_CACHE, hub.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_CACHE)
    with pytest.raises(RuntimeError, match="inside"), private_hub_cache(tmp_path / "hf") as home:
        assert os.environ["HF_HOME"] == str(home) and os.environ["TRANSFORMERS_OFFLINE"] == "1"
        assert hub.HF_HUB_CACHE == str(home / "hub") and hub.HF_HUB_OFFLINE is True
        assert datasets.config.HF_DATASETS_CACHE == home / "datasets"
        raise RuntimeError("inside")
    assert os.environ["HF_HOME"] == "/somewhere/else" and "TRANSFORMERS_OFFLINE" not in os.environ
    assert (hub.HF_HUB_CACHE, hub.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_CACHE) == before

"""Fixtures of the LLM tests: tiny tokenizers and models built locally from configs, and one
tiny CAID run shared by the end-to-end tests (nothing is downloaded)."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: the model sizes the tests build (a config, as the tiny run's builder uses)
TINY_MODEL = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64}


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/llm" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.llm)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from dualgap.llm.tiny import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama_config(tiny_tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tiny_tokenizer), hidden_size=TINY_MODEL["hidden_size"],
        intermediate_size=TINY_MODEL["intermediate_size"],
        num_hidden_layers=TINY_MODEL["num_layers"], num_attention_heads=TINY_MODEL["num_heads"],
        num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=tiny_tokenizer.pad_token_id, eos_token_id=tiny_tokenizer.eos_token_id,
        bos_token_id=tiny_tokenizer.bos_token_id)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The shipped ``tiny`` config, run uninterrupted once (2 CAID iterations)."""
    from dualgap.llm.run import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    return train("tiny", out, progress=False)


@pytest.fixture(scope="session")
def pku_standins(tmp_path_factory):
    """Stand-ins of every repo of the shipped ``pku_saferlhf_30k`` config in a private Hugging
    Face cache: ``(home, config)``; enter it with ``dualgap.llm.hub_cache.private_hub_cache``."""
    from dualgap.llm.config import load_config
    from dualgap.llm.hub_cache import private_hub_cache
    from dualgap.llm.standins import build_standins

    cfg = load_config("pku_saferlhf_30k")
    home = tmp_path_factory.mktemp("pku-hf-cache")
    with private_hub_cache(home):
        build_standins(cfg, home)
    return home, cfg

"""One-line hub, IO and datasets errors naming the config key, the value and the cause."""

from __future__ import annotations

import pytest

from dualgap.errors import UserError
from dualgap.llm.resolve import (
    check_location,
    explain,
    hub_errors,
    is_local_path,
    resolve_dataset,
    resolve_model_config,
    resolve_tokenizer,
)


@pytest.mark.parametrize(("value", "local"), [
    ("PKU-Alignment/alpaca-7b-reproduced", False), ("gpt2", False), ("./sft", True),
    ("/abs/sft", True), ("~/sft", True), ("runs/sft/final", True), ("..", True)])
def test_local_paths_and_hub_ids(value, local):
    assert is_local_path(value) is local


def test_a_missing_local_folder_is_not_called_a_malformed_hub_id():
    for value in ("runs/sft/final", "./nothing"):
        with pytest.raises(UserError, match=rf"policy.model: '{value}' is not a local folder") \
                as info:
            resolve_model_config("policy.model", value)
        assert "hub id" not in str(info.value)


def test_a_malformed_hub_id_is_named():
    with pytest.raises(UserError, match="reward.path: 'bad id' is neither a local folder nor a "
                       "well-formed hub id"):
        check_location("reward.path", "bad id")


def test_a_local_folder_without_config_json(tmp_path):
    with pytest.raises(UserError, match="has no config.json"):
        resolve_model_config("policy.model", str(tmp_path))


def test_offline_and_not_cached_is_one_line_with_the_cause(tmp_path):
    from dualgap.llm.hub_cache import private_hub_cache

    with private_hub_cache(tmp_path):  # an empty cache, offline
        with pytest.raises(UserError) as info:
            resolve_tokenizer("policy.tokenizer", "acme/none", "v2")
        msg = str(info.value)
        assert msg.startswith("policy.tokenizer: 'acme/none' (revision 'v2') is not in the local "
                              "Hugging Face cache")
        assert "offline (HF_HUB_OFFLINE=1)" in msg and "\n" not in msg
        with pytest.raises(UserError, match="data.source: 'acme/data' .* datasets cache and the "
                           "hub is offline"):
            resolve_dataset("data.source", "acme/data", None, None, {})


def test_dataset_config_and_split_errors_name_their_keys(pku_standins):
    from dualgap.llm.hub_cache import private_hub_cache

    home, cfg = pku_standins
    with private_hub_cache(home):
        with pytest.raises(UserError, match="data.source: config 'alpaca-7b' of "
                           "'PKU-Alignment/PKU-SafeRLHF-30K' is not in the local datasets cache"):
            resolve_dataset("data.source", cfg.data.source, "alpaca-7b", None, {})
        with pytest.raises(UserError, match="data.test_split: no split 'validation'"):
            resolve_dataset("data.source", cfg.data.source, None, None,
                            {"data.test_split": "validation"})
        info = resolve_dataset("data.source", cfg.data.source, None, None,
                               {"data.train_split": "train"})
    assert "safer_response_id" in info["features"] and info["splits"]["train"] > 0


def _http_error(cls, message):
    import httpx

    response = httpx.Response(404, request=httpx.Request("GET", "https://huggingface.co/x"))
    return cls(message, response=response)


def test_hub_error_types_get_their_cause(monkeypatch):
    """The hub's own exception types (as huggingface_hub raises them online)."""
    from huggingface_hub import constants
    from huggingface_hub import errors as hub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    e = explain(_http_error(hub.RevisionNotFoundError, "404 rev"), "reward.path", "acme/rm", "v9")
    assert str(e) == ("reward.path: no revision 'v9' of 'acme/rm' on the hub (a branch, tag or "
                      "commit hash)")
    e = explain(_http_error(hub.GatedRepoError, "403"), "policy.model", "meta-llama/Llama-2-7b-hf")
    assert "gated repo" in str(e) and "hf auth login" in str(e)
    e = explain(_http_error(hub.RepositoryNotFoundError, "404"), "policy.model", "acme/typo")
    assert str(e).startswith("policy.model: no repo 'acme/typo' on the hub")
    wrapped = OSError("We couldn't connect to 'https://huggingface.co' to load the files")
    wrapped.__cause__ = hub.LocalEntryNotFoundError("no network")
    assert "the hub is unreachable" in str(explain(wrapped, "policy.model", "acme/x"))


def test_hub_errors_passes_user_errors_through_and_chains_the_cause():
    with pytest.raises(UserError, match="^k: first$"):
        with hub_errors("other", "v"):
            raise UserError("k: first")
    with pytest.raises(UserError) as info:
        with hub_errors("policy.model", "acme/x"):
            raise OSError("disk on fire")
    assert str(info.value) == "policy.model: cannot load 'acme/x': disk on fire"
    assert isinstance(info.value.__cause__, OSError)  # the traceback stays one --debug away


def test_the_data_loader_reports_a_dataset_failure_in_one_line(tmp_path):
    """``dualgap.llm.data.load_split`` goes through the same translation (a hub id that is not
    cached, offline)."""
    from dualgap.llm.data import load_split
    from dualgap.llm.hub_cache import private_hub_cache

    with private_hub_cache(tmp_path), pytest.warns(UserWarning, match="moving ref"):
        with pytest.raises(UserError, match="^data.source: 'acme/pairs' .* datasets cache and "
                           "the hub is offline"):
            load_split("acme/pairs", "train")

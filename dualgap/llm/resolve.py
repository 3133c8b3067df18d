"""Hub, IO and ``datasets`` failures as one line naming the config key, the value and the cause.

Every loader of a model, tokenizer, scorer or dataset and the preflight
(:mod:`dualgap.llm.preflight`) resolve through this module, so a user sees, instead of a
50-100 line traceback::

    policy.model: 'runs/sft/final' is not a local folder (no such directory)
    policy.model: 'PKU-Alignment/alpaca-7b-reproduced' is not in the local Hugging Face cache
        (~/.cache/huggingface/hub) and the hub is offline (HF_HUB_OFFLINE=1) ...
    reward.path: no revision 'v2' of 'PKU-Alignment/beaver-7b-v1.0-reward' on the hub

Each failure is a :class:`dualgap.errors.UserError` raised ``from`` the original exception (the
traceback is one ``dualgap --debug`` away).  A value is a *local path* (:func:`is_local_path`)
when it exists, starts with ``/``, ``.`` or ``~``, or has more than one ``/``; a local path that
does not exist is reported as such, never as a malformed hub id.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import UserError, one_line

__all__ = ["is_local_path", "explain", "hub_errors", "guarded", "check_location",
           "resolve_model_config", "resolve_tokenizer", "resolve_dataset", "cached_weights",
           "hub_offline"]

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json", "adapter_model.safetensors",
                 "adapter_model.bin")


def is_local_path(value: str) -> bool:
    """Whether ``value`` names a local file or folder rather than a hub id ``ORG/NAME``."""
    v = str(value)
    return (os.path.exists(os.path.expanduser(v)) or v.startswith(("/", ".", "~"))
            or v.count("/") > 1 or "\\" in v)


def hub_offline() -> bool:
    """Whether the hub is switched off (``HF_HUB_OFFLINE``), as ``huggingface_hub`` sees it."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    x: BaseException | None = exc
    while x is not None and x not in out:
        out.append(x)
        x = x.__cause__ or x.__context__
    return out


def explain(exc: BaseException, key: str, value: str, revision: str | None = None,
            what: str = "repo") -> UserError:
    """The one-line :class:`UserError` of a failure to load ``value`` (config key ``key``)."""
    from huggingface_hub import errors as hub

    at = f"{value!r}" + (f" (revision {revision!r})" if revision else "")
    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}
    text = " ".join(one_line(e) for e in chain)
    if is_local_path(value) and not os.path.exists(os.path.expanduser(value)):
        return UserError(f"{key}: {value!r} is not a local folder (no such file or directory)")
    if any(isinstance(e, hub.RevisionNotFoundError) for e in chain) or "invalid git ident" in text:
        return UserError(f"{key}: no revision {revision!r} of {value!r} on the hub (a branch, "
                         "tag or commit hash)")
    if any(isinstance(e, hub.GatedRepoError) for e in chain):
        return UserError(f"{key}: {at} is a gated repo: accept its terms on the hub and log in "
                         "(`hf auth login`)")
    offline = hub_offline() or any(isinstance(e, hub.OfflineModeIsEnabled) for e in chain) or (
        "OfflineModeIsEnabled" in text)
    not_cached = (any(isinstance(e, hub.LocalEntryNotFoundError) for e in chain)
                  or "is not cached" in text or "couldn't connect" in text.lower()
                  or "Couldn't reach" in text or isinstance(exc, ConnectionError))
    if offline and (not_cached or any(isinstance(e, hub.HfHubHTTPError) for e in chain)):
        where = "Hugging Face datasets cache" if what == "dataset" else (
            f"Hugging Face cache ({_hub_cache()})")
        return UserError(f"{key}: {at} is not in the local {where} and the hub is offline "
                         "(HF_HUB_OFFLINE=1): download it first, or unset HF_HUB_OFFLINE")
    if not_cached:
        return UserError(f"{key}: {at} could not be fetched: the hub is unreachable (network?) "
                         "and it is not in the local cache")
    if any(isinstance(e, hub.HFValidationError) for e in chain):
        return UserError(f"{key}: {value!r} is neither a local folder nor a well-formed hub id "
                         "('ORG/NAME')")
    if any(isinstance(e, hub.RepositoryNotFoundError) for e in chain) or (
            "DatasetNotFoundError" in names):
        return UserError(f"{key}: no {what} {value!r} on the hub (or it is private: log in "
                         "with `hf auth login`)")
    if any(isinstance(e, hub.EntryNotFoundError) for e in chain):
        return UserError(f"{key}: {at} lacks a file the loader needs ({one_line(exc)})")
    m = re.search(r"Couldn't find cache for (\S+) for config '([^']+)'(.*)", text)
    if m:
        return UserError(f"{key}: config {m.group(2)!r} of {value!r} is not in the local "
                         f"datasets cache{m.group(3).rstrip('.')}")
    return UserError(f"{key}: cannot load {at}: {one_line(exc)}")


@contextmanager
def hub_errors(key: str, value: str, revision: str | None = None,
               what: str = "repo") -> Iterator[None]:
    """Turn any hub, IO or ``datasets`` failure inside the block into :func:`explain`'s line
    (``UserError``s pass through unchanged)."""
    try:
        yield
    except UserError:
        raise
    except (OSError, ValueError, ImportError, RuntimeError) as exc:
        raise explain(exc, key, value, revision, what) from exc


def guarded(key: str, value: str, revision: str | None, fn, /, *args: Any, what: str = "repo",
            **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` inside :func:`hub_errors` (one line at a loader's call site;
    the first four arguments are positional, so ``fn`` may take a ``revision`` keyword)."""
    with hub_errors(key, value, revision, what):
        return fn(*args, **kwargs)


def check_location(key: str, value: str) -> str:
    """``"local"`` or ``"hub"`` for ``value``; a missing local path or a malformed hub id is a
    :class:`UserError` naming ``key``."""
    from huggingface_hub.utils import validate_repo_id

    if is_local_path(value):
        if not os.path.exists(os.path.expanduser(value)):
            raise UserError(f"{key}: {value!r} is not a local folder (no such file or "
                            "directory)")
        return "local"
    try:
        validate_repo_id(value)
    except Exception as exc:  # HFValidationError
        raise UserError(f"{key}: {value!r} is neither a local folder nor a well-formed hub id "
                        "('ORG/NAME')") from exc
    return "hub"


def resolve_model_config(key: str, value: str, revision: str | None = None) -> dict:
    """The raw ``config.json`` of a local model folder or hub repo (nothing else downloaded)."""
    import json

    from huggingface_hub import hf_hub_download

    if check_location(key, value) == "local":
        path = Path(os.path.expanduser(value)) / "config.json"
        if not path.is_file():
            raise UserError(f"{key}: {value!r} has no config.json (not a transformers model "
                            "folder)")
    else:
        with hub_errors(key, value, revision):
            path = Path(hf_hub_download(value, "config.json", revision=revision))
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{key}: {str(path)!r} is not readable JSON ({one_line(exc)})") from exc


def cached_weights(value: str, revision: str | None = None) -> bool:
    """Whether a weights file of ``value`` is on disk (a local folder, or the hub cache)."""
    if is_local_path(value):
        return any((Path(os.path.expanduser(value)) / f).exists() for f in _WEIGHT_FILES)
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(value, f, revision=revision), str)
               for f in _WEIGHT_FILES)


def resolve_tokenizer(key: str, value: str, revision: str | None = None) -> Any:
    """The tokenizer of a local folder or hub repo (its small files only)."""
    from transformers import AutoTokenizer

    check_location(key, value)
    with hub_errors(key, value, revision):
        return AutoTokenizer.from_pretrained(os.path.expanduser(value) if is_local_path(value)
                                             else value, revision=revision)


def resolve_dataset(key: str, source: str, name: str | None, revision: str | None,
                    splits: dict[str, str]) -> dict[str, Any]:
    """Features and split sizes of a hub dataset from its builder info (no rows read):
    ``{"features": {column: type}, "splits": {split: rows or None}}``.  ``splits`` maps config
    keys to split names; each must exist where the info lists splits."""
    import datasets

    check_location(key, source)
    with hub_errors(key, source, revision, what="dataset"):
        builder = datasets.load_dataset_builder(source, name, revision=revision)
    info = builder.info
    known = dict(info.splits.items()) if info.splits else {}
    for split_key, split in splits.items():
        if known and split not in known:
            raise UserError(f"{split_key}: no split {split!r} in {source!r} (splits: "
                            f"{sorted(known)})")
    features = {k: str(v) for k, v in (info.features or {}).items()}
    return {"features": features, "splits": {
        s: (known[s].num_examples if s in known else None) for s in splits.values()}}

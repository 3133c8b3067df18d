"""A private Hugging Face cache: its environment, model snapshots and prepared dataset caches.

The rehearsal writes tiny stand-ins into such a cache so that the real loading code
(``AutoModel*.from_pretrained("ORG/NAME")``, ``huggingface_hub.snapshot_download``,
``datasets.load_dataset("ORG/NAME", name, split=...)``) runs unchanged and offline:

* a model repo is a hub-cache snapshot ``<HF_HUB_CACHE>/models--ORG--NAME/snapshots/<commit>/``
  with ``refs/<revision>`` holding the commit (the layout ``huggingface_hub`` reads offline);
* a dataset is a prepared Arrow cache ``<HF_DATASETS_CACHE>/ORG___<snake_name>/<config>/0.0.0/
  <hash>/`` built by the real ``json`` builder of ``datasets`` from local rows, the layout that
  ``datasets`` falls back to when the hub is offline (its ``cache`` module).

:func:`private_hub_cache` sets ``HF_HOME``/``HF_HUB_CACHE``/``HF_DATASETS_CACHE`` and the offline
switches for the duration of a block, also in the already imported ``huggingface_hub`` and
``datasets`` modules (which read them at import time), and restores everything afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["private_hub_cache", "write_model_snapshot", "write_dataset_cache", "fake_commit"]

_ENV_KEYS = ("HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "HF_HUB_OFFLINE",
             "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def _patches(home: Path) -> list[tuple[str, str, object]]:
    """``(module, attribute, value)`` of the constants the HF libraries read at import time."""
    hub, ds = str(home / "hub"), home / "datasets"
    return [
        ("huggingface_hub.constants", "HF_HOME", str(home)),
        ("huggingface_hub.constants", "HF_HUB_CACHE", hub),
        ("huggingface_hub.constants", "HF_HUB_OFFLINE", True),
        ("datasets.config", "HF_CACHE_HOME", str(home)),
        ("datasets.config", "HF_DATASETS_CACHE", ds),
        ("datasets.config", "DOWNLOADED_DATASETS_PATH", ds / "downloads"),
        ("datasets.config", "EXTRACTED_DATASETS_PATH", ds / "downloads" / "extracted"),
        ("datasets.config", "HF_HUB_OFFLINE", True),
        ("datasets.config", "HF_DATASETS_OFFLINE", True),
    ]


@contextmanager
def private_hub_cache(home: str | Path) -> Iterator[Path]:
    """Point every Hugging Face library at the cache under ``home`` (offline) inside the block.

    ``home/hub`` is the model cache, ``home/datasets`` the datasets cache.
    """
    import importlib

    home = Path(home).resolve()
    (home / "hub").mkdir(parents=True, exist_ok=True)
    (home / "datasets").mkdir(parents=True, exist_ok=True)
    patches = _patches(home)
    for module in dict.fromkeys(m for m, _, _ in patches):  # import before the env changes:
        importlib.import_module(module)                      # they read it at import time
    saved_env = {k: os.environ.get(k) for k in _ENV_KEYS}
    os.environ.update({"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"),
                       "HF_DATASETS_CACHE": str(home / "datasets"), "HF_HUB_OFFLINE": "1",
                       "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    saved: list[tuple[object, str, object]] = []
    try:
        for module, attr, value in patches:
            mod = sys.modules[module]
            saved.append((mod, attr, getattr(mod, attr)))
            setattr(mod, attr, value)
        yield home
    finally:
        for mod, attr, value in reversed(saved):
            setattr(mod, attr, value)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def fake_commit(repo: str, revision: str | None) -> str:
    """The commit hash of a stand-in: ``revision`` itself when it is a commit hash, else a
    stable 40-hex digest of ``(repo, revision)``."""
    if revision is not None and re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    return hashlib.sha1(f"dualgap-standin:{repo}@{revision or 'main'}".encode()).hexdigest()


def write_model_snapshot(hub_cache: str | Path, repo: str, source: str | Path,
                         revision: str | None = None) -> Path:
    """Copy the files of ``source`` into the hub-cache snapshot of model repo ``repo`` at
    ``revision`` (``None``: ``main``) and return the snapshot directory."""
    repo_dir = Path(hub_cache) / ("models--" + repo.replace("/", "--"))
    commit = fake_commit(repo, revision)
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    for f in Path(source).iterdir():
        if f.is_file():
            shutil.copy2(f, snap / f.name)
    (repo_dir / "refs").mkdir(exist_ok=True)
    refs = {"main"} | ({revision} if revision and revision != commit else set())
    for ref in refs:
        (repo_dir / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / ref).write_text(commit)
    return snap


def write_dataset_cache(datasets_cache: str | Path, repo: str, config_name: str | None,
                        splits: dict[str, list[dict]], work: str | Path) -> Path:
    """Prepare dataset ``repo`` (config ``config_name``, default ``default``) with the given rows
    per split into ``datasets_cache``, in the layout ``load_dataset(repo, config_name)`` reads
    offline.  The rows go through the real ``json`` builder; ``work`` holds the JSONL files."""
    from datasets.naming import camelcase_to_snakecase
    from datasets.packaged_modules.json.json import Json

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, rows in splits.items():
        path = work / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        files[split] = str(path)
    name = repo.split("/")[-1]
    config = config_name or "default"
    builder = Json(cache_dir=str(work / "build"), dataset_name=name, config_name=config,
                   data_files=files, hash="0" * 16)
    builder.download_and_prepare()
    namespace = repo.split("/")[0] if "/" in repo else None
    base = camelcase_to_snakecase(name) if namespace is None else (
        f"{namespace}___{camelcase_to_snakecase(name)}")
    target = Path(datasets_cache) / base / config / "0.0.0" / ("0" * 16)
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(builder.cache_dir, target)
    info = json.loads((target / "dataset_info.json").read_text())
    if info.get("config_name") != config:  # the offline loader matches the folder name to it
        raise RuntimeError(f"datasets wrote config {info.get('config_name')!r}, not {config!r}")
    shutil.rmtree(work / "build", ignore_errors=True)
    return target

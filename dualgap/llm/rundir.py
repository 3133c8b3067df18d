"""A run directory: its :class:`Run` (files, models, scorers, sampling), read strictly, checked.

A run directory (see :mod:`dualgap.llm.run`) is written by one process in a fixed order: a
stage's records and arrays first, then ``state.json`` marks it finished.  So after a kill,

* a record of a stage that ``state.json`` does not list, and a cut last line of a JSONL file,
  are leftovers of the interrupted stage (resume drops them);
* anything else that cannot be read, or a finished stage whose outputs are missing, is damage:
  :func:`check_run_directory` raises :class:`dualgap.errors.UserError` with one line that names
  the file and what is wrong.

``resume`` continues with the config the run started with (``resolved_config.json``, written
once at the start).  Only the keys of :data:`SAFE_TO_CHANGE` may differ (logging, batch sizes,
evaluation), and keys added to dualgap since, at their defaults; any other difference is refused
with the keys named: a threshold, step size or model changed mid-run would mix two experiments.
"""

from __future__ import annotations

import fnmatch
import json
import re
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .config import RunConfig, apply_overrides, config_from_dict, config_to_dict, load_config
from .resolve import hub_errors

__all__ = ["Run", "SAFE_TO_CHANGE", "RESOLVED", "STAGE_PATTERN", "load_run_config",
           "write_run_config", "read_jsonl", "read_jsonl_for_resume", "atomic_write", "to_list",
           "read_state", "flatten", "changed_keys", "unsafe_changes", "check_run_directory",
           "load_npz"]

#: Keys that ``resume`` accepts changed (``resume --set KEY=VALUE`` or an edit of config.yaml):
#: logging, the scorers' batch sizes (memory only: scores are cached per text) and the
#: evaluation settings.  Glob patterns over dotted keys.
SAFE_TO_CHANGE = ("train.logging_steps", "train.report_to", "train.report_to.*",
                  "reward.batch_size", "constraints.*.scorer.batch_size", "evaluation.*")

#: the config the run started with, written once (config.yaml is compared with it)
RESOLVED = "resolved_config.json"

#: every random choice of a run is seeded from ``(seed, stage tag, ...)``
_STAGE_SEEDS = {"reference": 1, "dual": 2, "labels": 3, "dpo": 4, "final": 5, "prompts": 6,
                "eval": 7, "prealign": 8}

#: The stage names ``state.json`` may list.
STAGE_PATTERN = re.compile(r"setup|prealign|pool|reference|final|complete|(dual|policy)_(\d+)")


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def to_list(x: Any) -> Any:
    """numpy arrays and scalars (nested in dicts and lists) as plain Python values."""
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, dict):
        return {k: to_list(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_list(v) for v in x]
    return x


def _parse_lines(path: Path, tolerate_cut_tail: bool) -> tuple[list[dict], bool]:
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not a text file ({exc.reason})") from None
    lines = text.split("\n")
    records, cut = [], False
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            last = all(not rest.strip() for rest in lines[i + 1:])
            if tolerate_cut_tail and last and not text.endswith("\n"):
                cut = True  # a line cut by a kill in the middle of an append
                break
            raise UserError(f"{path}: line {i + 1} is not valid JSON ({exc.msg}); the file is "
                            "damaged") from None
        if not isinstance(rec, dict) or "stage" not in rec:
            raise UserError(f"{path}: line {i + 1} is not a stage record (no 'stage' key)")
        records.append(rec)
    return records, cut


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a run's JSONL file (``[]`` if it does not exist); a line that is not a JSON
    stage record is a :class:`UserError` naming the file and the line."""
    path = Path(path)
    if not path.exists():
        return []
    return _parse_lines(path, tolerate_cut_tail=False)[0]


def read_jsonl_for_resume(path: Path) -> tuple[list[dict], bool]:
    """``(records, cut)``: as :func:`read_jsonl`; a last line cut by a kill is dropped, ``cut``."""
    if not path.exists():
        return [], False
    return _parse_lines(path, tolerate_cut_tail=True)


def read_state(path: Path, iterations: int | None = None) -> dict:
    """``state.json``, checked: a JSON object whose ``completed`` lists known stage names
    (``dual_t``/``policy_t`` with ``t < iterations`` when given)."""
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); the run "
                        "directory is damaged") from None
    if not isinstance(state, dict) or not isinstance(state.get("completed"), list):
        raise UserError(f"{path}: expected an object with a 'completed' list of stage names")
    for stage in state["completed"]:
        m = STAGE_PATTERN.fullmatch(stage) if isinstance(stage, str) else None
        if m is None:
            raise UserError(f"{path}: unknown stage {stage!r} in 'completed' (known: setup, "
                            "prealign, pool, reference, dual_T, policy_T, final, complete)")
        if m.group(2) is not None and iterations is not None and int(m.group(2)) >= iterations:
            raise UserError(f"{path}: stage {stage!r} is past the config's {iterations} "
                            "iterations")
    return state


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted leaf keys of nested dicts and lists (``constraints.0.threshold``)."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(data, list) and data:
        out = {}
        for i, v in enumerate(data):
            out.update(flatten(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: data}


def _same(a: Any, b: Any) -> bool:
    """Equal values, where ``true`` and ``1`` differ (``1`` and ``1.0`` do not)."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def changed_keys(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old, new)}`` for every leaf that differs (missing leaves are ``None``)."""
    a, b = flatten(old), flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if not (k in a and k in b and _same(a[k], b[k]))}


def unsafe_changes(changes: dict[str, tuple[Any, Any]]) -> list[str]:
    """The changed keys that are not in :data:`SAFE_TO_CHANGE`."""
    return [k for k in changes if not any(fnmatch.fnmatchcase(k, p) for p in SAFE_TO_CHANGE)]


def write_run_config(directory: Path, cfg: RunConfig) -> None:
    """``config.yaml`` and :data:`RESOLVED`: the same resolved config."""
    import yaml

    data = config_to_dict(cfg)
    atomic_write(directory / "config.yaml", yaml.safe_dump(data, sort_keys=False))
    atomic_write(directory / RESOLVED, json.dumps(data, indent=1))


def load_run_config(directory: Path, overrides: list[str] | None = None
                    ) -> tuple[RunConfig, dict[str, tuple[Any, Any]]]:
    """``(config, changes)``: ``config.yaml`` with ``overrides``, and its changes from the
    config the run started with.  A change outside :data:`SAFE_TO_CHANGE` is a
    :class:`UserError` that names the keys and their two values."""
    import logging

    if not (directory / "config.yaml").exists():
        raise UserError(f"{directory / 'config.yaml'}: missing; the run directory is damaged")
    cfg = config_from_dict(apply_overrides(
        config_to_dict(load_config(directory / "config.yaml")), overrides))
    started_path = directory / RESOLVED
    if started_path.exists():
        try:
            started = json.loads(started_path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{started_path}: not valid JSON ({exc.msg}); the run directory "
                            "is damaged") from None
    else:  # a run directory from before the snapshot existed
        logging.getLogger(__name__).warning("%s: missing; config.yaml is taken as the run's "
                                            "config", started_path)
        started = config_to_dict(cfg)
    changes = changed_keys(started, config_to_dict(cfg))
    had, defaults = flatten(started), flatten(config_to_dict(type(cfg).model_construct()))
    changes = {k: v for k, v in changes.items()  # a key added since, at its default: no change
               if k in had or k not in defaults or not _same(v[1], defaults[k])}
    bad = unsafe_changes(changes)
    if bad:
        shown = "; ".join(f"{k}: {changes[k][0]!r} -> {changes[k][1]!r}" if k in had else
                          f"{k}: not in the run's config (a key added to dualgap since), now "
                          f"{changes[k][1]!r}" for k in bad[:6])
        raise UserError(
            f"config.yaml: changed since the run started ({shown}{' ...' if len(bad) > 6 else ''})"
            f"; a run keeps the config it started with: restore these keys or start a new run "
            f"(only {', '.join(SAFE_TO_CHANGE)} may change, with resume --set)")
    return cfg, changes


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a stage's ``.npz`` file; a missing or unreadable file is a
    :class:`UserError` naming it."""
    if not path.exists():
        raise UserError(f"{path}: missing, but state.json marks its stage finished")
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise UserError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None


def _has_weights(directory: Path) -> bool:
    if not ((directory / "config.json").exists() or (directory / "adapter_config.json").exists()):
        return False
    return any(directory.glob("*.safetensors")) or any(  # training_args.bin holds no weights
        p.name != "training_args.bin" for p in directory.glob("*.bin"))


#: the state.json entries a finished stage leaves
_STATE_KEYS = {"setup": ("reference_path",), "prealign": ("implicit_models",),
               "reference": ("step_size", "E_ref_g", "one_shot_lam")}


def check_run_directory(directory: Path, state: dict, builtin_reference: bool) -> None:
    """Raise :class:`UserError` (one line: the file and what is wrong) when a finished stage's
    outputs are missing or unreadable: ``state.json`` entries, score arrays, checkpoints, and
    the records of ``lam_history.jsonl`` and ``metrics.jsonl``."""
    state_path = directory / "state.json"
    completed = state["completed"]
    for stage in completed:
        for key in _STATE_KEYS.get(stage, ("lam",) if stage.startswith("dual_") else ()):
            if key not in state:
                raise UserError(f"{state_path}: stage {stage!r} is finished but {key!r} is "
                                "missing")
    if "setup" in completed and builtin_reference:
        ref = directory / "models" / "reference"
        if not _has_weights(ref):
            raise UserError(f"{ref}: the built-in reference model is missing or incomplete")
    for name, rel in (state["implicit_models"] if "prealign" in completed else {}).items():
        if not _has_weights(directory / rel):
            raise UserError(f"{directory / rel}: the pre-aligned model {name!r} is missing or "
                            "incomplete, but state.json marks prealign finished")
    for stage in ("pool", "reference"):
        if stage in completed:
            arrays = load_npz(directory / "scores" / f"{stage}.npz")
            if not {"reward", "utilities"} <= set(arrays):
                raise UserError(f"{directory / 'scores' / (stage + '.npz')}: expected arrays "
                                f"'reward' and 'utilities', found {sorted(arrays)}")
    for stage in completed:
        if stage.startswith("policy_"):
            ckpt = directory / "checkpoints" / f"iter_{stage.split('_')[1]}"
            if not _has_weights(ckpt):
                raise UserError(f"{ckpt}: missing or incomplete (no config and weights), but "
                                f"state.json marks {stage} finished")
    for name, needs in (("lam_history.jsonl", lambda s: s.startswith("dual_") or s == "final"),
                        ("metrics.jsonl", lambda s: s in ("pool", "reference")
                         or s.startswith("policy_"))):
        records, _ = read_jsonl_for_resume(directory / name)
        have = {r["stage"] for r in records}
        for stage in completed:
            if needs(stage) and stage not in have:
                raise UserError(f"{directory / name}: no record of the finished stage {stage!r} "
                                "(the file was truncated or edited)")


@dataclass
class Run:
    """A run directory and the machinery of its stages (see the module docstring)."""

    directory: Path
    config: RunConfig
    progress: bool = True
    verbose: bool = False
    state: dict = field(default_factory=dict)
    _scorers: list | None = field(default=None, repr=False)
    _tokenizer: Any = field(default=None, repr=False)
    _pairs: Any = field(default=None, repr=False)
    configured_scorers: bool = False  # a PeCAID run scored by the config's scorers (evaluate)

    # ------------------------------------------------------------ files
    @property
    def state_path(self) -> Path:
        return self.directory / "state.json"

    def load_state(self) -> None:
        """``state.json``, checked (:func:`dualgap.llm.rundir.read_state`)."""
        self.state = (read_state(self.state_path, self.config.iterations)
                      if self.state_path.exists() else {"completed": [], "step_size": None})

    def done(self, stage: str) -> bool:
        return stage in self.state["completed"]

    def mark(self, stage: str, **extra: Any) -> None:
        from .distributed import barrier, is_main

        self.state["completed"].append(stage)
        self.state.update(to_list(extra))
        if is_main():
            atomic_write(self.state_path, json.dumps(self.state, indent=1))
        barrier()

    def append(self, name: str, record: dict) -> None:
        from .distributed import is_main

        if is_main():
            with open(self.directory / name, "a") as f:
                f.write(json.dumps(to_list(record)) + "\n")

    def save_arrays(self, stage: str, **arrays: np.ndarray) -> None:
        from .distributed import is_main

        if is_main():
            (self.directory / "scores").mkdir(exist_ok=True)
            tmp = self.directory / "scores" / f"{stage}.tmp.npz"
            np.savez(tmp, **arrays)
            tmp.replace(self.directory / "scores" / f"{stage}.npz")

    def load_arrays(self, stage: str) -> dict[str, np.ndarray]:
        return load_npz(self.directory / "scores" / f"{stage}.npz")

    def save_samples(self, stage: str, prompts: list[str], samples: list[list[str]]) -> None:
        from .distributed import is_main

        if is_main():
            (self.directory / "samples").mkdir(exist_ok=True)
            atomic_write(self.directory / "samples" / f"{stage}.json",
                          json.dumps({"prompts": prompts, "samples": samples}))

    def checkpoint(self, t: int) -> Path:
        return self.directory / "checkpoints" / f"iter_{t}"

    # ------------------------------------------------------------ models and scorers
    @property
    def reference_path(self) -> str:
        """``pi_ref``: a hub id or directory; ``run:<rel>`` is relative to the run directory."""
        ref = self.state["reference_path"]
        return str(self.directory / ref[4:]) if ref.startswith("run:") else ref

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            p = self.config.policy
            ref = self.reference_path if "reference_path" in self.state else p.model
            rev = None if p.tokenizer else p.revision
            with hub_errors(f"policy.{'tokenizer' if p.tokenizer else 'model'}", p.tokenizer or ref,
                            rev, "tokenizer"):
                self._tokenizer = AutoTokenizer.from_pretrained(p.tokenizer or ref, revision=rev)
            if self._tokenizer.pad_token is None:
                self._tokenizer.pad_token = self._tokenizer.eos_token
            self._tokenizer.padding_side = "left"
        return self._tokenizer

    def policy_path(self, t: int) -> str:
        """The iterate after policy step ``t`` (``t = -1``: ``pi_ref``)."""
        return self.reference_path if t < 0 else str(self.checkpoint(t))

    def load_policy(self, t: int) -> Any:
        from .distributed import device
        from .generation import load_policy

        p = self.config.policy
        # a LoRA iterate runs on the base model of training: pi_ref at its revision, quantized
        # as in training (a full checkpoint is the run's own directory: no revision)
        full = t >= 0 and not p.lora.enabled
        return load_policy(self.policy_path(t), base=self.reference_path, dtype=p.dtype,
                           device=device(), revision=None if full else p.revision, lora=p.lora)

    @property
    def implicit(self) -> bool:
        """Whether :meth:`scorers` are PeCAID's implicit rewards."""
        return self.config.method in ("pecaid", "pe-one-shot") and not self.configured_scorers

    def scorers(self) -> list:
        """``[reward, g_1, ..., g_m]`` (signed, cached): the config's or PeCAID's implicit."""
        if self._scorers is None:
            from .distributed import device, rank
            from .scoring import build_scorer

            cache = self.directory / "cache" / "scores"
            cfgs = [self.config.reward] + [c.scorer for c in self.config.constraints]
            if self.implicit:
                from .pecaid import run_implicit_scorer
                self._scorers = [run_implicit_scorer(self, c, cache) for c in cfgs]
            else:
                keys = ["reward"] + [f"constraints.{i}.scorer" for i in range(len(cfgs) - 1)]
                self._scorers = [build_scorer(c, cache, rank(), device(), self.progress, key=k)
                                 for c, k in zip(cfgs, keys, strict=True)]
        return self._scorers

    def release_models(self) -> None:
        """Drop the transformer (and PeCAID's implicit) scorers and free GPU memory before the
        next stage (on GPUs they would otherwise sit beside the policy during DPO; the score
        cache keeps what they computed)."""
        import sys

        torch = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_available():
            return
        from .scoring import CachedScorer, TransformerScorer

        if self._scorers is not None and (self.implicit or any(
                isinstance(s.scorer if isinstance(s, CachedScorer) else s, TransformerScorer)
                for s in self._scorers)):
            self._scorers = None
        torch.cuda.empty_cache()

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """Signed scores ``[r, g_1..g_m]``, shape ``(1 + m, n)``, split across ranks, gathered."""
        from .distributed import map_sharded

        chunk = 256
        idx = [(i, min(i + chunk, len(prompts))) for i in range(0, len(prompts), chunk)]

        def work(_: int, span: tuple[int, int]) -> np.ndarray:
            a, b = span
            return np.stack([s(prompts[a:b], responses[a:b]) for s in self.scorers()])

        parts = map_sharded(work, idx)
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(self.scorers()), 0))

    # ------------------------------------------------------------ data
    def prompt_text(self, prompt: str) -> str:
        from .data import format_prompt

        d = self.config.data
        return format_prompt(prompt, d.template, self.tokenizer(), d.use_chat_template)

    def train_pairs(self):
        from .data import load_pairs

        if self._pairs is None:
            d = self.config.data
            self._pairs = load_pairs(d.source, d.train_split, name=d.name, revision=d.revision,
                                     test_path=d.test_path, fmt=d.format,
                                     drop_invalid=d.drop_invalid, max_pairs=d.max_train_pairs)
        return self._pairs

    def dual_prompts(self, pairs) -> list[str]:
        """``dual.num_prompts`` distinct training prompts, a seeded choice."""
        uniq = pairs.unique_prompts()
        n = min(self.config.dual.num_prompts, len(uniq))
        rng = np.random.default_rng([self.config.seed, _STAGE_SEEDS["prompts"]])
        return [uniq[i] for i in sorted(rng.choice(len(uniq), size=n, replace=False))]

    def sample_and_score(self, stage: str, t_policy: int, prompts: list[str], seed_tag: str,
                         timing: dict, num_samples: int | None = None
                         ) -> tuple[list[list[str]], np.ndarray]:
        """K samples per prompt from iterate ``t_policy`` and their scores ``(1 + m, N, K)``
        (``K = dual.samples_per_prompt`` unless ``num_samples`` is given)."""
        from .generation import generate_samples

        cfg = self.config
        K = num_samples or cfg.dual.samples_per_prompt
        t0 = time.perf_counter()
        model = self.load_policy(t_policy)
        samples = generate_samples(
            model, self.tokenizer(), [self.prompt_text(p) for p in prompts], K, cfg.generation,
            seed=_seed(cfg.seed, _STAGE_SEEDS[seed_tag], t_policy + 1), progress=self.progress,
            desc=f"generating ({stage})")
        del model
        self.release_models()
        t1 = time.perf_counter()
        flat_p = [p for p in prompts for _ in range(K)]
        flat_y = [y for ys in samples for y in ys]
        scores = self.score(flat_p, flat_y).reshape(-1, len(prompts), K)
        self.release_models()
        t2 = time.perf_counter()
        timing["generation_s"] = timing.get("generation_s", 0.0) + t1 - t0
        timing["scoring_s"] = timing.get("scoring_s", 0.0) + t2 - t1
        self.save_samples(stage, prompts, samples)
        self.save_arrays(stage, reward=scores[0], utilities=scores[1:])
        return samples, scores


def _seed(*parts: int) -> int:
    from .generation import derive_seed

    return derive_seed(*parts)



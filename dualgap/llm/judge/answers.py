"""The answers a judge compares: read from a run's evaluation samples, or generated for a prompt
set such as AdvBench.

A run side is ``DIR`` (the run's final iterate) or ``DIR@reference`` (its ``pi_ref``).

* Prompt set ``eval``: the answers ``dualgap llm evaluate DIR`` wrote, ``DIR/samples/
  eval_policy.json`` and ``eval_reference.json`` (``{"prompts": [...], "samples": [[...]]}``,
  ``S`` samples per test prompt).  Nothing is generated.
* Prompt set ``advbench``: AdvBench's harmful instructions (the paper's robustness set, 100
  prompts), loaded through ``datasets`` (:func:`load_advbench`); the answers are generated once
  from the run's iterate with the run's own generation settings and kept in
  ``DIR/samples/judge_advbench_{policy,reference}.json`` (a rerun reuses them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ...errors import UserError

__all__ = ["RunAnswers", "parse_side", "load_advbench", "run_answers", "ADVBENCH_SOURCE",
           "ADVBENCH_SAMPLE"]

#: the hub copy of AdvBench's 520 harmful behaviours (columns ``prompt``, ``target``)
ADVBENCH_SOURCE = "walledai/AdvBench"
#: the bundled schema sample (5 rows written for the tests, same columns as the hub copy)
ADVBENCH_SAMPLE = "builtin:advbench-sample"
_SAMPLE_FILE = Path(__file__).parent / "data" / "advbench_sample.jsonl"


@dataclass
class RunAnswers:
    """One side of a comparison: ``samples[i][s]`` answers ``prompts[i]``."""

    directory: Path
    which: str  # "policy" or "reference"
    prompts: list[str]
    samples: list[list[str]]
    method: str | None
    threshold: float | None  # the first constraint's threshold b, if any

    @property
    def label(self) -> str:
        return self.directory.name + ("@reference" if self.which == "reference" else "")


def parse_side(spec: str) -> tuple[Path, str]:
    """``DIR`` -> ``(DIR, "policy")``; ``DIR@reference`` -> ``(DIR, "reference")``."""
    which = "policy"
    if spec.endswith("@reference"):
        spec, which = spec[: -len("@reference")], "reference"
    directory = Path(spec)
    if not (directory / "config.yaml").is_file():
        raise UserError(f"run: {spec!r} is not a run directory (no config.yaml)")
    return directory, which


def load_advbench(source: str = ADVBENCH_SOURCE, revision: str | None = None,
                  max_prompts: int | None = 100) -> list[str]:
    """The first ``max_prompts`` AdvBench instructions (column ``prompt``, or ``goal`` in the
    original CSV), through ``datasets.load_dataset`` (``source``: a hub id, a local
    .json/.jsonl/.parquet file, or :data:`ADVBENCH_SAMPLE`)."""
    from ..data import load_split

    path = str(_SAMPLE_FILE) if source == ADVBENCH_SAMPLE else source
    ds = load_split(path, "train", revision=revision)
    column = next((c for c in ("prompt", "goal") if c in ds.column_names), None)
    if column is None:
        raise ValueError(f"--advbench-source: {source!r} has columns {ds.column_names}, "
                         "neither 'prompt' nor 'goal'")
    prompts = list(ds[column])
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str) or not p.strip()]
    if bad:
        raise ValueError(f"--advbench-source: {source!r} row {bad[0]} has an empty {column!r}")
    if max_prompts is not None:
        if max_prompts > len(prompts):
            raise ValueError(f"--max-prompts: {max_prompts} asked, {source!r} has "
                             f"{len(prompts)} prompts")
        prompts = prompts[:max_prompts]
    return prompts


def _run_info(directory: Path) -> tuple[str | None, float | None]:
    import yaml

    cfg = yaml.safe_load((directory / "config.yaml").read_text()) or {}
    constraints = cfg.get("constraints") or []
    threshold = constraints[0].get("threshold") if constraints else None
    return cfg.get("method"), (None if threshold is None else float(threshold))


def _read_samples(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        data = json.loads(path.read_text())
        prompts, samples = data["prompts"], data["samples"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"run: {str(path)!r} is damaged (expected prompts and samples)") from None
    if len(prompts) != len(samples):
        raise UserError(f"run: {str(path)!r} has {len(prompts)} prompts but {len(samples)} "
                        "sample lists")
    return prompts, samples


def run_answers(spec: str, prompt_set: str = "eval", prompts: list[str] | None = None,
                samples_per_prompt: int = 1, progress: bool = True) -> RunAnswers:
    """The answers of one side ``spec`` (``DIR`` or ``DIR@reference``) on ``prompt_set``
    (``prompts`` are the AdvBench prompts when ``prompt_set == "advbench"``)."""
    directory, which = parse_side(spec)
    method, threshold = _run_info(directory)
    if prompt_set == "eval":
        path = directory / "samples" / f"eval_{which}.json"
        if not path.is_file():
            raise UserError(f"run: {spec!r} has no evaluation answers ({str(path)!r}); run "
                            f"`dualgap llm evaluate {directory}` first")
        got_prompts, samples = _read_samples(path)
    elif prompt_set == "advbench":
        if prompts is None:
            raise ValueError("prompts: needed for prompt set 'advbench'")
        path = directory / "samples" / f"judge_advbench_{which}.json"
        got_prompts, samples = _read_samples(path) if path.is_file() else (None, None)
        if got_prompts != prompts or min(map(len, samples)) < samples_per_prompt:
            got_prompts, samples = prompts, _generate(directory, which, prompts,
                                                      samples_per_prompt, progress)
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"prompts": prompts, "samples": samples}))
            tmp.replace(path)
    else:
        raise ValueError(f"--prompt-set: {prompt_set!r} is not one of ['eval', 'advbench']")
    return RunAnswers(directory, which, list(got_prompts), [list(s) for s in samples], method,
                      threshold)


def _generate(directory: Path, which: str, prompts: list[str], k: int,
              progress: bool) -> list[list[str]]:
    """``k`` answers per prompt from the run's final iterate (or ``pi_ref``), sampled with the
    run's generation settings and a seed derived from the run's seed."""
    from ..config import load_config
    from ..generation import derive_seed, generate_samples
    from ..run import Run

    run = Run(directory, load_config(directory / "config.yaml"), progress)
    run.load_state()
    if not run.done("complete"):
        raise UserError(f"run: the run in {str(directory)!r} is not finished (resume it first)")
    t = -1 if which == "reference" else run.config.iterations - 1
    model = run.load_policy(t)
    samples = generate_samples(model, run.tokenizer(), [run.prompt_text(p) for p in prompts], k,
                               run.config.generation, seed=derive_seed(run.config.seed, 11, t + 1),
                               progress=progress, desc=f"generating (judge, {which})")
    del model
    return samples

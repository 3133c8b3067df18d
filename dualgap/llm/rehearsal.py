"""The rehearsal: a config's whole pipeline on tiny stand-ins, offline, in minutes on a laptop.

``dualgap llm rehearse --config pku_saferlhf_30k`` takes the config unchanged except its sizes
(:func:`rehearsal_overrides`: iterations, pairs, prompts, samples, token lengths, batch sizes),
writes tiny stand-ins of every repo it names into a private Hugging Face cache
(:mod:`dualgap.llm.standins`; a local model folder is replaced by a stand-in folder of the
same architecture), and inside that cache, with the real loading code:

1. runs the preflight (:mod:`dualgap.llm.preflight`) on the sized config;
2. for each method (``caid``, ``one-shot``, ``dpo-helpful``, ``dpo-safe``; those the config
   allows) trains with ``stop_after=1`` -- the run stops after its first policy step as a kill
   would -- then resumes it to the end and checks it completed;
3. evaluates every run (CIs, win rates against the other runs, figures);

and prints a table with the time of every stage.  Everything is written under the output
directory: ``hf-cache/`` (the stand-ins), ``runs/<method>/`` (the run directories, figures in
``runs/<method>/eval/``) and ``rehearsal.json`` (the table as JSON).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError

__all__ = ["rehearsal_overrides", "Rehearsal", "StageTime", "rehearse", "format_rehearsal",
           "applicable_methods"]


def rehearsal_overrides(cfg: Any) -> list[str]:
    """The ``--set`` overrides of a rehearsal: sizes only (every other key stays as it is)."""
    sets = ["iterations=2", "data.max_train_pairs=8", "data.max_test_prompts=2",
            "dual.num_prompts=2", "dual.samples_per_prompt=4", "generation.max_new_tokens=4",
            "generation.batch_size=8", "train.batch_size=4",
            "train.gradient_accumulation_steps=1", "train.max_length=64", "train.warmup_steps=0",
            "train.logging_steps=1", "evaluation.num_prompts=2", "evaluation.samples_per_prompt=2"]
    scorers = ["reward"] + [f"constraints.{i}.scorer" for i in range(len(cfg.constraints))]
    for key in scorers:
        sets += [f"{key}.max_length=64", f"{key}.batch_size=8"]
    return sets


@dataclass
class StageTime:
    """One row of the rehearsal table."""

    method: str
    stage: str
    seconds: float
    detail: str = ""


@dataclass
class Rehearsal:
    """What a rehearsal built, ran and measured."""

    config: str
    directory: Path
    standins: list[Any] = field(default_factory=list)
    stages: list[StageTime] = field(default_factory=list)
    runs: dict[str, Path] = field(default_factory=dict)
    summaries: dict[str, dict] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    killed_at: dict[str, list[str]] = field(default_factory=dict)
    preflight_table: str = ""

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages)


def applicable_methods(cfg: Any) -> tuple[list[str], dict[str, str]]:
    """The methods ``cfg`` can run and, for the others, why not (the config's own checks)."""
    from .config import METHODS, config_to_dict, load_config

    ok, skipped = [], {}
    for m in METHODS:
        try:
            load_config(config_to_dict(cfg), [f"method={m}"])
        except ValueError as exc:
            skipped[m] = str(exc)
        else:
            ok.append(m)
    return ok, skipped


def _timed(rows: list[StageTime], method: str, stage: str, fn, detail: str = "") -> Any:
    t0 = time.perf_counter()
    out = fn()
    rows.append(StageTime(method, stage, time.perf_counter() - t0, detail))
    return out


def rehearse(config: str | Path, overrides: list[str] | None = None,
             methods: list[str] | None = None, output_dir: str | Path | None = None,
             progress: bool = False, echo: Any = None) -> Rehearsal:
    """Rehearse ``config`` (a shipped name or YAML file, with ``overrides``) on stand-ins.

    ``methods``: the methods to train (default: every one the config allows).  ``echo``: a
    ``print``-like callable for progress lines (None: quiet).
    """
    from .config import METHODS, config_to_dict, load_config
    from .evaluate import evaluate
    from .hub_cache import private_hub_cache
    from .preflight import preflight
    from .run import RunStopped, resume, train
    from .standins import build_standins, cached_originals

    say = echo or (lambda *a, **k: None)
    base = load_config(config, overrides)
    sized = load_config(config_to_dict(base), rehearsal_overrides(base))
    allowed, skipped = applicable_methods(sized)
    if methods:
        for m in methods:
            if m not in METHODS:
                raise ValueError(f"--method: {m!r} is not one of {list(METHODS)}")
            if m not in allowed:
                raise ValueError(f"--method: {m!r} cannot run with this config ({skipped[m]})")
        skipped = {m: "not asked for" for m in allowed if m not in methods}
        allowed = [m for m in allowed if m in methods]
    if output_dir is None:
        import tempfile

        output_dir = tempfile.mkdtemp(prefix="dualgap-rehearsal-")
    out = Path(output_dir)
    if (out / "runs").exists() and any((out / "runs").iterdir()):
        raise UserError(f"--output-dir: {str(out)!r} already holds a rehearsal")
    out.mkdir(parents=True, exist_ok=True)
    result = Rehearsal(str(config), out, skipped=skipped)
    rows = result.stages
    originals = cached_originals(sized)  # the user's own cache, before switching to the private
    with private_hub_cache(out / "hf-cache") as home:
        say(f"rehearsal of {config}: stand-ins in {home}")
        result.standins = _timed(rows, "-", "stand-ins",
                                 lambda: build_standins(sized, home, originals),
                                 "tiny models, tokenizers, datasets")
        moved = [f"{s.key}={s.location}" for s in result.standins if s.location != s.repo]
        if moved:  # local model folders: their stand-ins take their place
            sized = load_config(config_to_dict(sized), moved)
        report = _timed(rows, "-", "preflight", lambda: preflight(sized))
        result.preflight_table = report.table()
        say(result.preflight_table)
        report.raise_for_problems()
        for m in allowed:
            cfg = load_config(config_to_dict(sized), [f"method={m}"])
            run_dir = out / "runs" / m
            say(f"[{m}] train, stopped after the first policy step")

            def start(cfg=cfg, run_dir=run_dir) -> None:
                try:
                    train(cfg, run_dir, stop_after=1, progress=progress)
                except RunStopped:
                    return
                raise RuntimeError("the run did not stop after its first policy step")

            _timed(rows, m, "train (killed)", start, "stop_after=1")
            done = json.loads((run_dir / "state.json").read_text())["completed"]
            result.killed_at[m] = done
            rows[-1].detail = f"stopped after {done[-1]}"
            say(f"[{m}] resume")
            run = _timed(rows, m, "resume", lambda run_dir=run_dir: resume(run_dir,
                                                                            progress=progress))
            if "complete" not in run.state["completed"]:
                raise RuntimeError(f"{run_dir}: the resumed run did not complete")
            result.runs[m] = run_dir
        for m, run_dir in result.runs.items():
            others = [d for k, d in result.runs.items() if k != m]
            say(f"[{m}] evaluate")
            result.summaries[m] = _timed(
                rows, m, "evaluate", lambda d=run_dir, o=others: evaluate(
                    d, against=o, figures=True, progress=progress), "CIs, win rates, figures")
    (out / "rehearsal.json").write_text(json.dumps({
        "config": str(config), "overrides": list(overrides or []) + rehearsal_overrides(base)
        + [f"{s.key}={s.location}" for s in result.standins if s.location != s.repo],
        "stages": [asdict(s) for s in rows], "skipped": skipped,
        "standins": [asdict(s) for s in result.standins],
        "runs": {k: str(v) for k, v in result.runs.items()}, "killed_at": result.killed_at},
        indent=1))
    return result


def format_rehearsal(result: Rehearsal) -> str:
    """The stand-ins, the time per stage, and each run's improvements."""
    lines = [f"rehearsal of {result.config} in {result.directory}", "", "stand-ins:"]
    for s in result.standins:
        lines.append(f"  {s.key:<28} {s.repo:<44} {s.kind:<20} {s.architecture} ({s.origin})")
    lines += ["", f"{'method':<12} {'stage':<16} {'seconds':>8}  detail"]
    for r in result.stages:
        lines.append(f"{r.method:<12} {r.stage:<16} {r.seconds:>8.1f}  {r.detail}")
    lines.append(f"{'total':<12} {'':<16} {result.seconds:>8.1f}")
    if result.summaries:
        lines += ["", "improvement over pi_ref (stand-ins: random models, the numbers mean "
                  "nothing; the pipeline ran):"]
        for m, s in result.summaries.items():
            parts = [f"{name} {e['improvement']:+.3g}" for name, e in s["scores"].items()]
            lines.append(f"  {m:<12} " + ", ".join(parts) + f"  (figures: {s['run']}/eval/)")
    for m, why in result.skipped.items():
        lines.append(f"  {m:<12} skipped: {why}")
    return "\n".join(lines)

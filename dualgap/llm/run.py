"""Training runs: CAID, one-shot, DPO on helpfulness or safety labels, with resume.

The CAID loop (practical start; README "Algorithms"), for ``t = 0 .. T-1``::

    t = 0:  lam_0 = one-shot lam: dualgap.solve on N prompts x K reference samples
    t > 0:  sample K responses per prompt from theta_{t-1}, score them, and step lam on the slack
            u = E_{theta_{t-1}} g - E_ref g - b (auto: docs/algorithms.md; eta: [lam - eta u]_+)
    policy: pseudo-labels ~ Bernoulli(sigmoid(r_lam_t(y_1) - r_lam_t(y_0))) on the training
            pairs; theta_t = DPO(from theta_{t-1}, reference pi_ref)

With ``dual.start = literal`` the first dual step is taken at ``pi_ref`` from ``lam_init``.
``one-shot`` keeps the one-shot ``lam`` and one label draw for every iteration; ``dpo-helpful``
/ ``dpo-safe`` train on the dataset's ``better_response_id`` / ``safer_response_id``.
``pecaid`` / ``pe-one-shot`` are ``caid`` / ``one-shot`` after a stage ``prealign`` (one DPO model
per label, in ``models/implicit/``) scoring with ``beta log pi_name / pi_ref`` (docs/pecaid.md).
After the last policy step the constrained runs measure ``E g`` of the final iterate (``final``).

The run directory::

    config.yaml          the resolved config (resume reads it; see SAFE_TO_CHANGE)
    resolved_config.json the config the run started with (resume compares config.yaml with it)
    state.json           finished stages, step size, paths, accepted config changes
    run.log              TRL's per-step log dicts (loss, rewards, learning rate), one JSON line each
    lam_history.jsonl    per dual stage: lam, E_pi g, E_ref g, slack, step size; dual_step (auto)
    metrics.jsonl        one record per stage: timings (generation / scoring / DPO), losses
    samples/, scores/    sampled responses and their scores, per stage
    cache/scores/        the score cache (scorer, prompt, response) -> raw score
    cache/tokens/        the DPO pool's tokens, one per pool (policy_step.pool_dataset)
    checkpoints/iter_t/  the iterates (full weights or a LoRA adapter)
    models/reference/    the built-in tiny policy when policy.model = builtin:tiny-llama
    models/implicit/     PeCAID's pre-aligned models, one per scorer name

A failed setup leaves nothing behind (:func:`train` builds the directory under a temporary name
and renames it when the setup succeeded).  A stage is marked finished only after its outputs are
written, and every random choice is seeded from ``(seed, stage)``, so ``dualgap llm resume DIR``
after a kill continues from the last finished stage and produces the same ``lam`` trajectory as
an uninterrupted run; resume refuses a changed config and a damaged directory
(:mod:`dualgap.llm.rundir`).  Under
``torchrun``/``accelerate launch`` every rank runs this same code: generation and scoring are
split across ranks and gathered, rank 0 writes the files.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError, one_line
from .config import RunConfig, config_to_dict, load_config
from .rundir import (
    _STAGE_SEEDS,
    SAFE_TO_CHANGE,
    Run,
    _seed,
    atomic_write,
    check_run_directory,
    load_run_config,
    read_jsonl,
    read_jsonl_for_resume,
    write_run_config,
)

__all__ = ["Run", "RunStopped", "train", "resume", "read_jsonl", "lam_trajectory",
           "check_setup", "SAFE_TO_CHANGE"]

logger = logging.getLogger(__name__)


class RunStopped(Exception):
    """Raised internally when ``stop_after`` is reached (the run can be resumed)."""


def lam_trajectory(directory: str | Path) -> np.ndarray:
    """The ``lam`` used by each policy step of a run, shape ``(T, m)``."""
    recs = [r for r in read_jsonl(Path(directory) / "lam_history.jsonl") if r["stage"] != "final"]
    return np.array([r["lam"] for r in recs], dtype=np.float64)


# ------------------------------------------------------------------ the loop
def _prepare(run: Run, local: bool = False) -> None:
    """The setup stage: the built-in reference model (when ``policy.model`` names it) and the
    reference path.  ``local``: rank 0 alone, inside the partial directory of :func:`train`."""
    from .distributed import barrier, broadcast_object, is_main
    from .tiny import materialize_tiny_policy

    if run.done("setup"):
        return
    model = run.config.policy.model
    if model.startswith("builtin:"):  # the name was checked by check_setup
        if local or is_main():
            materialize_tiny_policy(run.directory / "models" / "reference",
                                    seed=run.config.seed)
        if not local:
            barrier()
        ref = "run:models/reference"
    else:
        ref = model
    run.state["reference_path"] = ref if local else broadcast_object(ref)
    if local:
        run.state["completed"].append("setup")
        atomic_write(run.state_path, json.dumps(run.state, indent=1))
    else:
        run.mark("setup", reference_path=ref)


def _prealign_stage(run: Run, pairs) -> None:
    """PeCAID's pre-alignment: one DPO model per label (``pecaid.reward_label`` for the reward,
    ``pecaid.utility_labels`` for the utilities), from and against ``pi_ref``, in
    ``models/implicit/<scorer name>``; a kill keeps the finished models
    (:func:`dualgap.llm.pecaid.prealign`)."""
    from .config import LABEL_COLUMNS
    from .pecaid import prealign

    if run.done("prealign"):
        return
    cfg = run.config
    names = [cfg.reward.name] + [c.scorer.name for c in cfg.constraints]
    labels = {n: LABEL_COLUMNS[c] for n, c in zip(names, cfg.pecaid.labels(len(names) - 1),
                                                   strict=True)}
    epochs = cfg.pecaid.prealign_epochs
    settings = cfg.train if epochs is None else cfg.train.model_copy(
        update={"epochs_per_iteration": epochs})
    t0 = time.perf_counter()
    out = run.directory / "models" / "implicit"
    prealign(pairs, [run.prompt_text(p) for p in pairs.prompts], run.reference_path,
             run.tokenizer(), out, settings, cfg.beta,
             seed=_seed(cfg.seed, _STAGE_SEEDS["prealign"]) % 2**31, labels=labels,
             lora=cfg.policy.lora, dtype=cfg.policy.dtype, progress=run.progress,
             separator=cfg.data.response_separator, log_path=run.directory / "run.log")
    run.append("metrics.jsonl", {"stage": "prealign", "labels": dict(zip(
        names, cfg.pecaid.labels(len(names) - 1), strict=True)), "timing": {
        "dpo_s": time.perf_counter() - t0}})
    run.mark("prealign", implicit_models={n: f"models/implicit/{n}" for n in names})


def _pool_scores(run: Run, pairs) -> tuple[np.ndarray, np.ndarray]:
    """Scores of both responses of every training pair: ``r (P, 2)``, ``g (m, P, 2)``."""
    if not run.done("pool"):
        t0 = time.perf_counter()
        P = len(pairs)
        s = run.score(pairs.prompts * 2, pairs.response_0 + pairs.response_1)  # size = (1+m, 2P)
        s = s.reshape(-1, 2, P).transpose(0, 2, 1)  # size = (1+m, P, 2)
        run.release_models()
        run.save_arrays("pool", reward=s[0], utilities=s[1:])
        run.append("metrics.jsonl", {"stage": "pool", "timing": {
            "scoring_s": time.perf_counter() - t0}, "pairs": P})
        run.mark("pool")
    a = run.load_arrays("pool")
    return a["reward"], a["utilities"]


def _reference_stage(run: Run, prompts: list[str]) -> tuple[np.ndarray, np.ndarray, float | str]:
    """``E_ref g``, the one-shot ``lam`` and the dual step size (``"auto"``: self-tuning; a run
    started when ``auto`` meant a number keeps it)."""
    from .dual import one_shot_multiplier, reference_statistics

    cfg = run.config
    thresholds = np.array(cfg.pecaid.training_thresholds(cfg), dtype=np.float64)
    names = [c.scorer.name for c in cfg.constraints]
    if not run.done("reference"):
        timing: dict = {}
        _, scores = run.sample_and_score("reference", -1, prompts, "reference", timing)
        e_ref = reference_statistics(scores[1:])
        extra = {}
        if run.implicit:  # E_ref g_hat = -beta KL(pi_ref || pi_g): the same mean, read as a KL
            from .pecaid import reference_kl_term

            kl = reference_kl_term(scores[1:], cfg.beta)
            extra["reference_kl"] = {"kl": kl["kl"], "E_ref_g_se": kl["se"]}
        sol = one_shot_multiplier(scores[0], scores[1:], thresholds, cfg.beta, names)
        eta = "auto" if cfg.dual.step_size == "auto" else float(cfg.dual.step_size)
        run.append("metrics.jsonl", {"stage": "reference", "timing": timing,
                                     "reward_mean": float(scores[0].mean()),
                                     "E_ref_g": e_ref, "one_shot": {
                                         "lam": sol.lam, "converged": sol.converged,
                                         "kkt_residual": sol.kkt_residual,
                                         "dual_value": sol.dual_value,
                                         "slack": sol.slack}, **extra})
        run.mark("reference", step_size=eta, E_ref_g=e_ref, one_shot_lam=sol.lam)
    eta = run.state["step_size"]
    return (np.asarray(run.state["E_ref_g"]), np.asarray(run.state["one_shot_lam"]),
            eta if eta == "auto" else float(eta))


def _dual_stage(run: Run, t: int, prompts: list[str], e_ref: np.ndarray, lam_one_shot: np.ndarray,
                eta: float | str) -> np.ndarray:
    """The ``lam`` of policy step ``t``: the one-shot ``lam`` or a dual step from the scores of
    iterate ``t - 1`` (``pi_ref``'s at a literal start).  ``eta == "auto"``:
    :func:`dualgap.llm.dual.auto_dual_step`, its record in ``dual_step``, the gain's state in
    ``state.json`` (``dual_stepper``, with the margin's ``dual.confidence``) for a resume."""
    from ..dual_steps import DualStepper
    from .config_checks import dual_confidence
    from .dual import auto_dual_step, dual_step, reference_statistics

    cfg = run.config
    stage = f"dual_{t}"
    b = np.array(cfg.pecaid.training_thresholds(cfg), dtype=np.float64)
    if not run.done(stage):
        timing: dict = {}
        rec: dict[str, Any] = {"iteration": t, "stage": stage, "step_size": eta,
                               "E_ref_g": e_ref, "thresholds": b}
        extra: dict[str, Any] = {}
        if cfg.method in ("one-shot", "pe-one-shot") or (
                cfg.method in ("caid", "pecaid") and t == 0 and cfg.dual.start == "practical"):
            lam = lam_one_shot
            rec["source"] = "one-shot"
        else:
            if t == 0:  # literal start: the first dual step at pi_ref, where E_pi g = E_ref g
                lam_prev = np.asarray(cfg.dual.lam_init or [0.0] * len(b), dtype=np.float64)
                a, e_pi = run.load_arrays("reference"), e_ref  # pi_ref's own scored samples
                scores = np.concatenate([a["reward"][None], a["utilities"]])
            else:
                _, scores = run.sample_and_score(stage, t - 1, prompts, "dual", timing)
                e_pi = reference_statistics(scores[1:])
                lam_prev = np.asarray(run.state["lam"], dtype=np.float64)
                rec["reward_mean"] = float(scores[0].mean())
            if eta == "auto":
                saved = run.state.get("dual_stepper")
                stepper = (DualStepper.from_state(saved) if saved
                           else DualStepper(confidence=dual_confidence(cfg.dual)))
                lam, step = auto_dual_step(stepper, lam_prev, scores[0], scores[1:], e_ref, b,
                                           cfg.beta)
                rec["dual_step"] = step
                extra["dual_stepper"] = stepper.state_dict()
            else:
                lam = dual_step(lam_prev, e_pi, e_ref, b, eta)
            rec.update(source="dual-step", lam_prev=lam_prev, E_pi_g=e_pi,
                       slack=e_pi - e_ref - b)
        rec["lam"] = lam
        rec["timing"] = timing
        run.append("lam_history.jsonl", rec)
        run.mark(stage, lam=lam, **extra)
    return np.asarray(run.state["lam"], dtype=np.float64)


def _policy_stage(run: Run, t: int, pairs, pool: tuple[np.ndarray, np.ndarray] | None,
                  lam: np.ndarray | None, callbacks: list | None) -> None:
    from .distributed import barrier, is_main
    from .policy_step import dpo_step, onpolicy_pool, policy_records

    cfg = run.config
    stage = f"policy_{t}"
    if run.done(stage):
        return
    timing: dict = {}
    label_t = 0 if cfg.method in ("one-shot", "pe-one-shot") else t
    log_ratio, extra = None, {}
    if cfg.train.pool == "onpolicy" and t > 0:  # distill on samples of pi_{t-1}
        pairs, pool, log_ratio, extra = onpolicy_pool(run, t, pairs, timing)
    records, info = policy_records(cfg, pairs, pool, lam, run.prompt_text,
                                   [cfg.seed, _STAGE_SEEDS["labels"], label_t], log_ratio)
    info.update(extra)
    out = run.checkpoint(t)
    if is_main():
        out.parent.mkdir(parents=True, exist_ok=True)
    barrier()
    result = dpo_step(records, run.policy_path(t - 1), run.reference_path, run.tokenizer(), out,
                      cfg.train, cfg.beta, seed=_seed(cfg.seed, _STAGE_SEEDS["dpo"], t) % 2**31,
                      lora=cfg.policy.lora, dtype=cfg.policy.dtype,
                      reference_revision=cfg.policy.revision, progress=run.progress,
                      callbacks=callbacks, log_path=run.directory / "run.log",
                      verbose=run.verbose, cache_dir=run.directory / "cache" / "tokens")
    timing["dpo_s"] = result["seconds"]
    run.append("metrics.jsonl", {
        "stage": stage, "iteration": t, "timing": timing, "train_loss": result["train_loss"],
        "steps": result["steps"], "world_size": result["world_size"],
        "per_device_train_batch_size": result["per_device_train_batch_size"], "lam": lam,
        **info,
        "log_history": result["log_history"]})
    run.mark(stage)


def _final_stage(run: Run, prompts: list[str], e_ref: np.ndarray) -> None:
    from .dual import reference_statistics

    cfg = run.config
    T = cfg.iterations
    if run.done("final"):
        return
    timing: dict = {}
    _, scores = run.sample_and_score("final", T - 1, prompts, "final", timing)
    e_pi = reference_statistics(scores[1:])
    b = np.array(cfg.pecaid.training_thresholds(cfg), dtype=np.float64)
    run.append("lam_history.jsonl", {
        "iteration": T, "stage": "final", "lam": run.state.get("lam"), "E_pi_g": e_pi,
        "E_ref_g": e_ref, "slack": e_pi - e_ref - b, "thresholds": b,
        "reward_mean": float(scores[0].mean()), "timing": timing})
    run.mark("final")


def _execute(run: Run, stop_after: int | None = None, callbacks: list | None = None) -> Run:
    from .distributed import init_distributed

    init_distributed()
    cfg = run.config
    _prepare(run)
    pairs = run.train_pairs()
    constrained = cfg.method in ("caid", "one-shot", "pecaid", "pe-one-shot")
    if run.implicit:
        _prealign_stage(run, pairs)
    prompts = run.dual_prompts(pairs) if constrained else []
    pool = _pool_scores(run, pairs) if constrained else None
    if constrained:
        e_ref, lam_one_shot, eta = _reference_stage(run, prompts)
    for t in range(cfg.iterations):
        lam = _dual_stage(run, t, prompts, e_ref, lam_one_shot, eta) if constrained else None
        _policy_stage(run, t, pairs, pool, lam, callbacks)
        if stop_after is not None and t + 1 >= stop_after and t + 1 < cfg.iterations:
            raise RunStopped(f"stopped after {t + 1} policy step(s); resume with "
                             f"`dualgap llm resume {run.directory}`")
    if constrained:
        _final_stage(run, prompts, e_ref)
    if not run.done("complete"):
        run.mark("complete")
    return run


def _resolve(key: str, value: str, load) -> Any:
    if value.startswith(("/", "./", "../", "~")) and not Path(value).expanduser().exists():
        raise UserError(f"{key}: {value!r} does not exist (a local path, not a hub id)")
    try:
        return load()
    except (OSError, ValueError, ImportError) as exc:
        raise UserError(f"{key}: cannot load {value!r} ({one_line(exc)})") from None


def check_setup(run: Run) -> None:
    """Everything a run needs before its first stage, checked without writing anything: the
    loggers of ``train.report_to`` are installed, ``train.dpo`` builds a ``DPOConfig``, the
    training pairs load (and a local test file exists), the policy's config and tokenizer and
    every scorer resolve.  Raises
    ``ValueError``/:class:`UserError` naming the config key and the value."""
    cfg = run.config
    if cfg.train.report_to not in (["none"], ["all"]):
        from transformers.integrations.integration_utils import (
            get_available_reporting_integrations,
        )

        have = get_available_reporting_integrations()
        for name in cfg.train.report_to:
            if name not in have:
                raise UserError(f"train.report_to: {name!r} is not installed (pip install "
                                f"{name.replace('_', '-')}), or set train.report_to=[none]")
    if cfg.train.dpo:  # the values too: DPOConfig checks them when it is built
        from .distributed import world_size
        from .policy_step import make_dpo_config

        try:
            make_dpo_config(cfg.train, cfg.beta, run.directory / "dpo-check", 0, world_size())
        except (TypeError, ValueError) as exc:
            raise ValueError(f"train.dpo: {one_line(exc)}") from None
    d = cfg.data
    _resolve("data.source", d.source, run.train_pairs)
    if d.test_path is not None and not Path(d.test_path).exists():
        raise UserError(f"data.test_path: {d.test_path!r} does not exist")
    p = cfg.policy
    if p.model.startswith("builtin:"):
        if p.model != "builtin:tiny-llama":
            raise ValueError(f"policy.model: unknown built-in model {p.model!r} "
                             "(known: builtin:tiny-llama)")
    else:
        from transformers import AutoConfig

        _resolve("policy.model", p.model,
                 lambda: AutoConfig.from_pretrained(p.model, revision=p.revision))
        _resolve("policy.tokenizer" if p.tokenizer else "policy.model", p.tokenizer or p.model,
                 run.tokenizer)
    scorers = [("reward", cfg.reward)] + [(f"constraints.{i}.scorer", c.scorer)
                                          for i, c in enumerate(cfg.constraints)]
    for key, sc in scorers:
        if sc.kind == "callable":
            from .scoring import resolve_callable

            try:
                resolve_callable(sc.path)
            except ValueError as exc:
                raise ValueError(f"{key}.{exc}") from None
        else:
            from transformers import AutoConfig

            _resolve(f"{key}.path", sc.path,
                     lambda sc=sc: AutoConfig.from_pretrained(sc.path, revision=sc.revision))


def train(config: RunConfig | str | Path, output_dir: str | Path,
          overrides: list[str] | None = None, stop_after: int | None = None, progress: bool = True,
          callbacks: list | None = None, verbose: bool = False) -> Run:
    """Start a run in ``output_dir`` (which must not hold one already).

    The setup (config checks, :func:`check_setup`, the built-in model, ``config.yaml``) is made
    in a hidden sibling ``.NAME.partial`` that is renamed to ``output_dir`` only when it
    succeeded, and removed when it failed: a failed setup leaves nothing in the way of the same
    command.  ``stop_after=n`` stops after ``n`` policy steps (raises :class:`RunStopped`), as a
    kill would.
    """
    from .distributed import barrier, broadcast_object, init_distributed, is_main

    init_distributed()
    cfg = config if isinstance(config, RunConfig) else load_config(config, overrides)
    if isinstance(config, RunConfig) and overrides:
        cfg = load_config(config_to_dict(config), overrides)
    directory = Path(output_dir)
    if (directory / "state.json").exists():
        raise ValueError(f"output_dir: {str(directory)!r} already holds a run; use "
                         "`dualgap llm resume` to continue it")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ValueError(f"output_dir: {str(directory)!r} exists and is not an empty directory")
    partial = directory.with_name(f".{directory.name}.partial")
    run = Run(partial, cfg, progress, verbose)
    check_setup(run)  # every rank: nothing written yet
    barrier()  # every rank has looked before rank 0 creates the run
    error = None
    if is_main():
        try:
            if partial.exists():  # a setup killed earlier: never a run
                shutil.rmtree(partial)
            partial.mkdir(parents=True)
            write_run_config(partial, cfg)
            run.state = {"completed": [], "step_size": None}
            _prepare(run, local=True)
            directory.parent.mkdir(parents=True, exist_ok=True)
            if directory.exists():
                directory.rmdir()  # empty (checked above)
            partial.replace(directory)
        except BaseException as exc:
            shutil.rmtree(partial, ignore_errors=True)
            error = f"{type(exc).__name__}: {one_line(exc)}"
            if broadcast_object(error) is not None:
                raise
    if broadcast_object(error) is not None:
        raise UserError(f"output_dir: the setup failed on rank 0 ({error})")
    barrier()
    run = Run(directory, cfg, progress, verbose, _pairs=run._pairs, _tokenizer=run._tokenizer)
    run.load_state()
    return _execute(run, stop_after, callbacks)


def resume(output_dir: str | Path, stop_after: int | None = None, progress: bool = True,
           callbacks: list | None = None, overrides: list[str] | None = None,
           verbose: bool = False) -> Run:
    """Continue the run in ``output_dir`` from its last finished stage, with the config it
    started with.

    ``overrides`` (``resume --set KEY=VALUE``) and edits of ``config.yaml`` may change only the
    keys of :data:`dualgap.llm.rundir.SAFE_TO_CHANGE`; any other change is refused, naming the
    keys.  A damaged directory is refused with one line naming the file
    (:func:`dualgap.llm.rundir.check_run_directory`).
    """
    from .distributed import barrier, init_distributed, is_main

    init_distributed()
    directory = Path(output_dir)
    if not (directory / "state.json").exists():
        partial = directory.with_name(f".{directory.name}.partial")
        hint = (" (its setup did not finish: start it again with `dualgap llm train`)"
                if partial.exists() else "")
        raise UserError(f"output_dir: {str(directory)!r} holds no run (no state.json){hint}")
    cfg, changes = load_run_config(directory, overrides)
    run = Run(directory, cfg, progress, verbose)
    run.load_state()
    check_run_directory(directory, run.state,
                        builtin_reference=str(run.state.get("reference_path", "")
                                              ).startswith("run:"))
    check_setup(run)  # still installed and reachable (a logger set with --set, the hub)
    barrier()
    if is_main():
        if changes:
            logger.warning("resume: changed %s", ", ".join(
                f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items()))
            run.state.setdefault("config_changes", []).append({
                "after": list(run.state["completed"]),
                "changes": {k: list(v) for k, v in changes.items()}})
            atomic_write(run.state_path, json.dumps(run.state, indent=1))
            write_run_config(directory, cfg)
        # drop what a kill left of an unfinished stage: its records and a cut last line
        for name in ("lam_history.jsonl", "metrics.jsonl"):
            path = directory / name
            recs, cut = read_jsonl_for_resume(path)
            keep = [r for r in recs if r.get("stage") in run.state["completed"]]
            if cut or len(keep) != len(recs):
                atomic_write(path, "".join(json.dumps(r) + "\n" for r in keep))
    barrier()
    return _execute(run, stop_after, callbacks)

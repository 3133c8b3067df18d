"""Training runs: CAID, one-shot, DPO on helpfulness or safety labels, with resume.

The CAID loop (practical start, SPEC §3), for ``t = 0 .. T-1``::

    t = 0:  lam_0 = one-shot lam: dualgap.solve on N prompts x K reference samples
    t > 0:  sample K responses per prompt from theta_{t-1}, score them, and
            lam_t = [lam_{t-1} - eta (E_{theta_{t-1}} g - E_ref g - b)]_+
    policy: pseudo-labels ~ Bernoulli(sigmoid(r_lam_t(y_1) - r_lam_t(y_0))) on the training
            pairs; theta_t = DPO(from theta_{t-1}, reference pi_ref)

With ``dual.start = literal`` the first dual step is taken at ``pi_ref`` from ``lam_init``
(where ``E_pi g = E_ref g``, so ``lam_0 = [lam_init + eta b]_+``).  ``one-shot`` keeps the one-shot
``lam`` and one label draw for every iteration; ``dpo-helpful`` / ``dpo-safe`` train on the
dataset's ``better_response_id`` / ``safer_response_id``.  After the last policy step the CAID
and one-shot runs measure ``E g`` of the final iterate (stage ``final``).

The run directory::

    config.yaml          the resolved config
    state.json           finished stages, step size, paths
    lam_history.jsonl    one record per dual stage: lam, E_pi g, E_ref g, slack, step size
    metrics.jsonl        one record per stage: timings (generation / scoring / DPO), losses
    samples/, scores/    sampled responses and their scores, per stage
    cache/scores/        the score cache (scorer, prompt, response) -> raw score
    checkpoints/iter_t/  the iterates (full weights or a LoRA adapter)
    models/reference/    the built-in tiny policy when policy.model = builtin:tiny-llama

A stage is marked finished only after its outputs are written, and every random choice is
seeded from ``(seed, stage)``, so ``dualgap llm resume DIR`` after a kill continues from the last
finished stage and produces the same ``lam`` trajectory as an uninterrupted run.  Under
``torchrun``/``accelerate launch`` every rank runs this same code: generation and scoring are
split across ranks and gathered, rank 0 writes the files.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import RunConfig, load_config, save_config

__all__ = ["Run", "RunStopped", "train", "resume", "read_jsonl", "lam_trajectory"]

logger = logging.getLogger(__name__)

_STAGE_SEEDS = {"reference": 1, "dual": 2, "labels": 3, "dpo": 4, "final": 5, "prompts": 6,
                "eval": 7}


class RunStopped(Exception):
    """Raised internally when ``stop_after`` is reached (the run can be resumed)."""


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a JSONL file (``[]`` if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def lam_trajectory(directory: str | Path) -> np.ndarray:
    """The ``lam`` used by each policy step of a run, shape ``(T, m)``."""
    recs = [r for r in read_jsonl(Path(directory) / "lam_history.jsonl") if r["stage"] != "final"]
    return np.array([r["lam"] for r in recs], dtype=np.float64)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _to_list(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, dict):
        return {k: _to_list(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_list(v) for v in x]
    return x


@dataclass
class Run:
    """A run directory and the machinery of its stages (see the module docstring)."""

    directory: Path
    config: RunConfig
    progress: bool = True
    state: dict = field(default_factory=dict)
    _scorers: list | None = field(default=None, repr=False)
    _tokenizer: Any = field(default=None, repr=False)

    # ------------------------------------------------------------ files
    @property
    def state_path(self) -> Path:
        return self.directory / "state.json"

    def load_state(self) -> None:
        self.state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {
            "completed": [], "step_size": None}

    def done(self, stage: str) -> bool:
        return stage in self.state["completed"]

    def mark(self, stage: str, **extra: Any) -> None:
        from .distributed import barrier, is_main

        self.state["completed"].append(stage)
        self.state.update(_to_list(extra))
        if is_main():
            _atomic_write(self.state_path, json.dumps(self.state, indent=1))
        barrier()

    def append(self, name: str, record: dict) -> None:
        from .distributed import is_main

        if is_main():
            with open(self.directory / name, "a") as f:
                f.write(json.dumps(_to_list(record)) + "\n")

    def save_arrays(self, stage: str, **arrays: np.ndarray) -> None:
        from .distributed import is_main

        if is_main():
            (self.directory / "scores").mkdir(exist_ok=True)
            tmp = self.directory / "scores" / f"{stage}.tmp.npz"
            np.savez(tmp, **arrays)
            tmp.replace(self.directory / "scores" / f"{stage}.npz")

    def load_arrays(self, stage: str) -> dict[str, np.ndarray]:
        with np.load(self.directory / "scores" / f"{stage}.npz") as data:
            return {k: data[k] for k in data.files}

    def save_samples(self, stage: str, prompts: list[str], samples: list[list[str]]) -> None:
        from .distributed import is_main

        if is_main():
            (self.directory / "samples").mkdir(exist_ok=True)
            _atomic_write(self.directory / "samples" / f"{stage}.json",
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
            self._tokenizer = AutoTokenizer.from_pretrained(
                p.tokenizer or self.reference_path,
                revision=p.revision if p.tokenizer is None else None)
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
        return load_policy(self.policy_path(t), base=self.reference_path, dtype=p.dtype,
                           device=device(), revision=p.revision if t < 0 else None)

    def scorers(self) -> list:
        """``[reward, g_1, ..., g_m]`` (signed, cached)."""
        if self._scorers is None:
            from .distributed import device, rank
            from .scoring import build_scorer

            cache = self.directory / "cache" / "scores"
            cfgs = [self.config.reward] + [c.scorer for c in self.config.constraints]
            self._scorers = [build_scorer(c, cache, rank(), device(), self.progress) for c in cfgs]
        return self._scorers

    def release_models(self) -> None:
        """Drop the transformer scorers and free GPU memory before the next stage (on GPUs the
        score models would otherwise sit beside the policy during DPO; the score cache keeps
        what they computed)."""
        import sys

        torch = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_available():
            return
        from .scoring import CachedScorer, TransformerScorer

        if self._scorers is not None and any(
                isinstance(s.scorer if isinstance(s, CachedScorer) else s, TransformerScorer)
                for s in self._scorers):
            self._scorers = None
        torch.cuda.empty_cache()

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """Signed scores ``[r, g_1..g_m]`` of (prompt, response) lists, shape ``(1 + m, n)``,
        split across ranks in chunks and gathered."""
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

        d = self.config.data
        return load_pairs(d.source, d.train_split, name=d.name, revision=d.revision,
                          test_path=d.test_path, fmt=d.format, drop_invalid=d.drop_invalid,
                          max_pairs=d.max_train_pairs)

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


# ------------------------------------------------------------------ the loop
def _prepare(run: Run) -> None:
    from .distributed import barrier, broadcast_object, is_main
    from .tiny import materialize_tiny_policy

    if run.done("setup"):
        return
    model = run.config.policy.model
    if model.startswith("builtin:"):
        if model != "builtin:tiny-llama":
            raise ValueError(f"policy.model: unknown built-in model {model!r} "
                             "(known: builtin:tiny-llama)")
        target = run.directory / "models" / "reference"
        if is_main():
            materialize_tiny_policy(target, seed=run.config.seed)
        barrier()
        ref = "run:models/reference"
    else:
        ref = model
    run.state["reference_path"] = broadcast_object(ref)
    run.mark("setup", reference_path=ref)


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


def _reference_stage(run: Run, prompts: list[str]) -> tuple[np.ndarray, np.ndarray, float]:
    """``E_ref g``, the one-shot ``lam`` and the dual step size."""
    from .dual import auto_step_size, empirical_instance, one_shot_multiplier, reference_statistics

    cfg = run.config
    thresholds = np.array([c.threshold for c in cfg.constraints])
    names = [c.scorer.name for c in cfg.constraints]
    if not run.done("reference"):
        timing: dict = {}
        _, scores = run.sample_and_score("reference", -1, prompts, "reference", timing)
        e_ref = reference_statistics(scores[1:])
        sol = one_shot_multiplier(scores[0], scores[1:], thresholds, cfg.beta, names)
        problem = empirical_instance(scores[0], scores[1:], thresholds, cfg.beta, names)
        lam_start = sol.lam if cfg.dual.start == "practical" else np.asarray(
            cfg.dual.lam_init or [0.0] * len(thresholds), dtype=np.float64)
        eta = (auto_step_size(problem, lam_start) if cfg.dual.step_size == "auto"
               else float(cfg.dual.step_size))
        run.append("metrics.jsonl", {"stage": "reference", "timing": timing,
                                     "reward_mean": float(scores[0].mean()),
                                     "E_ref_g": e_ref, "one_shot": {
                                         "lam": sol.lam, "converged": sol.converged,
                                         "kkt_residual": sol.kkt_residual,
                                         "dual_value": sol.dual_value,
                                         "slack": sol.slack}})
        run.mark("reference", step_size=eta, E_ref_g=e_ref, one_shot_lam=sol.lam)
    return (np.asarray(run.state["E_ref_g"]), np.asarray(run.state["one_shot_lam"]),
            float(run.state["step_size"]))


def _dual_stage(run: Run, t: int, prompts: list[str], e_ref: np.ndarray, lam_one_shot: np.ndarray,
                eta: float) -> np.ndarray:
    """The ``lam`` of policy step ``t``."""
    from .dual import dual_step, reference_statistics

    cfg = run.config
    stage = f"dual_{t}"
    b = np.array([c.threshold for c in cfg.constraints])
    if not run.done(stage):
        timing: dict = {}
        rec: dict[str, Any] = {"iteration": t, "stage": stage, "step_size": eta,
                               "E_ref_g": e_ref, "thresholds": b}
        if cfg.method == "one-shot" or (cfg.method == "caid" and t == 0
                                         and cfg.dual.start == "practical"):
            lam = lam_one_shot
            rec["source"] = "one-shot"
        elif t == 0:  # literal start: the first dual step at pi_ref, where E_pi g = E_ref g
            lam0 = np.asarray(cfg.dual.lam_init or [0.0] * len(b), dtype=np.float64)
            lam = dual_step(lam0, e_ref, e_ref, b, eta)
            rec.update(source="dual-step", lam_prev=lam0, E_pi_g=e_ref, slack=-b)
        else:
            _, scores = run.sample_and_score(stage, t - 1, prompts, "dual", timing)
            e_pi = reference_statistics(scores[1:])
            lam_prev = np.asarray(run.state["lam"], dtype=np.float64)
            lam = dual_step(lam_prev, e_pi, e_ref, b, eta)
            rec.update(source="dual-step", lam_prev=lam_prev, E_pi_g=e_pi,
                       slack=e_pi - e_ref - b, reward_mean=float(scores[0].mean()))
        rec["lam"] = lam
        rec["timing"] = timing
        run.append("lam_history.jsonl", rec)
        run.mark(stage, lam=lam)
    return np.asarray(run.state["lam"], dtype=np.float64)


def _policy_stage(run: Run, t: int, pairs, pool: tuple[np.ndarray, np.ndarray] | None,
                  lam: np.ndarray | None, callbacks: list | None) -> None:
    from .distributed import barrier, is_main
    from .policy_step import dpo_step
    from .preferences import preference_dataset, pseudo_labels

    cfg = run.config
    stage = f"policy_{t}"
    if run.done(stage):
        return
    timing: dict = {}
    if cfg.method == "dpo-helpful":
        labels = pairs.better
    elif cfg.method == "dpo-safe":
        labels = pairs.safer
    else:
        assert pool is not None and lam is not None
        label_t = 0 if cfg.method == "one-shot" else t
        labels = pseudo_labels(pool[0], pool[1], lam, [cfg.seed, _STAGE_SEEDS["labels"], label_t])
    records = preference_dataset([run.prompt_text(p) for p in pairs.prompts], pairs.response_0,
                                 pairs.response_1, labels, cfg.data.response_separator)
    out = run.checkpoint(t)
    if is_main():
        out.parent.mkdir(parents=True, exist_ok=True)
    barrier()
    result = dpo_step(records, run.policy_path(t - 1), run.reference_path, run.tokenizer(), out,
                      cfg.train, cfg.beta, seed=_seed(cfg.seed, _STAGE_SEEDS["dpo"], t) % 2**31,
                      lora=cfg.policy.lora, dtype=cfg.policy.dtype,
                      reference_revision=cfg.policy.revision, progress=run.progress,
                      callbacks=callbacks)
    timing["dpo_s"] = result["seconds"]
    run.append("metrics.jsonl", {
        "stage": stage, "iteration": t, "timing": timing, "train_loss": result["train_loss"],
        "steps": result["steps"], "world_size": result["world_size"],
        "per_device_train_batch_size": result["per_device_train_batch_size"], "lam": lam,
        "labels_y1": float(np.mean(labels)),
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
    b = np.array([c.threshold for c in cfg.constraints])
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
    constrained = cfg.method in ("caid", "one-shot")
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


def train(config: RunConfig | str | Path, output_dir: str | Path,
          overrides: list[str] | None = None, stop_after: int | None = None, progress: bool = True,
          callbacks: list | None = None) -> Run:
    """Start a run in ``output_dir`` (which must not hold one already).

    ``stop_after=n`` stops after ``n`` policy steps (raises :class:`RunStopped`), as a kill would.
    """
    from .distributed import barrier, init_distributed, is_main

    init_distributed()
    cfg = config if isinstance(config, RunConfig) else load_config(config, overrides)
    if isinstance(config, RunConfig) and overrides:
        from .config import config_to_dict

        cfg = load_config(config_to_dict(config), overrides)
    directory = Path(output_dir)
    if (directory / "state.json").exists():
        raise ValueError(f"output_dir: {str(directory)!r} already holds a run; use "
                         "`dualgap llm resume` to continue it")
    barrier()  # every rank has looked before rank 0 creates the run
    if is_main():
        directory.mkdir(parents=True, exist_ok=True)
        save_config(cfg, directory / "config.yaml")
        _atomic_write(directory / "state.json",
                      json.dumps({"completed": [], "step_size": None}, indent=1))
    barrier()
    run = Run(directory, cfg, progress)
    run.load_state()
    return _execute(run, stop_after, callbacks)


def resume(output_dir: str | Path, stop_after: int | None = None, progress: bool = True,
           callbacks: list | None = None) -> Run:
    """Continue the run in ``output_dir`` from its last finished stage."""
    from .distributed import init_distributed

    init_distributed()
    directory = Path(output_dir)
    if not (directory / "state.json").exists():
        raise ValueError(f"output_dir: {str(directory)!r} holds no run (no state.json)")
    cfg = load_config(directory / "config.yaml")
    run = Run(directory, cfg, progress)
    run.load_state()
    # drop stage outputs written after the last finished stage (a kill mid-stage)
    for name in ("lam_history.jsonl", "metrics.jsonl"):
        path = directory / name
        recs = read_jsonl(path)
        keep = [r for r in recs if r.get("stage") in run.state["completed"]]
        if len(keep) != len(recs) and int(os.environ.get("RANK", "0")) == 0:
            _atomic_write(path, "".join(json.dumps(r) + "\n" for r in keep))
    return _execute(run, stop_after, callbacks)

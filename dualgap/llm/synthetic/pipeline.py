"""The llm pipeline on the synthetic task, every iterate evaluated exactly.

:func:`run_method` runs the pipeline's own ``caid`` or ``one-shot`` (:func:`dualgap.llm.run.train`:
DPO through TRL on pseudo-preferences, the dual step on generated samples) with the
transformer as the policy, from the DPO pool of :func:`write_pairs`; every iterate's *exact*
policy is enumerated and set beside ``P*``, ``lam*`` and ``pi*`` (:func:`evaluate_iterate`).

Imports torch, transformers and TRL (through the pipeline).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ...dual import constraint_slack, dual_value, kl_divergence, lagrangian, objective
from .config import METHODS
from .model import TransformerPolicy, exact_policy
from .task import SyntheticTask

__all__ = ["write_pairs", "pipeline_config", "IterateEval", "evaluate_iterate", "MethodTrace",
           "run_method"]


def write_pairs(task: SyntheticTask, path: str | Path, pairs_per_prompt: int | None = None,
                seed: int | None = None) -> Path:
    """The DPO pool in the PKU-SafeRLHF schema: for every prompt ``pairs_per_prompt`` pairs
    ``y_0, y_1 ~ pi_ref(.|x)`` (exact sampling from the enumerated policy, conditioned on a
    non-empty response, which the schema requires), with the dataset labels from the exact
    scores (``better`` = higher helpfulness, ``safer`` = higher first utility, ties -> 0;
    ``is_safe`` = first utility >= 0)."""
    from ...empirical import sample_responses

    sz = task.size
    n = sz.pairs_per_prompt if pairs_per_prompt is None else int(pairs_per_prompt)
    rng = np.random.default_rng([sz.seed if seed is None else int(seed), 11])
    pb, lang = task.problem, task.language
    cond = pb.reference.copy()
    cond[:, 0] = 0.0  # the empty response (index 0) is left out of the pool
    cond /= cond.sum(axis=1, keepdims=True)
    draws = sample_responses(cond, 2 * n, rng)  # size = (X, 2n)
    r, g = pb.reward, pb.utilities[0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for x in range(lang.num_prompts):
            for k in range(n):
                y0, y1 = int(draws[x, 2 * k]), int(draws[x, 2 * k + 1])
                f.write(json.dumps({
                    "prompt": lang.prompts[x],
                    "response_0": lang.responses[y0], "response_1": lang.responses[y1],
                    "is_response_0_safe": bool(g[x, y0] >= 0),
                    "is_response_1_safe": bool(g[x, y1] >= 0),
                    "better_response_id": int(r[x, y1] > r[x, y0]),
                    "safer_response_id": int(g[x, y1] > g[x, y0]),
                }) + "\n")
    return path


def pipeline_config(task: SyntheticTask, method: str, pairs_path: str | Path,
                    train: dict | None = None, seed: int | None = None):
    """The :class:`dualgap.llm.config.RunConfig` of a pipeline run on the task (``train``:
    further ``train.*`` keys, e.g. ``{"labels": "soft"}``, validated like any config; ``seed``:
    the run's seed, None for the size's).

    The settings that make the pipeline's policy the enumerated one: the prompt template is
    ``"{prompt}"``; generation samples the model's own distribution (temperature 1, top_p 1,
    ``max_new_tokens = L``); DPO's ``max_length = prompt_length + L`` (so TRL truncates the
    ``<eos>`` of a length-``L`` response, as generation does); the scorers are the language's
    callables; DPO's ``beta`` is the problem's.
    """
    from ..config import config_from_dict

    if method not in METHODS:
        raise ValueError(f"method: must be one of {METHODS}, got {method!r}")
    sz, lang = task.size, task.language
    scorer = {"kind": "callable", "append_eos": False}
    return config_from_dict({
        "method": method, "seed": sz.seed if seed is None else seed,
        "iterations": sz.iterations, "beta": sz.beta,
        "data": {"source": str(pairs_path), "template": "{prompt}"},
        "policy": {"model": str(task.reference_dir)},
        "reward": dict(scorer, name="helpfulness",
                       path="dualgap.llm.synthetic:helpfulness_score"),
        "constraints": [{"scorer": dict(scorer, name=c, path=f"dualgap.llm.synthetic:{c}_score"),
                         "threshold": float(b)}
                        for c, b in zip(sz.constraints, sz.thresholds, strict=True)],
        "dual": {"num_prompts": lang.num_prompts, "samples_per_prompt": sz.dual_samples,
                 "step_size": sz.dual_step, "start": "practical"},
        "generation": {"temperature": 1.0, "top_p": 1.0,
                       "max_new_tokens": lang.max_response_length, "batch_size": 256},
        "train": {"learning_rate": sz.dpo_learning_rate, "lr_scheduler_type": "cosine",
                  "warmup_steps": 0, "max_length": lang.prompt_length + lang.max_response_length,
                  "batch_size": sz.dpo_batch_size, "epochs_per_iteration": sz.dpo_epochs,
                  "gradient_checkpointing": False, "logging_steps": 1000,
                  "labels": sz.dpo_labels, "pool": sz.dpo_pool, **(train or {})},
    })


@dataclass
class IterateEval:
    """One pipeline iterate ``pi_t`` (policy step ``t`` at multiplier ``lam_t``), exactly.

    Attributes:
        iteration: ``t``; ``lam``: ``lam_t`` (the pipeline's, from its samples).
        objective: ``J(pi_t)`` (exact); ``slack``: ``E_rho E_{pi_t} h`` (exact, ``(m,)``).
        slack_estimate: the pipeline's own estimate of the same slack from ``N x K`` samples
            (``None`` for an iterate it did not sample).
        kl: ``E_rho KL(pi_t || pi_ref)``.
        lagrangian_gap: ``D(lam_t) - L(pi_t, lam_t) = beta E_rho KL(pi_t || pi_{lam_t})``:
            how far the DPO step is from its exact target ``pi_{lam_t}``.
        l1_to_optimum: ``E_rho ||pi_t - pi*||_1``.
    """

    iteration: int
    lam: np.ndarray
    objective: float
    slack: np.ndarray
    slack_estimate: np.ndarray | None
    kl: float
    lagrangian_gap: float
    l1_to_optimum: float

    def to_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                for k, v in asdict(self).items()}


def evaluate_iterate(task: SyntheticTask, policy: np.ndarray, lam: np.ndarray, iteration: int,
                     slack_estimate: np.ndarray | None = None) -> IterateEval:
    """The exact quantities of :class:`IterateEval` for the enumerated ``policy`` ``(X, Y)``."""
    pb, sol = task.problem, task.solution
    lam = np.asarray(lam, dtype=np.float64).reshape(-1)
    rho = pb.prompt_weights
    return IterateEval(
        iteration=iteration, lam=lam, objective=objective(pb, policy),
        slack=constraint_slack(pb, policy), slack_estimate=slack_estimate,
        kl=float(rho @ kl_divergence(pb, policy)),
        lagrangian_gap=dual_value(pb, lam) - lagrangian(pb, policy, lam),
        l1_to_optimum=float(rho @ np.abs(policy - sol.policy).sum(axis=1)))


@dataclass
class MethodTrace:
    """A pipeline run on the task and its iterates, evaluated exactly.

    Attributes:
        method: ``caid`` or ``one-shot``; ``directory``: the run directory.
        iterates: one :class:`IterateEval` per policy step.
        one_shot_lam: the pipeline's one-shot ``lam`` (the exact solver on ``N x K`` generated
            reference samples) and ``step_size`` its dual step size.
        reference_estimate: the pipeline's ``E_ref g`` from the same samples (every sampled
            slack of the run subtracts it; compare with ``problem.reference_utilities``).
        timing: seconds of generation, scoring and DPO summed over the run.
        thetas: the iterates' flat weights (for the theory's cuts), not serialized.
        policies: the iterates' enumerated policies ``(X, Y)``, not serialized.
    """

    method: str
    directory: Path
    iterates: list[IterateEval]
    one_shot_lam: np.ndarray
    step_size: float | str  # a number, or 'auto' (the self-tuning step, dualgap.dual_steps)
    timing: dict
    reference_estimate: np.ndarray
    thetas: list = field(default_factory=list, repr=False)
    policies: list = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return {"method": self.method, "directory": str(self.directory),
                "iterates": [it.to_dict() for it in self.iterates],
                "one_shot_lam": self.one_shot_lam.tolist(), "step_size": self.step_size,
                "timing": self.timing, "reference_estimate": self.reference_estimate.tolist()}


def run_method(task: SyntheticTask, method: str, directory: str | Path,
               pairs_path: str | Path | None = None, progress: bool = True,
               train: dict | None = None, seed: int | None = None) -> MethodTrace:
    """Run the pipeline's ``method`` on the task in ``directory`` (resumed if it holds an
    unfinished run, reused if finished) and evaluate every iterate exactly (``train``: extra
    ``train.*`` keys, ``seed``: the run's seed, of :func:`pipeline_config`)."""
    import torch
    from transformers import AutoModelForCausalLM

    from ..run import lam_trajectory, read_jsonl, resume
    from ..run import train as train_run

    directory = Path(directory)
    if pairs_path is None:
        pairs_path = directory.parent / "pairs.jsonl"
        if not Path(pairs_path).exists():
            write_pairs(task, pairs_path)
    state = directory / "state.json"
    if state.exists():
        if "complete" not in json.loads(state.read_text()).get("completed", []):
            resume(directory, progress=progress)
    else:
        train_run(pipeline_config(task, method, pairs_path, train, seed), directory,
                  progress=progress)
    lams = lam_trajectory(directory)  # size = (T, m)
    hist = read_jsonl(directory / "lam_history.jsonl")
    metrics = read_jsonl(directory / "metrics.jsonl")
    st = json.loads(state.read_text())
    # the pipeline's sampled slack of iterate t is measured by dual stage t + 1 (or "final")
    est: dict[int, np.ndarray] = {}
    for rec in hist:
        if rec.get("slack") is None:
            continue
        if rec["stage"] == "final":
            est[int(rec["iteration"]) - 1] = np.asarray(rec["slack"], float)
        elif rec.get("source") == "dual-step" and int(rec["iteration"]) > 0:
            est[int(rec["iteration"]) - 1] = np.asarray(rec["slack"], float)
    timing: dict[str, float] = {}
    for rec in metrics + hist:
        for k, v in (rec.get("timing") or {}).items():
            timing[k] = timing.get(k, 0.0) + float(v)
    pc = TransformerPolicy(task.problem, task.language, task.model)
    iterates, thetas, policies = [], [], []
    for t in range(lams.shape[0]):
        model = AutoModelForCausalLM.from_pretrained(directory / "checkpoints" / f"iter_{t}",
                                                     dtype=torch.float32)
        pi_t = exact_policy(model, task.language)
        pi_t = pi_t / pi_t.sum(axis=1, keepdims=True)
        iterates.append(evaluate_iterate(task, pi_t, lams[t], t, est.get(t)))
        thetas.append(pc.params_of(model))
        policies.append(pi_t)
    return MethodTrace(method, directory, iterates, np.asarray(st["one_shot_lam"], float),
                       st["step_size"] if st["step_size"] == "auto" else float(st["step_size"]),
                       timing, np.asarray(st["E_ref_g"], float), thetas, policies)

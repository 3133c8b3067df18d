"""The llm pipeline measured against the exact answer and the theory on the synthetic task.

The story, one function per step (:func:`compare` runs them all):

1. :func:`build_task`: train the reference transformer on samples of ``p_data``, enumerate its
   exact ``pi_ref`` and turn the task into an :class:`~dualgap.AlignmentProblem`
   (reward = helpfulness, utilities = the chosen scorers, relative thresholds ``b``); the core's
   :func:`dualgap.solve` gives ``P*``, ``lam*`` and ``pi* = pi_{lam*}``.
2. :func:`run_method`: the pipeline's own ``caid`` and ``one-shot`` runs
   (:func:`dualgap.llm.run.train`, DPO through TRL on pseudo-preferences, the dual step on
   generated samples) with the transformer as the policy; every iterate's *exact* policy is
   enumerated and set beside ``P*``, ``lam*`` and ``pi*`` (:func:`evaluate_iterate`).
3. :func:`measure_class`: the theory for a transformer class (the reference architecture, or
   another width/depth for the capacity sweep): ``nu`` by distilling ``pi_lam`` into it, the
   parametrized dual ``D_p`` from below, ``lam*_p``, ``D*_p``, ``P*_p``, and Lemma 3,
   Theorems 1-2 and Lemma 4 checked with :mod:`dualgap.theory`'s bounds.

Every quantity states how it errs (SPEC §2, "honest numerics"):

* ``D(lam)``, ``P*``, ``lam*``, ``mu*_D``, and every iterate's ``J``, slack and KL: exact
  (enumeration in float64);
* ``D_p(lam)``: a *lower* estimate, ``max_k J(theta_k) + lam^T s_k`` over every theta found
  (each such cut is below ``D_p`` everywhere);
* ``nu``: for each target ``pi_lam`` an *upper* estimate (the best theta found is a witness);
  the class's ``nu`` is the max over the finitely many targets, so a *lower* estimate of the
  ``nu`` over all targets that the theory quantifies;
* ``lam*_p`` (m = 1): the zero of ``lam -> E_rho E_{pi_theta(lam)} h``, the slack of the
  Lagrangian maximizer found at ``lam`` (a subgradient of ``D_p``), by regula falsi: errs either
  way through the inexact inner maximization;
* ``D*_p``: the smallest ``D_p`` lower estimate over the evaluated ``lam`` (a point estimate:
  low through the inner search, high through the finite search over ``lam``), with a
  *certified lower bound* ``min_{0 <= lam <= R} max_k cut_k(lam)`` (m = 1) when a strictly
  feasible theta certifies the radius ``R``;
* ``P*_p``: a *lower* estimate, the best ``J`` of a feasible theta found.

Imports torch, transformers and TRL (through the pipeline).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..._format import format_table
from ...dual import (
    constraint_slack,
    dual_value,
    kl_divergence,
    lagrangian,
    lagrangian_policy,
    objective,
)
from ...problem import AlignmentProblem
from ...solver import DualSolution, solve
from ...theory import (
    GapRow,
    bound_holds,
    dual_curvature,
    lemma3_bounds,
    lemma4_bound,
    theorem1_assumption,
    theorem1_bounds,
    theorem2_bounds,
    tightened_multiplier,
)
from .language import SCORE_NAMES, SyntheticLanguage
from .model import TrainReport, TransformerArch, TransformerPolicy, build_model, exact_policy

__all__ = [
    "SyntheticSize",
    "SIZES",
    "METHODS",
    "SyntheticTask",
    "build_task",
    "exact_problem",
    "write_pairs",
    "pipeline_config",
    "IterateEval",
    "evaluate_iterate",
    "MethodTrace",
    "run_method",
    "ClassGaps",
    "measure_class",
    "Comparison",
    "compare",
    "format_table",
]

#: the pipeline methods compared (``dualgap.llm.config.METHODS`` minus the label baselines)
METHODS = ("caid", "one-shot")


# ------------------------------------------------------------------------------ sizes
@dataclass(frozen=True)
class SyntheticSize:
    """Everything that sets the size and cost of a synthetic comparison.

    Task: ``language``, ``arch`` (the reference transformer and the pipeline's policy class),
    ``beta``, ``constraints`` (utility scorer names of :data:`~.language.SCORE_NAMES`) with
    relative ``thresholds`` (required improvement over ``pi_ref``), the reference training
    (``reference_samples`` pairs from ``p_data``, ``reference_epochs``, ``reference_batch``,
    ``reference_lr``).

    Pipeline: ``pairs_per_prompt`` training pairs ``(y_0, y_1) ~ pi_ref`` per prompt (the DPO
    pool), ``dual_samples`` = K samples per prompt for the dual statistics (every prompt is
    used), ``iterations`` policy steps, DPO's ``dpo_learning_rate``, ``dpo_epochs`` per
    iteration and ``dpo_batch_size``; ``dual_step`` is the pipeline's ``dual.step_size``
    (``"auto"`` or a number).

    Theory: ``distill_steps`` Adam steps per fit from the class's start (``warm_steps`` when
    warm-started from a neighbouring fit), ``distill_lr``; ``lam_scales`` the multiples of
    ``lam*`` at which ``D_p`` is evaluated (then refined around the best, ``refine`` more
    evaluations); ``sweep`` the architectures of the capacity sweep (the reference one is
    always measured too); ``sweep_init_steps`` the steps that fit ``pi_ref`` into a fresh
    sweep class before anything else.
    """

    name: str
    language: SyntheticLanguage
    arch: TransformerArch
    beta: float = 0.5
    constraints: tuple[str, ...] = ("safety",)
    thresholds: tuple[float, ...] = (0.2,)
    reference_samples: int = 20000
    reference_epochs: int = 6
    reference_batch: int = 250
    reference_lr: float = 1e-2
    pairs_per_prompt: int = 512
    dual_samples: int = 64
    iterations: int = 4
    dpo_learning_rate: float = 1e-3
    dpo_epochs: float = 1.0
    dpo_batch_size: int = 64
    dual_step: float | str = "auto"
    distill_steps: int = 250
    warm_steps: int = 100
    distill_lr: float = 1e-2
    lam_scales: tuple[float, ...] = (0.5, 1.0, 1.5)
    refine: int = 2
    sweep: tuple[TransformerArch, ...] = ()
    sweep_init_steps: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [c for c in self.constraints if c not in SCORE_NAMES or c == "helpfulness"]
        if bad or not self.constraints:
            raise ValueError(f"constraints: need utility scorer names from "
                             f"{SCORE_NAMES[1:]}, got {self.constraints}")
        if len(self.thresholds) != len(self.constraints):
            raise ValueError(f"thresholds: {len(self.thresholds)} thresholds for "
                             f"{len(self.constraints)} constraints")
        if not self.beta > 0:
            raise ValueError(f"beta: must be > 0, got {self.beta!r}")
        for k in ("reference_samples", "reference_epochs", "reference_batch",
                  "pairs_per_prompt", "dual_samples", "iterations", "dpo_batch_size",
                  "distill_steps", "warm_steps", "sweep_init_steps"):
            v = getattr(self, k)
            if int(v) != v or v < 1:
                raise ValueError(f"{k}: must be a positive integer, got {v!r}")
        if int(self.refine) != self.refine or self.refine < 0:
            raise ValueError(f"refine: must be an integer >= 0, got {self.refine!r}")
        if not self.lam_scales or min(self.lam_scales) < 0:
            raise ValueError(f"lam_scales: need scales >= 0, got {self.lam_scales}")
        if isinstance(self.dual_step, str) and self.dual_step != "auto":
            raise ValueError(f"dual_step: 'auto' or a number, got {self.dual_step!r}")

    def describe(self) -> str:
        c = ", ".join(f"{n} >= E_ref + {b:g}"
                      for n, b in zip(self.constraints, self.thresholds, strict=True))
        return (f"size {self.name!r}: {self.language.describe()}; reference GPT-2 "
                f"{self.arch.label()} ({self.arch.heads} heads); beta {self.beta:g}; {c}")


_TINY_LANGUAGE = SyntheticLanguage(topics=("cook", "chem"), words=("recipe", "mix", "tip",
                                                                  "sorry"))

#: the built-in sizes; ``default`` is the CLI's (at most 10 minutes on a laptop CPU),
#: ``tiny`` the one the tests and the notebook run
SIZES: dict[str, SyntheticSize] = {
    "tiny": SyntheticSize(
        name="tiny", language=_TINY_LANGUAGE, arch=TransformerArch(16, 1, 2),
        reference_samples=4000, reference_epochs=10, reference_batch=200, reference_lr=1e-2,
        pairs_per_prompt=1024, dual_samples=64, iterations=2, distill_steps=150, warm_steps=60,
        lam_scales=(0.5, 1.0, 1.5), refine=1,
        sweep=(TransformerArch(2, 1, 1), TransformerArch(4, 1, 1)), sweep_init_steps=150),
    "default": SyntheticSize(
        name="default", language=SyntheticLanguage(), arch=TransformerArch(32, 2, 2),
        sweep=(TransformerArch(4, 1, 1), TransformerArch(8, 1, 2), TransformerArch(16, 1, 2))),
}


def _size(size: str | SyntheticSize) -> SyntheticSize:
    if isinstance(size, SyntheticSize):
        return size
    if size not in SIZES:
        raise ValueError(f"size: unknown size {size!r}; known: {sorted(SIZES)}")
    return SIZES[size]


# ------------------------------------------------------------------------------ the task
def exact_problem(language: SyntheticLanguage, reference: np.ndarray, beta: float,
                  constraints: tuple[str, ...], thresholds: tuple[float, ...]) -> AlignmentProblem:
    """The exact instance: ``r = helpfulness``, ``g_i`` = the named scorers on every
    ``(x, y)``, ``pi_ref = reference`` (``(X, Y)``, e.g. :func:`~.model.exact_policy`),
    uniform ``rho``, relative constraints ``E_pi g_i - E_ref g_i >= b_i``."""
    g = np.stack([language.scores(c) for c in constraints])  # size = (m, X, Y)
    ref = np.asarray(reference, dtype=np.float64)
    ref = ref / ref.sum(axis=1, keepdims=True)  # removes float64 rounding (~1e-15) only
    return AlignmentProblem(language.scores("helpfulness"), g, np.asarray(thresholds, float),
                            beta, ref, relative=True, names=tuple(constraints))


@dataclass
class SyntheticTask:
    """The trained reference and the exact problem it defines.

    Attributes:
        size: the :class:`SyntheticSize`.
        model: the reference ``GPT2LMHeadModel`` (float32, eval mode).
        reference_dir: where the model and tokenizer are saved (the pipeline loads them).
        problem: the exact :class:`~dualgap.AlignmentProblem`.
        solution: ``dualgap.solve(problem)``: ``P*``, ``lam*``, ``pi*``.
        train_report: the reference training (with the exact ``E_x KL(p_data || pi_ref)``).
        max_row_error: ``max_x |sum_y pi_ref(y|x) - 1|`` of the enumerated probabilities
            before any normalization.
        empty_mass: ``max_x pi_ref(empty response | x)`` (the pool of DPO pairs excludes the
            empty response, which the data's schema does not allow).
    """

    size: SyntheticSize
    model: Any = field(repr=False)
    reference_dir: Path
    problem: AlignmentProblem
    solution: DualSolution = field(repr=False)
    train_report: TrainReport
    max_row_error: float
    empty_mass: float

    @property
    def language(self) -> SyntheticLanguage:
        return self.size.language


def _signature(size: SyntheticSize) -> dict:
    keys = ("language", "arch", "reference_samples", "reference_epochs", "reference_batch",
            "reference_lr", "seed")
    return json.loads(json.dumps({k: asdict(size)[k] for k in keys}, default=str))


def build_task(size: str | SyntheticSize = "default", directory: str | Path = "synthetic",
               progress: bool = True) -> SyntheticTask:
    """Train (or reload, when ``directory/reference`` holds a model trained with the same
    settings) the reference transformer and build the exact problem."""
    import torch
    from transformers import GPT2LMHeadModel

    from .model import save_model, train_reference

    sz = _size(size)
    directory = Path(directory)
    ref_dir = directory / "reference"
    sig_path = ref_dir / "synthetic_reference.json"
    sig = _signature(sz)
    lang = sz.language
    if sig_path.exists() and json.loads(sig_path.read_text()).get("signature") == sig:
        saved = json.loads(sig_path.read_text())
        model = GPT2LMHeadModel.from_pretrained(ref_dir, dtype=torch.float32).eval()
        report = TrainReport(**saved["train_report"])
    else:
        model, report = train_reference(lang, sz.arch, sz.reference_samples,
                                        sz.reference_epochs, sz.reference_batch,
                                        sz.reference_lr, sz.seed, progress)
        save_model(model, lang, ref_dir)
        sig_path.write_text(json.dumps({"signature": sig, "train_report": report.to_dict()},
                                       indent=1))
    pi_ref = exact_policy(model, lang)
    row_err = float(np.abs(pi_ref.sum(axis=1) - 1.0).max())
    problem = exact_problem(lang, pi_ref, sz.beta, sz.constraints, sz.thresholds)
    return SyntheticTask(sz, model, ref_dir, problem, solve(problem), report, row_err,
                         float(pi_ref[:, 0].max()))


# ------------------------------------------------------------------------------ pipeline
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


def pipeline_config(task: SyntheticTask, method: str, pairs_path: str | Path):
    """The :class:`dualgap.llm.config.RunConfig` of a pipeline run on the task.

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
        "method": method, "seed": sz.seed, "iterations": sz.iterations, "beta": sz.beta,
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
                  "gradient_checkpointing": False, "logging_steps": 1000},
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
    """

    method: str
    directory: Path
    iterates: list[IterateEval]
    one_shot_lam: np.ndarray
    step_size: float
    timing: dict
    reference_estimate: np.ndarray
    thetas: list = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return {"method": self.method, "directory": str(self.directory),
                "iterates": [it.to_dict() for it in self.iterates],
                "one_shot_lam": self.one_shot_lam.tolist(), "step_size": self.step_size,
                "timing": self.timing, "reference_estimate": self.reference_estimate.tolist()}


def run_method(task: SyntheticTask, method: str, directory: str | Path,
               pairs_path: str | Path | None = None, progress: bool = True) -> MethodTrace:
    """Run the pipeline's ``method`` on the task in ``directory`` (resumed if it holds an
    unfinished run, reused if finished) and evaluate every iterate exactly."""
    import torch
    from transformers import AutoModelForCausalLM

    from ..run import lam_trajectory, read_jsonl, resume, train

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
        train(pipeline_config(task, method, pairs_path), directory, progress=progress)
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
    iterates, thetas = [], []
    for t in range(lams.shape[0]):
        model = AutoModelForCausalLM.from_pretrained(directory / "checkpoints" / f"iter_{t}",
                                                     dtype=torch.float32)
        pi_t = exact_policy(model, task.language)
        pi_t = pi_t / pi_t.sum(axis=1, keepdims=True)
        iterates.append(evaluate_iterate(task, pi_t, lams[t], t, est.get(t)))
        thetas.append(pc.params_of(model))
    return MethodTrace(method, directory, iterates, np.asarray(st["one_shot_lam"], float),
                       float(st["step_size"]), timing, np.asarray(st["E_ref_g"], float), thetas)


# ------------------------------------------------------------------------------ theory
@dataclass
class ClassGaps:
    """The theory measured for one transformer class (see the module docstring for sides).

    Attributes:
        arch, num_params: the class.
        reference_fit: ``nu`` of the class's start against ``pi_ref`` (0 for the reference
            architecture, whose start is ``pi_ref`` itself).
        nu, nu_1, nu_kl: the class's gap over the targets; ``per_target``: label -> ``nu``.
        lams: every ``lam`` evaluated, ``(k, m)``; ``dual``: ``D(lam_k)`` exact;
            ``dual_p``: ``D_p(lam_k)`` lower estimates (max over all cuts).
        lam_p, dual_p_star: ``lam*_p`` and ``D*_p`` (point estimates, see the module
            docstring);
            ``dual_p_lower``: certified lower bound on ``D*_p`` (``nan`` if not certified).
        primal_p: ``P*_p`` lower estimate (``-inf`` if no feasible theta was found);
            ``margin``: the largest ``min_i E h_i`` of a theta found.
        lam_nu: ``lam*_nu`` (``None`` when ``E h >= M nu`` is infeasible).
        mu: ``mu*_D``; ``rows``: the checked statements (:class:`dualgap.theory.GapRow`).
    """

    arch: TransformerArch
    num_params: int
    reference_fit: float
    nu: float
    nu_1: float
    nu_kl: float
    per_target: dict[str, float]
    lams: np.ndarray
    dual: np.ndarray
    dual_p: np.ndarray
    lam_p: np.ndarray
    dual_p_star: float
    dual_p_lower: float
    primal_p: float
    margin: float
    lam_nu: np.ndarray | None
    mu: float
    rows: list[GapRow] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        out = {}
        for k, v in self.__dict__.items():
            if k == "rows":
                out[k] = [r.to_dict() for r in v]
            elif isinstance(v, np.ndarray):
                out[k] = v.tolist()
            elif isinstance(v, TransformerArch):
                out[k] = asdict(v)
            elif isinstance(v, float) and not math.isfinite(v):
                out[k] = str(v)
            else:
                out[k] = v
        return out



def _cut_min_1d(a: np.ndarray, s: np.ndarray, radius: float) -> tuple[float, float]:
    """``min_{0 <= lam <= radius} max_k a_k + s_k lam`` (m = 1) and its argmin: the minimum
    of a convex piecewise-linear function is at an end or where two pieces cross."""
    cands = [0.0, radius]
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            if s[i] != s[j]:
                z = (a[j] - a[i]) / (s[i] - s[j])
                if 0.0 <= z <= radius:
                    cands.append(float(z))
    z = np.array(cands)
    vals = (a[None, :] + np.outer(z, s)).max(axis=1)
    k = int(np.argmin(vals))
    return float(vals[k]), float(z[k])


def measure_class(task: SyntheticTask, arch: TransformerArch | None = None,
                  extra_thetas: list | None = None, progress: bool = True,
                  seed: int | None = None) -> ClassGaps:
    """``nu``, ``D_p``, ``lam*_p``, ``D*_p``, ``P*_p`` and the bounds for one class.

    The class is :class:`~.model.TransformerPolicy` of ``arch`` (default: the reference's,
    started at ``pi_ref``; another architecture starts from its best fit of ``pi_ref``, a
    forward-KL distillation of ``sweep_init_steps`` steps from a random initialization).

    * ``D_p(lam)`` at ``lam = s lam*`` for ``s`` in ``size.lam_scales``: the Lagrangian is
      maximized by a reverse-KL fit to ``pi_lam`` (``L(pi_theta, lam) = D(lam) - beta E_rho
      KL(pi_theta || pi_lam)``), warm-started from the nearest fit; then (m = 1) ``refine``
      regula falsi evaluations for the zero of the maximizers' slack (:func:`_secant_root`),
      which estimates ``lam*_p``; for m > 1 the evaluated ``lam`` with the smallest ``D_p``
      estimate stands for ``lam*_p``.
    * ``nu``: every fit is a witness for its target ``pi_lam``; at ``lam*`` and ``lam*_p`` a
      forward-KL distillation (the usual one) is added; the per-target ``nu`` is the smallest
      witness's, the class's the max over the targets (every evaluated ``lam``, and
      ``lam*_nu``, recomputed once if its target raises ``nu``).
    * ``extra_thetas`` (e.g. the pipeline's iterates, same architecture only) add cuts and
      primal candidates.
    * Rows: Lemma 3 at every evaluated ``lam``, Theorem 1 (upper, and weak duality with the
      certified lower bound), Theorem 2 (upper, lower), Lemma 4, with the bounds of
      :mod:`dualgap.theory` and the class's ``nu``.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    sz, pb, sol, lang = task.size, task.problem, task.solution, task.language
    m = pb.num_constraints
    seed = sz.seed if seed is None else int(seed)
    arch = sz.arch if arch is None else arch
    fit_kw = dict(learning_rate=sz.distill_lr)
    if arch == sz.arch:
        pc = TransformerPolicy(pb, lang, task.model)
        ref_fit = 0.0
    else:
        pc0 = TransformerPolicy(pb, lang, build_model(lang, arch, seed))
        f0 = pc0.fit(pb.reference, objective="kl", steps=sz.sweep_init_steps, **fit_kw)
        pc = TransformerPolicy(pb, lang, pc0.to_model(f0.theta))
        ref_fit = f0.nu
    cuts: list[tuple[np.ndarray, float, np.ndarray]] = []  # (theta, J, s)
    witness: dict[str, tuple[float, float, float]] = {}  # label -> (nu, nu_1, nu_kl)
    evaluated: list[np.ndarray] = []
    eval_labels: list[str] = []
    slack_of: dict[tuple, np.ndarray] = {}  # lam -> slack of its Lagrangian maximizer found
    warm: dict[tuple, Any] = {}

    def add_cut(theta: Any, policy: np.ndarray) -> None:
        cuts.append((theta, objective(pb, policy), constraint_slack(pb, policy)))

    for th in extra_thetas or []:
        if th.shape == (pc.num_params,):
            add_cut(th, pc.policy(th))

    def nearest_theta(lam: np.ndarray):
        if not warm:
            return None, sz.distill_steps
        key = min(warm, key=lambda k: float(np.abs(np.asarray(k) - lam).sum()))
        return warm[key], sz.warm_steps

    def witness_label(lam: np.ndarray) -> str:
        return "lam = " + np.array2string(lam, precision=4)

    def add_witness(label: str, fit: Any) -> None:
        if label not in witness or fit.nu < witness[label][0]:
            witness[label] = (fit.nu, fit.nu_1, fit.nu_kl)

    bar = tqdm(desc=f"theory ({arch.label()})", disable=not progress, leave=False)

    def evaluate(lam: np.ndarray, forward: bool = False, label: str | None = None) -> None:
        lam = np.maximum(np.asarray(lam, float).reshape(-1), 0.0)
        target = lagrangian_policy(pb, lam)
        theta0, steps = nearest_theta(lam)
        rev = pc.fit(target, theta0=theta0, objective="reverse_kl", steps=steps, **fit_kw)
        add_cut(rev.theta, rev.policy)
        slack_of[tuple(lam.tolist())] = cuts[-1][2]
        warm[tuple(lam.tolist())] = rev.theta
        lab = label or witness_label(lam)
        evaluated.append(lam)
        eval_labels.append(lab)
        add_witness(lab, rev)
        if forward:
            fwd = pc.fit(target, theta0=rev.theta, objective="kl", steps=sz.warm_steps,
                         **fit_kw)
            add_cut(fwd.theta, fwd.policy)
            add_witness(lab, fwd)
        bar.update(1)

    def dual_p_at(lam: np.ndarray) -> float:
        return max(J + float(lam @ s) for _, J, s in cuts)

    for s_ in sorted(sz.lam_scales):
        lab = "lam*" if s_ == 1.0 else f"{s_:g} lam*"
        evaluate(s_ * sol.lam, forward=(s_ == 1.0), label=lab)
    if m == 1:
        lam_p = _secant_root(evaluate, slack_of, evaluated, int(sz.refine))
    else:  # no root finding in several dimensions: the best evaluated lam
        dp = np.array([dual_p_at(l_) for l_ in evaluated])
        lam_p = evaluated[int(np.argmin(dp))].copy()
    if not np.allclose(lam_p, sol.lam):  # a forward distillation at lam*_p too
        lab = next(eval_labels[k] for k, v in enumerate(evaluated) if np.array_equal(v, lam_p))
        fwd = pc.fit(lagrangian_policy(pb, lam_p), theta0=warm[tuple(lam_p.tolist())],
                     objective="kl", steps=sz.warm_steps, **fit_kw)
        add_cut(fwd.theta, fwd.policy)
        add_witness(lab, fwd)
    nu = max(w[0] for w in witness.values())
    tight = tightened_multiplier(pb, nu)
    if tight.feasible:
        evaluate(tight.lam, label="lam*_nu")
        if witness["lam*_nu"][0] > nu:  # lam*_nu recomputed once with the larger nu
            nu = witness["lam*_nu"][0]
            tight = tightened_multiplier(pb, nu)
    bar.close()
    # everything from the final set of cuts
    lams = np.array(evaluated)  # size = (k, m)
    dp = np.array([dual_p_at(l_) for l_ in lams])
    dual_p_star = float(dp.min())
    a = np.array([J for _, J, _ in cuts])
    S = np.array([s for _, _, s in cuts])  # size = (K, m)
    feasible = S.min(axis=1) >= 0.0
    primal_p = float(a[feasible].max()) if feasible.any() else -math.inf
    margin = float(S.min(axis=1).max())
    lower, certified = math.nan, False
    if m == 1 and margin > 0:
        # lam*_p lies in [0, R]: D_p(lam) >= J_k + lam s_k > D* >= D*_p for lam > R
        radius = min((sol.dual_value - a[i]) / S[i, 0] for i in range(len(a)) if S[i, 0] > 0)
        lower, _ = _cut_min_1d(a, S[:, 0], max(radius, 0.0))
        certified = True
    mu = dual_curvature(pb, sol.lam)
    lam_nu = tight.lam if tight.feasible else None
    nu_1 = max(w[1] for w in witness.values())
    nu_kl = max(w[2] for w in witness.values())
    rows = _class_rows(pb, sol, lams, eval_labels, dp, nu, lam_p, dual_p_star, lower,
                       certified, primal_p, margin, lam_nu, mu)
    return ClassGaps(arch=arch, num_params=pc.num_params, reference_fit=ref_fit, nu=nu,
                     nu_1=nu_1, nu_kl=nu_kl,
                     per_target={k: w[0] for k, w in witness.items()}, lams=lams,
                     dual=np.array([dual_value(pb, l_) for l_ in lams]), dual_p=dp, lam_p=lam_p,
                     dual_p_star=dual_p_star, dual_p_lower=lower, primal_p=primal_p,
                     margin=margin, lam_nu=lam_nu, mu=mu, rows=rows,
                     seconds=time.perf_counter() - t0)


def _secant_root(evaluate: Any, slack_of: dict, evaluated: list, steps: int) -> np.ndarray:
    """``lam*_p`` (m = 1) as the zero of ``lam -> s(theta_lam)``, the slack of the Lagrangian
    maximizer found at ``lam`` (a subgradient of ``D_p``, nondecreasing in ``lam`` for exact
    maximizers): bracket the sign change among the evaluated ``lam`` (halving towards 0 or
    doubling up while there is none, 4 times at most), then ``steps`` regula falsi (Illinois)
    evaluations.  Returns the last evaluated point (``0`` when the slack is >= 0 at 0)."""
    def bracket() -> tuple[float, float, float, float]:
        pts = sorted((float(k[0]), float(v[0])) for k, v in slack_of.items())
        neg = [p for p in pts if p[1] < 0]
        pos = [p for p in pts if p[1] >= 0]
        lo = max(neg) if neg else (math.nan, math.nan)
        hi = min(pos) if pos else (math.nan, math.nan)
        return lo[0], lo[1], hi[0], hi[1]

    for _ in range(4):
        a, fa, b, fb = bracket()
        if math.isnan(a):  # feasible everywhere evaluated: move towards 0
            low = min(float(k[0]) for k in slack_of)
            if low <= 1e-12:
                return np.zeros(1)
            evaluate(np.array([0.0 if low < 1e-3 else low / 2.0]))
        elif math.isnan(b):  # infeasible everywhere evaluated: move up
            evaluate(np.array([2.0 * max(float(k[0]) for k in slack_of) + 1e-3]))
        else:
            break
    a, fa, b, fb = bracket()
    if math.isnan(a) or math.isnan(b):
        return evaluated[-1].copy()
    side = 0
    for _ in range(steps):
        z = b - fb * (b - a) / (fb - fa) if fb != fa else 0.5 * (a + b)
        z = min(max(z, a + 1e-3 * (b - a)), b - 1e-3 * (b - a))
        evaluate(np.array([z]))
        fz = float(slack_of[(z,)][0])
        if fz < 0:
            a, fa = z, fz
            if side == -1:
                fb /= 2.0
            side = -1
        else:
            b, fb = z, fz
            if side == 1:
                fa /= 2.0
            side = 1
    return evaluated[-1].copy() if steps else np.array([b if abs(fb) < abs(fa) else a])


_NU_SIDE = ("nu: an upper estimate per target (a fitted theta is a witness: easier), the max "
            "over finitely many targets (harder)")


def _class_rows(pb: AlignmentProblem, sol: DualSolution, lams: np.ndarray,
                labels: list[str], dp: np.ndarray,
                nu: float, lam_p: np.ndarray, dual_p_star: float, lower: float, certified: bool,
                primal_p: float, margin: float, lam_nu: np.ndarray | None,
                mu: float) -> list[GapRow]:
    rows = []
    for lam, lab, d_p in zip(lams, labels, dp, strict=True):
        gap = dual_value(pb, lam) - d_p
        lo, up = lemma3_bounds(pb, lam, nu)
        rows.append(GapRow(f"Lemma 3 at {lab}",
                           "D(lam) - D_p(lam)", gap, bound=up, lower=lo,
                           holds=bound_holds(gap, up, lo),
                           sides="D exact; D_p lower estimate: harder for the upper bound; "
                                 + _NU_SIDE))
    assumption = theorem1_assumption(pb, nu, margin)
    lo1, up1 = theorem1_bounds(pb, nu, lam_nu)
    if math.isfinite(primal_p):
        d1 = dual_p_star - primal_p
        rows.append(GapRow("Theorem 1 (upper)", "D*_p - P*_p", d1, bound=up1,
                           holds=bound_holds(d1, up1, None) if assumption and lam_nu is not None
                           else None,
                           sides="P*_p lower estimate: harder; D*_p point estimate; " + _NU_SIDE,
                           note="" if assumption else
                           f"assumption fails: Slater margin found {margin:.3g} <= M nu = "
                           f"{pb.score_bound * nu:.3g}"))
        if certified:
            d1l = lower - primal_p
            rows.append(GapRow("Theorem 1 (weak duality)", "D*_p(certified lower) - P*_p", d1l,
                               lower=lo1, holds=bound_holds(d1l, None, lo1),
                               sides="D*_p certified lower bound: harder; P*_p lower "
                                     "estimate: easier"))
    lo2, up2 = theorem2_bounds(pb, nu, lam_p, lam_nu)
    d2 = dual_p_star - sol.primal_value
    rows.append(GapRow("Theorem 2 (upper)", "D*_p - P*", d2, bound=up2,
                       holds=bound_holds(d2, up2, None) if lam_nu is not None else None,
                       sides="P* exact; D*_p point estimate; " + _NU_SIDE,
                       note="" if lam_nu is not None else
                       f"lam*_nu undefined: E h >= M nu = {pb.score_bound * nu:.3g} is "
                       "infeasible"))
    if certified:
        d2l = lower - sol.primal_value
        rows.append(GapRow("Theorem 2 (lower)", "D*_p(certified lower) - P*", d2l, lower=lo2,
                           holds=bound_holds(d2l, None, lo2),
                           sides="D*_p certified lower bound: harder; " + _NU_SIDE))
    dist = float(np.linalg.norm(lam_p - sol.lam))
    b4 = lemma4_bound(pb, nu, lam_p, mu)
    if pb.num_constraints > 1:
        rows.append(GapRow("Lemma 4", "||lam*_p - lam*||_2", dist, bound=b4, holds=None,
                           note="not checked for m > 1: lam*_p is only the best evaluated "
                                "lam, and lam* is among them"))
        return rows
    rows.append(GapRow("Lemma 4", "||lam*_p - lam*||_2", dist, bound=b4,
                       holds=bound_holds(dist, b4, None),
                       sides="lam* and mu*_D exact; lam*_p the zero of the slack of the "
                             "Lagrangian maximizers found (errs either way with the inexact "
                             "inner maximization); " + _NU_SIDE))
    return rows


# ------------------------------------------------------------------------------ comparison
def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return ""
    if isinstance(v, np.ndarray):
        return "[" + ", ".join(f"{float(x):.{digits}g}" for x in v.reshape(-1)) + "]"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "NO"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.{digits}g}"
    return str(v)



@dataclass
class Comparison:
    """The result of :func:`compare`: the exact answer, the pipeline's runs evaluated exactly,
    and the theory per class.  ``str()`` prints the tables; :meth:`to_dict` is JSON-ready."""

    size: SyntheticSize
    task: SyntheticTask = field(repr=False)
    traces: dict[str, MethodTrace]
    classes: list[ClassGaps]
    seconds: dict[str, float]
    figures: list[str] = field(default_factory=list)

    # -------------------------------------------------------------- tables
    def exact_rows(self) -> list[tuple[str, str]]:
        t, pb, sol = self.task, self.task.problem, self.task.solution
        rows = [("quantity", "value"),
                ("P* = J(pi*)", _fmt(sol.primal_value, 6)),
                ("D* = D(lam*)", _fmt(sol.dual_value, 6)),
                ("lam*", _fmt(sol.lam, 6)),
                ("E_ref g (b added: offsets c)", f"{_fmt(pb.reference_utilities)} "
                                                 f"({_fmt(pb.offsets)})"),
                ("slack E h at pi*", _fmt(sol.slack)),
                ("E KL(pi* || pi_ref)",
                 _fmt(float(pb.prompt_weights @ kl_divergence(pb, sol.policy)))),
                ("M, mu*_D", f"{_fmt(pb.score_bound)}, {_fmt(dual_curvature(pb, sol.lam))}"),
                ("E KL(p_data || pi_ref) [trained]", _fmt(t.train_report.kl_data)),
                ("max_x |sum_y pi_ref - 1| [enumeration]", f"{t.max_row_error:.1e}"),
                ("max_x pi_ref(empty | x)", f"{t.empty_mass:.1e}")]
        return rows

    def pipeline_rows(self) -> list[tuple[str, ...]]:
        """One row per (method, iteration): the pipeline's ``lam_t`` and the exact quantities
        of its iterate."""
        sol = self.task.solution
        rows: list[tuple[str, ...]] = [(
            "method", "t", "lam_t", "|lam_t - lam*|", "J(pi_t)", "P* - J(pi_t)",
            "slack (exact)", "slack (pipeline est.)", "KL(pi_t||ref)", "D(lam_t) - L(pi_t)",
            "E|pi_t - pi*|_1")]
        rows.append(("exact", "-", _fmt(sol.lam), "0", _fmt(sol.primal_value), "0",
                     _fmt(sol.slack), "", _fmt(float(self.task.problem.prompt_weights @
                                                     kl_divergence(self.task.problem,
                                                                   sol.policy))), "0", "0"))
        for name, tr in self.traces.items():
            for it in tr.iterates:
                rows.append((name, str(it.iteration), _fmt(it.lam),
                             _fmt(float(np.linalg.norm(it.lam - sol.lam))),
                             _fmt(it.objective), _fmt(sol.primal_value - it.objective),
                             _fmt(it.slack), _fmt(it.slack_estimate), _fmt(it.kl),
                             _fmt(it.lagrangian_gap), _fmt(it.l1_to_optimum)))
        return rows

    def theory_rows(self) -> list[tuple[str, ...]]:
        """One row per class: ``nu`` and the measured gaps beside their bounds."""
        rows: list[tuple[str, ...]] = [(
            "class", "params", "nu", "lam*_p", "D*_p - P*", "bound (Thm 2)", "D*_p - P*_p",
            "bound (Thm 1)", "|lam*_p - lam*|", "bound (Lem 4)", "all hold")]
        for c in self.classes:
            get = {r.statement: r for r in c.rows}
            t1, t2, l4 = (get.get("Theorem 1 (upper)"), get.get("Theorem 2 (upper)"),
                          get.get("Lemma 4"))
            holds = all(r.holds is not False for r in c.rows)
            rows.append((c.arch.label(), str(c.num_params), _fmt(c.nu), _fmt(c.lam_p),
                         _fmt(t2.measured if t2 else None), _fmt(t2.bound if t2 else None),
                         _fmt(t1.measured if t1 else None), _fmt(t1.bound if t1 else None),
                         _fmt(l4.measured if l4 else None), _fmt(l4.bound if l4 else None),
                         _fmt(holds)))
        return rows

    def check_rows(self, index: int = 0) -> list[tuple[str, ...]]:
        """Every statement checked for class ``index`` (default: the reference class)."""
        c = self.classes[index]
        rows: list[tuple[str, ...]] = [("statement", "quantity", "lower", "measured", "bound",
                                        "holds")]
        for r in c.rows:
            rows.append((r.statement, r.quantity, _fmt(r.lower), _fmt(r.measured),
                         _fmt(r.bound), {True: "yes", False: "NO", None: "-"}[r.holds]))
        return rows

    def __str__(self) -> str:
        parts = [self.size.describe(), "", "exact answer (dualgap.solve on the enumerated "
                 "problem)", format_table(self.exact_rows())]
        if self.traces:
            parts += ["", "the llm pipeline's iterates, evaluated exactly",
                      format_table(self.pipeline_rows())]
            for name, tr in self.traces.items():
                parts.append(f"{name}: one-shot lam from {self.size.dual_samples} generated "
                             f"samples x {self.task.language.num_prompts} prompts = "
                             f"{_fmt(tr.one_shot_lam)} (lam* = {_fmt(self.task.solution.lam)}), "
                             f"E_ref g from them {_fmt(tr.reference_estimate)} (exact "
                             f"{_fmt(self.task.problem.reference_utilities)}), dual step size "
                             f"{tr.step_size:.4g}; seconds "
                             + ", ".join(f"{k} {v:.1f}" for k, v in tr.timing.items()))
        if self.classes:
            parts += ["", "theory per transformer class (nu by distillation)",
                      format_table(self.theory_rows()), "",
                      f"statements checked for the reference class "
                      f"{self.classes[0].arch.label()}", format_table(self.check_rows(0)), "",
                      "sides: " + _NU_SIDE + "; D_p lower estimates (max over cuts of the "
                      "thetas found); D*_p the smallest of them (a point estimate); lam*_p the "
                      "zero of the fitted maximizers' slack; P*_p a lower estimate (best "
                      "feasible theta found)"]
        parts += ["", "seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items())]
        if self.figures:
            parts += ["figures: " + ", ".join(self.figures)]
        return "\n".join(parts)

    def to_dict(self) -> dict:
        pb, sol = self.task.problem, self.task.solution
        return {
            "size": self.size.name,
            "describe": self.size.describe(),
            "exact": {"P*": sol.primal_value, "D*": sol.dual_value, "lam*": sol.lam.tolist(),
                      "slack*": sol.slack.tolist(), "M": pb.score_bound,
                      "E_ref_g": pb.reference_utilities.tolist(),
                      "train_report": self.task.train_report.to_dict(),
                      "max_row_error": self.task.max_row_error,
                      "empty_mass": self.task.empty_mass},
            "traces": {k: v.to_dict() for k, v in self.traces.items()},
            "classes": [c.to_dict() for c in self.classes],
            "seconds": self.seconds,
            "figures": self.figures,
        }


def compare(size: str | SyntheticSize = "default", directory: str | Path = "synthetic",
            methods: tuple[str, ...] = METHODS, sweep: bool = True, figures: bool = True,
            progress: bool = True, num_threads: int | None = 1) -> Comparison:
    """Build the task, run the pipeline's ``methods``, measure the theory for the reference
    class (and the ``size.sweep`` classes when ``sweep``), write ``comparison.json`` (and the
    figures) to ``directory``.

    ``num_threads``: torch's intra-op threads for the duration (restored afterwards; ``None``
    leaves them alone).  The models are tiny, so one thread is as fast as several, and on a
    shared CPU several threads are many times slower.
    """
    import torch

    sz = _size(size)
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"methods: unknown method(s) {bad}; known: {METHODS}")
    if num_threads is not None and (int(num_threads) != num_threads or num_threads < 1):
        raise ValueError(f"num_threads: must be a positive integer or None, got {num_threads!r}")
    before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        return _compare(sz, Path(directory), methods, sweep, figures, progress)
    finally:
        torch.set_num_threads(before)


def _compare(sz: SyntheticSize, directory: Path, methods: tuple[str, ...], sweep: bool,
             figures: bool, progress: bool) -> Comparison:
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / "synthetic_size.json"
    here = json.loads(json.dumps(asdict(sz), default=str))
    if stamp.exists() and json.loads(stamp.read_text()) != here:
        raise ValueError(f"output_dir: {str(directory)!r} holds a comparison of another size or "
                         "settings (see synthetic_size.json); use another directory")
    stamp.write_text(json.dumps(here, indent=1))
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    task = build_task(sz, directory, progress)
    seconds["reference"] = time.perf_counter() - t
    traces: dict[str, MethodTrace] = {}
    if methods:
        pairs = write_pairs(task, directory / "pairs.jsonl")
        for meth in methods:
            t = time.perf_counter()
            traces[meth] = run_method(task, meth, directory / "runs" / meth, pairs, progress)
            seconds[meth] = time.perf_counter() - t
    t = time.perf_counter()
    thetas = [th for tr in traces.values() for th in tr.thetas]
    with torch.random.fork_rng():
        classes = [measure_class(task, None, thetas, progress)]
        seconds["theory (reference class)"] = time.perf_counter() - t
        if sweep:
            t = time.perf_counter()
            for arch in sz.sweep:
                classes.append(measure_class(task, arch, None, progress))
            seconds["capacity sweep"] = time.perf_counter() - t
    cmp = Comparison(sz, task, traces, classes, seconds)
    if figures:
        from ..plots.synthetic import plot_capacity_sweep, plot_pipeline_vs_exact

        paths = []
        if traces:
            p = directory / "pipeline_vs_exact.png"
            plot_pipeline_vs_exact(cmp, path=p)
            paths.append(str(p))
        p = directory / "gaps_vs_nu.png"
        plot_capacity_sweep(cmp, path=p)
        paths.append(str(p))
        cmp.figures = paths
    (directory / "comparison.json").write_text(json.dumps(cmp.to_dict(), indent=1,
                                                          default=str))
    return cmp

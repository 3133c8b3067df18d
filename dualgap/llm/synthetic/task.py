"""The synthetic task: the trained reference transformer and the exact problem it defines.

:func:`build_task` trains (or reloads) the reference on samples of ``p_data``, enumerates its
exact ``pi_ref`` and turns the task into an :class:`~dualgap.AlignmentProblem` (reward =
helpfulness, utilities = the chosen scorers, relative thresholds ``b``); the core's
:func:`dualgap.solve` gives ``P*``, ``lam*`` and ``pi* = pi_{lam*}``, exactly.

Imports torch and transformers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...problem import AlignmentProblem
from ...solver import DualSolution, solve
from .config import SyntheticSize, get_size
from .language import SyntheticLanguage
from .model import TrainReport, exact_policy

__all__ = ["exact_problem", "SyntheticTask", "build_task"]


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

    sz = get_size(size)
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

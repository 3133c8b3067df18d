"""The sizes of the synthetic comparison and the transformer shapes (dataclasses; numpy only).

:data:`SIZES` holds the built-in sizes (``tiny``: the tests' and the notebook's; ``default``:
the CLI's), :data:`METHODS` the pipeline methods compared.  The CLI validates its options
against these (imported when the command runs, not when it is registered).
"""

from __future__ import annotations

from dataclasses import dataclass

from .language import SCORE_NAMES, SyntheticLanguage

__all__ = ["TransformerArch", "SyntheticSize", "SIZES", "METHODS", "get_size"]

#: the pipeline methods compared (``dualgap.llm.config.METHODS`` minus the label baselines
#: dpo-helpful / dpo-safe and PeCAID's pecaid / pe-one-shot, compared on this language by
#: :mod:`dualgap.llm.pecaid_synthetic`)
METHODS = ("caid", "one-shot")


@dataclass(frozen=True)
class TransformerArch:
    """A GPT-2 shape: embedding ``width``, ``depth`` blocks, ``heads`` attention heads
    (``width`` divisible by ``heads``; MLP width ``4 * width``)."""

    width: int = 32
    depth: int = 2
    heads: int = 2

    def __post_init__(self) -> None:
        for name in ("width", "depth", "heads"):
            v = getattr(self, name)
            if int(v) != v or v < 1:
                raise ValueError(f"{name}: must be a positive integer, got {v!r}")
        if self.width % self.heads:
            raise ValueError(f"heads: width {self.width} is not divisible by heads {self.heads}")

    def label(self) -> str:
        return f"w{self.width}-d{self.depth}"


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
    iteration and ``dpo_batch_size``, ``dpo_labels`` the pipeline's ``train.labels`` (the
    default size distills: measured best on this language, benchmarks/README.md "Policy
    steps"; its pool is sampled from ``pi_ref``, which ``distill`` assumes), ``dpo_pool`` its
    ``train.pool`` (the default size's is ``onpolicy``: from iteration 1 the distill step's
    responses are samples of ``pi_t``, measured best there too); ``dual_step`` is
    the pipeline's ``dual.step_size`` (``"auto"`` or a number).

    Theory (:func:`dualgap.report.gap_report` on each transformer class, see
    :meth:`report_options`): ``distill_steps`` Adam steps of a Lagrangian maximization from the
    class's start (``warm_steps`` when warm-started from a theta found before; also the steps of
    the forward-KL fits of ``pi_lam*`` and ``pi_lam*_p``), ``distill_lr`` Adam's learning rate;
    ``lam_scales`` the multiples of ``lam*`` where the bundle method for ``D*_p`` starts (each
    also a target of ``nu`` and Lemma 3), then ``refine`` bundle iterations; ``sweep`` the
    architectures of the capacity sweep (the reference one is always measured too);
    ``sweep_init_steps`` the steps that fit ``pi_ref`` into a fresh sweep class before anything
    else.
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
    dpo_labels: str = "sampled"
    dpo_pool: str = "fixed"
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
        from typing import get_args

        from ..config import TrainSettings

        labels = get_args(TrainSettings.model_fields["labels"].annotation)
        if self.dpo_labels not in labels:
            raise ValueError(f"dpo_labels: must be one of {labels}, got {self.dpo_labels!r}")
        pools = get_args(TrainSettings.model_fields["pool"].annotation)
        if self.dpo_pool not in pools or (
                self.dpo_pool == "onpolicy" and self.dpo_labels != "distill"):
            raise ValueError(f"dpo_pool: 'fixed', or 'onpolicy' with dpo_labels 'distill', got "
                             f"{self.dpo_pool!r}")
        if isinstance(self.dual_step, str) and self.dual_step != "auto":
            raise ValueError(f"dual_step: 'auto' or a number, got {self.dual_step!r}")

    def report_options(self) -> dict:
        """The keyword arguments of :func:`dualgap.report.gap_report` for a transformer class:
        the same budget the theory had before it went through the core (the bundle starts at
        ``lam_scales`` x ``lam*`` and takes ``refine`` iterations, with no re-verification, no
        Newton polish and no extra primal search; a search only at ``lam*_nu``, the one target
        the bundle did not evaluate; forward-KL fits only at ``lam*`` and ``lam*_p``)."""
        return {
            "starts": 1, "seed": self.seed, "cvxpy_check": False,
            "grid": tuple(s for s in self.lam_scales if s != 1.0),
            "fit_steps": self.warm_steps, "fit_objective": "kl", "fit_warm": True,
            "fit_at": ("lam*", "lam*_p"), "search": "new",
            "dual_options": {"init_scales": tuple(self.lam_scales), "max_iter": self.refine,
                             "polish_steps": 0, "verify": 0},
            "primal_options": {"newton_steps": 0, "bisections": 0, "penalty_rounds": 0},
        }

    def describe(self) -> str:
        c = ", ".join(f"{n} >= E_ref + {b:g}"
                      for n, b in zip(self.constraints, self.thresholds, strict=True))
        return (f"size {self.name!r}: {self.language.describe()}; reference GPT-2 "
                f"{self.arch.label()} ({self.arch.heads} heads); beta {self.beta:g}; {c}")


_TINY_LANGUAGE = SyntheticLanguage(topics=("cook", "chem"), words=("recipe", "mix", "tip",
                                                                  "sorry"))

#: the built-in sizes; ``default`` is the CLI's (1.5-5 minutes of CPU),
#: ``tiny`` the one the tests and the notebook run
SIZES: dict[str, SyntheticSize] = {
    "tiny": SyntheticSize(
        name="tiny", language=_TINY_LANGUAGE, arch=TransformerArch(16, 1, 2),
        reference_samples=4000, reference_epochs=10, reference_batch=200, reference_lr=1e-2,
        pairs_per_prompt=1024, dual_samples=64, iterations=2, distill_steps=150, warm_steps=60,
        lam_scales=(0.5, 1.0, 1.5), refine=2,
        sweep=(TransformerArch(2, 1, 1), TransformerArch(4, 1, 1)), sweep_init_steps=150),
    "default": SyntheticSize(
        name="default", language=SyntheticLanguage(), arch=TransformerArch(32, 2, 2),
        dpo_labels="distill", dpo_learning_rate=3e-3, dpo_pool="onpolicy",
        sweep=(TransformerArch(4, 1, 1), TransformerArch(8, 1, 2), TransformerArch(16, 1, 2))),
}


def get_size(size: str | SyntheticSize) -> SyntheticSize:
    """``size`` itself, or the built-in size of that name (ValueError naming the known ones)."""
    if isinstance(size, SyntheticSize):
        return size
    if size not in SIZES:
        raise ValueError(f"size: unknown size {size!r}; known: {sorted(SIZES)}")
    return SIZES[size]

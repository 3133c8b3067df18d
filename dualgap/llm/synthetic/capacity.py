"""The theory for one transformer class, from the core's gap report.

:func:`measure_class` builds the class (the reference architecture, or another width/depth for
the capacity sweep) and runs :func:`dualgap.report.gap_report` on it with the size's budget
(:meth:`~.config.SyntheticSize.report_options`): ``nu`` by distillation, ``D_p`` from below,
``lam*_p``, ``D*_p`` (point estimate and certified lower bound), ``P*_p`` and every statement,
decided by the same code as the core's tables.  Every Lagrangian maximization is the class's
own (:meth:`~.model.TransformerPolicy.maximize_lagrangian`: a reverse-KL distillation of
``pi_lam`` by Adam).  How each quantity errs is in the report's rows.

Imports torch and transformers.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ...dual import dual_value
from ...report import GapReport, GapRow, gap_report
from .config import TransformerArch
from .model import TransformerPolicy, build_model
from .task import SyntheticTask

__all__ = ["ClassGaps", "measure_class"]


@dataclass
class ClassGaps:
    """The theory measured for one transformer class (fields read off its :attr:`report`).

    Attributes:
        arch, num_params: the class.
        reference_fit: ``nu`` of the class's start against ``pi_ref`` (0 for the reference
            architecture, whose start is ``pi_ref`` itself).
        nu, nu_1, nu_kl: the class's gap over the targets; ``per_target``: label -> ``nu``.
        lams: every target ``lam``, ``(k, m)``; ``dual``: ``D(lam_k)`` exact;
            ``dual_p``: ``D_p(lam_k)`` lower estimates (max over the searches and every cut).
        lam_p, dual_p_star: ``lam*_p`` and ``D*_p`` (the bundle's point estimates);
            ``dual_p_lower``: the certified lower bound on ``D*_p`` (``nan`` if the box is not
            certified).
        primal_p: ``P*_p`` lower estimate (``-inf`` if no feasible theta was found);
            ``margin``: the largest ``min_i E h_i`` of a theta found.
        lam_nu: ``lam*_nu`` (``None`` when ``E h >= M nu`` is infeasible).
        mu: ``mu*_D``; ``rows``: the checked statements (:class:`dualgap.report.GapRow`).
        report: the full :class:`dualgap.report.GapReport`.
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
    report: GapReport | None = field(default=None, repr=False)

    @property
    def all_hold(self) -> bool:
        """Whether no checked statement fails (inconclusive rows do not fail)."""
        return all(r.holds is not False for r in self.rows)

    def to_dict(self) -> dict:
        out = {}
        for k, v in self.__dict__.items():
            if k == "report":
                out[k] = v.to_dict() if v is not None else None
            elif k == "rows":
                out[k] = [r.to_dict() for r in v]
            elif isinstance(v, TransformerArch):
                out[k] = asdict(v)
            else:
                out[k] = _plain(v)
        return out


def _plain(v):
    """``v`` as JSON-ready values, a non-finite float as its text (``"nan"``, ``"-inf"``), also
    inside arrays, lists and dicts."""
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def measure_class(task: SyntheticTask, arch: TransformerArch | None = None,
                  extra_thetas: list | None = None, progress: bool = True,
                  seed: int | None = None) -> ClassGaps:
    """:func:`dualgap.report.gap_report` for one transformer class, as a :class:`ClassGaps`.

    The class is :class:`~.model.TransformerPolicy` of ``arch`` (default: the reference's,
    started at ``pi_ref``; another architecture starts from its best fit of ``pi_ref``, a
    forward-KL distillation of ``sweep_init_steps`` steps from a random initialization), with
    the size's Adam budget (``distill_steps``, ``warm_steps``, ``distill_lr``).
    ``extra_thetas`` (e.g. the pipeline's iterates; the reference architecture only) add cuts
    and primal candidates.
    """
    t0 = time.perf_counter()
    sz, pb, lang = task.size, task.problem, task.language
    seed = sz.seed if seed is None else int(seed)
    arch = sz.arch if arch is None else arch
    budget = {"learning_rate": sz.distill_lr, "steps": sz.distill_steps,
              "warm_steps": sz.warm_steps}
    if arch == sz.arch:
        pc = TransformerPolicy(pb, lang, task.model, **budget)
        ref_fit = 0.0
    else:
        if extra_thetas:
            raise ValueError(f"extra_thetas: only for the reference architecture "
                             f"{sz.arch.label()}, not {arch.label()}")
        pc0 = TransformerPolicy(pb, lang, build_model(lang, arch, seed), **budget)
        f0 = pc0.fit(pb.reference, objective="kl", steps=sz.sweep_init_steps)
        pc = TransformerPolicy(pb, lang, pc0.to_model(f0.theta), **budget)
        ref_fit = f0.nu
    options = sz.report_options()
    options["seed"] = seed
    rep = gap_report(pb, pc, extra_thetas=list(extra_thetas or []), progress=progress,
                     **options)
    q = rep.quantities
    lams = np.array([t.lam for t in rep.targets])  # size = (k, m)
    lower = float(q["D*_p certified lower bound"]) if q["box certified"] else math.nan
    lam_nu = q["lam*_nu"]
    return ClassGaps(
        arch=arch, num_params=pc.num_params, reference_fit=ref_fit, nu=float(q["nu"]),
        nu_1=float(q["nu_1"]), nu_kl=float(q["nu_KL"]),
        per_target={t.label: t.nu for t in rep.targets}, lams=lams,
        dual=np.array([dual_value(pb, lam) for lam in lams]),
        dual_p=np.array([t.d_p for t in rep.targets]), lam_p=np.asarray(q["lam*_p"]),
        dual_p_star=float(q["D*_p (point estimate)"]), dual_p_lower=lower,
        primal_p=float(q["P*_p (lower estimate)"]) if math.isfinite(
            q["P*_p (lower estimate)"]) else -math.inf,
        margin=float(q["Slater margin found (theta)"]),
        lam_nu=None if np.ndim(lam_nu) == 0 else np.asarray(lam_nu), mu=float(q["mu*_D"]),
        rows=list(rep.rows), seconds=time.perf_counter() - t0, report=rep)

"""The llm pipeline measured against the exact answer and the theory on the synthetic task.

:func:`compare` runs the story, one module per step:

1. :func:`~.task.build_task`: the trained reference and the exact problem (``P*``, ``lam*``,
   ``pi*`` from :func:`dualgap.solve`);
2. :func:`~.pipeline.run_method`: the pipeline's ``caid`` and ``one-shot`` runs, every iterate's
   exact policy set beside ``P*``, ``lam*`` and ``pi*``;
3. :func:`~.capacity.measure_class`: the theory for the reference class and the capacity sweep,
   from the core's :func:`dualgap.report.gap_report` (the same code decides the core's tables).

:class:`Comparison` prints the tables and a summary in the user's terms and writes
``comparison.json``.  Imports torch, transformers and TRL (through the pipeline).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..._format import format_table
from ...dual import kl_divergence
from ...report import NU_SIDE
from ...theory import dual_curvature
from .capacity import ClassGaps, measure_class
from .config import METHODS, SyntheticSize, get_size
from .pipeline import MethodTrace, run_method, write_pairs
from .task import SyntheticTask, build_task

__all__ = ["parallel_pays", "Comparison", "compare", "sweep_in_process", "format_table"]


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
    directory: Path | None = None

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
                             f"{_step(tr.step_size)}; seconds "
                             + ", ".join(f"{k} {v:.1f}" for k, v in tr.timing.items()))
        if self.classes:
            parts += ["", "theory per transformer class (nu by distillation)",
                      format_table(self.theory_rows()), "",
                      f"statements checked for the reference class "
                      f"{self.classes[0].arch.label()}", format_table(self.check_rows(0)), "",
                      "sides (dualgap.report.gap_report, as in the core's tables): " + NU_SIDE
                      + "; D_p lower estimates (max over the searches and every cut of the "
                      "thetas found); D*_p and lam*_p the bundle method's point estimates "
                      "(dualgap.gaps.parametrized_dual); P*_p a lower estimate (best feasible "
                      "theta found)"]
        parts += ["", "seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items())]
        parts += ["", self.summary()]
        return "\n".join(parts)

    def summary(self) -> str:
        """The outcome in the user's terms: for each method's last iterate, each constraint
        met or missed (its exact improvement over ``pi_ref`` against the threshold ``b``),
        ``lam`` against ``lam*``; whether the theory's statements hold; where the files went."""
        pb, sol = self.task.problem, self.task.solution
        lines = ["summary"]
        for name, tr in self.traces.items():
            last = tr.iterates[-1]
            for i, c in enumerate(pb.names):
                b = float(self.size.thresholds[i])
                got = float(last.slack[i]) + b  # E g - E_ref g at the last iterate (exact)
                verdict = ("met" if last.slack[i] >= 0 else "MISSED") + \
                    f" by {abs(float(last.slack[i])):.3g}"
                lines.append(f"  {name}: {c} improvement over pi_ref {got:.4g} (required "
                             f">= {b:g}): {verdict}; lam {_fmt(last.lam)} vs lam* "
                             f"{_fmt(sol.lam)} (off by {np.linalg.norm(last.lam - sol.lam):.3g})"
                             f"; reward J {last.objective:.4g} vs P* {sol.primal_value:.4g}")
        if self.classes:
            ok = [c.arch.label() for c in self.classes if c.all_hold]
            bad = [c.arch.label() for c in self.classes if not c.all_hold]
            incon = sum(r.holds is None and r.bound is not None for c in self.classes
                        for r in c.rows)
            lines.append(f"  theory: every checked statement holds for {len(ok)} of "
                         f"{len(self.classes)} classes" + (f"; FAILS for {', '.join(bad)}"
                                                         if bad else "")
                         + (f" ({incon} rows inconclusive or unchecked, see their notes)"
                            if incon else ""))
        if self.directory is not None:
            lines.append(f"  files: {self.directory / 'comparison.json'}"
                         + "".join(f", {f}" for f in self.figures)
                         + f"; pipeline runs under {self.directory / 'runs'}")
        return "\n".join(lines)

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
            progress: bool = True, num_threads: int | None = 1,
            parallel: bool | str = "auto") -> Comparison:
    """Build the task, run the pipeline's ``methods``, measure the theory for the reference
    class (and the ``size.sweep`` classes when ``sweep``), write ``comparison.json`` (and the
    figures) to ``directory``.

    ``num_threads``: torch's intra-op threads for the duration (restored afterwards; ``None``
    leaves them alone).  The models are tiny, so one thread is as fast as several, and on a
    shared CPU several threads are many times slower.  ``parallel``: measure the sweep classes
    in a second process (:func:`sweep_in_process`; the same numbers, checked on the tiny size:
    each class's report depends on the task and its seed only) while this one runs the
    pipeline and the reference class.  ``"auto"`` (the default, :func:`parallel_pays`): only
    where a second process has a core to itself -- this process may use 2+ cores and the
    one-minute load average leaves one of them idle; on a shared, loaded 2-core machine the
    second process was slower (tiny size, no pipeline: 73 s against 59 s serial, its imports
    and the reload included).  Which way it went is ``Comparison.seconds``' "capacity sweep
    (second process)" or "capacity sweep".
    """
    import torch

    sz = get_size(size)
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"methods: unknown method(s) {bad}; known: {METHODS}")
    if num_threads is not None and (int(num_threads) != num_threads or num_threads < 1):
        raise ValueError(f"num_threads: must be a positive integer or None, got {num_threads!r}")
    if parallel not in (True, False, "auto"):
        raise ValueError(f"parallel: must be True, False or 'auto', got {parallel!r}")
    if parallel == "auto":
        parallel = bool(sweep and sz.sweep) and parallel_pays(num_threads or 1)
    before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        return _compare(sz, Path(directory), methods, sweep, figures, progress, bool(parallel),
                        1 if num_threads is None else int(num_threads))
    finally:
        torch.set_num_threads(before)


def parallel_pays(num_threads: int = 1) -> bool:
    """Whether :func:`compare`'s ``parallel="auto"`` runs the sweep in a second process: this
    process may use at least ``2 num_threads`` cores (``os.sched_getaffinity``) and the
    one-minute load average (which this process's own start adds to) is below ``cores -
    num_threads``: about ``num_threads`` cores idle beside this one."""
    from ...threads import usable_cores

    cores = usable_cores()
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - no load average on this platform
        return False
    return cores >= 2 * num_threads and load < cores - num_threads


def sweep_in_process(size: SyntheticSize, directory: str, num_threads: int = 1
                     ) -> tuple[list[ClassGaps], float]:
    """The capacity sweep's classes (:func:`~.capacity.measure_class` of each ``size.sweep``
    architecture) as the second process of :func:`compare` runs them: the task reloaded from
    ``directory`` (the reference :func:`~.task.build_task` saved there), no progress bars;
    returns the classes and the seconds they took."""
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(int(num_threads))
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # the reload's weight-loading bar
    task = build_task(size, directory, progress=False)
    t = time.perf_counter()
    with torch.random.fork_rng():
        classes = [measure_class(task, arch, None, False) for arch in size.sweep]
    return classes, time.perf_counter() - t


def _sweep_job(job: str, result: str) -> None:
    """The second process's entry point: :func:`sweep_in_process` on the pickled arguments in
    ``job``, its result pickled to ``result`` (written whole, then renamed)."""
    import pickle

    with open(job, "rb") as f:
        args = pickle.load(f)
    out = sweep_in_process(*args)
    for c in out[0]:  # the instance holds a weak reference (its cached normalization); the
        if c.report is not None:  # caller puts its own, identical, task.problem back
            c.report.instance = None
    tmp = Path(result).with_suffix(".part")
    with open(tmp, "wb") as f:
        pickle.dump(out, f)
    tmp.replace(result)


class _SweepProcess:
    """:func:`sweep_in_process` in a fresh Python (``python -c``, so no ``__main__`` guard is
    needed in the caller's script) importing this same ``dualgap``; files in ``directory``
    (``sweep_job.pkl``, ``sweep_result.pkl``, its stderr in ``sweep.log``)."""

    def __init__(self, size: SyntheticSize, directory: Path, num_threads: int) -> None:
        import pickle
        import subprocess
        import sys

        import dualgap

        self.job, self.result = directory / "sweep_job.pkl", directory / "sweep_result.pkl"
        self.log = directory / "sweep.log"
        self.result.unlink(missing_ok=True)
        with open(self.job, "wb") as f:
            pickle.dump((size, str(directory), int(num_threads)), f)
        root = str(Path(dualgap.__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        code = ("import sys; from dualgap.llm.synthetic.compare import _sweep_job; "
                "_sweep_job(sys.argv[1], sys.argv[2])")
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", code, str(self.job),
                                          str(self.result)], env=env,
                                         stdout=subprocess.DEVNULL, stderr=log)

    def result_(self) -> tuple[list[ClassGaps], float]:
        import pickle

        code = self.proc.wait()
        if code != 0 or not self.result.exists():
            tail = self.log.read_text()[-2000:]
            raise RuntimeError(f"the capacity sweep's process failed (exit {code}); the end "
                               f"of {self.log}:\n{tail}")
        with open(self.result, "rb") as f:
            out = pickle.load(f)
        self.job.unlink(missing_ok=True)
        self.result.unlink(missing_ok=True)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _compare(sz: SyntheticSize, directory: Path, methods: tuple[str, ...], sweep: bool,
             figures: bool, progress: bool, parallel: bool = False,
             num_threads: int = 1) -> Comparison:
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
    second = None
    if sweep and sz.sweep and parallel:  # the sweep needs only the task: start it now
        second = _SweepProcess(sz, directory, num_threads)
    try:
        traces: dict[str, MethodTrace] = {}
        if methods:
            pairs = write_pairs(task, directory / "pairs.jsonl")
            for meth in methods:
                t = time.perf_counter()
                traces[meth] = run_method(task, meth, directory / "runs" / meth, pairs,
                                          progress)
                seconds[meth] = time.perf_counter() - t
        t = time.perf_counter()
        thetas = [th for tr in traces.values() for th in tr.thetas]
        with torch.random.fork_rng():
            classes = [measure_class(task, None, thetas, progress)]
            seconds["theory (reference class)"] = time.perf_counter() - t
            if second is not None:
                t = time.perf_counter()
                swept, spent = second.result_()
                for c in swept:
                    if c.report is not None:
                        c.report.instance = task.problem
                classes += swept
                seconds["capacity sweep (second process)"] = spent
                seconds["waiting for the sweep"] = time.perf_counter() - t
            elif sweep:
                t = time.perf_counter()
                for arch in sz.sweep:
                    classes.append(measure_class(task, arch, None, progress))
                seconds["capacity sweep"] = time.perf_counter() - t
    finally:
        if second is not None:
            second.stop()
    cmp = Comparison(sz, task, traces, classes, seconds, directory=directory)
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


def _step(step_size: float | str) -> str:
    """A run's dual step size as printed: a number, or ``auto`` (dualgap.dual_steps)."""
    return step_size if isinstance(step_size, str) else f"{step_size:.4g}"

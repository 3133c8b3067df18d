"""Where the parametrized side spends its time: ``gap_report`` per class and per stage (issue 15).

Usage::

    python benchmarks/theory_speed.py                      # tabular, loglinear; before and after
    python benchmarks/theory_speed.py --classes mlp        # the MLP report (minutes per side)
    python benchmarks/theory_speed.py --before none        # this tree only

Each measurement runs in a subprocess (``--worker CLASS``) that imports whichever ``dualgap`` is
first on ``PYTHONPATH``: this tree ("after") and a ``git archive`` of ``--before`` (default
:data:`BEFORE_REV`, main when issue 15's parametrized work began) ("before"), so before and
after are measured in one run on the same machine state.  Stages (exclusive wall time: a stage
nested in another is not counted twice):

* ``exact``: ``solve`` and the cvxpy cross-check of ``P*``;
* ``bundle``: :func:`dualgap.gaps.parametrized_dual` (``D*_p``, every Lagrangian search inside);
* ``primal``: :func:`dualgap.gaps.parametrized_primal` (the primal witness);
* ``fits``: :meth:`PolicyClass.fit` at every target (the fits for ``nu``);
* ``lagrangian_max``: the report's own searches at the targets (``lagrangian_max`` and, where
  it exists, ``lagrangian_max_batch``);
* ``other``: the rest (refining cuts, measuring witnesses, the rows).

It also counts the iterations of every Lagrangian search (``search iterations``: the MLP's
searches never converge, so their number depends on the bundle's path, which rounding changes;
the time per iteration is the comparable figure).

Writes ``benchmarks/results/theory_speed.json`` and the table between the ``theory_speed``
markers of ``benchmarks/README.md``.

``--synthetic`` (its own section below, :func:`synthetic_main`) profiles ``dualgap llm
synthetic`` per stage instead and writes ``benchmarks/results/synthetic_speed.json`` and the
table between the ``synthetic_speed`` markers::

    python benchmarks/theory_speed.py --synthetic                  # default size, before/after
    python benchmarks/theory_speed.py --synthetic --size tiny --before none
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: main before the numpy MLP pullback (session 4; session 3's "before" was 8fbe260, session 2's
#: 7d8a64b)
BEFORE_REV = "eaececa"
CLASSES = ("tabular", "loglinear", "mlp")
STAGES = ("exact", "bundle", "primal", "fits", "lagrangian_max", "other")


# ------------------------------------------------------------------------- worker
def worker(policy: str) -> dict:
    """Time one ``gap_report`` on the default instance (``dualgap report``'s class), by stage."""
    import dualgap.gaps as gaps
    import dualgap.reference as reference
    import dualgap.solver as solver
    from dualgap.commands.report import DEFAULT_NOISE, build_policy_class
    from dualgap.instances import demo_problem
    from dualgap.policies import PolicyClass
    from dualgap.report import gap_report

    spent = dict.fromkeys(STAGES, 0.0)
    stack: list[list] = []  # [stage, start, time of children]

    def timed(stage, fn):
        def wrapper(*args, **kwargs):
            if stack and stack[-1][0] == stage:  # nested call of the same stage
                return fn(*args, **kwargs)
            stack.append([stage, time.perf_counter(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                name, t0, child = stack.pop()
                dt = time.perf_counter() - t0
                spent[name] += dt - child
                if stack:
                    stack[-1][2] += dt
        return wrapper

    gaps.parametrized_dual = timed("bundle", gaps.parametrized_dual)
    gaps.parametrized_primal = timed("primal", gaps.parametrized_primal)
    gaps.lagrangian_max = timed("lagrangian_max", gaps.lagrangian_max)
    if hasattr(gaps, "lagrangian_max_batch"):  # the report's searches, batched
        gaps.lagrangian_max_batch = timed("lagrangian_max", gaps.lagrangian_max_batch)
    reference.solve_primal_cvxpy = timed("exact", reference.solve_primal_cvxpy)
    solver.solve = timed("exact", solver.solve)
    import dualgap.policies.base as base
    import dualgap.policies.classes  # noqa: F401  (the subclasses whose fit is timed)

    searched = [0]  # iterations of every Lagrangian search (the work, whatever the path)
    search_batch = base.search_batch

    def counted(*args, **kwargs):
        runs = search_batch(*args, **kwargs)
        searched[0] += sum(int(n) for _, n in runs)
        return runs

    base.search_batch = counted

    for cls in [PolicyClass, *PolicyClass.__subclasses__()]:
        if "fit" in cls.__dict__:
            cls.fit = timed("fits", cls.__dict__["fit"])
    problem = demo_problem()
    cls = build_policy_class(problem, policy, DEFAULT_NOISE)
    import cvxpy  # noqa: F401

    import dualgap.reference  # noqa: F401  (cvxpy's import is not the report's work)

    t0, c0 = time.perf_counter(), time.process_time()
    report = gap_report(problem, cls)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    spent["other"] = total - sum(v for k, v in spent.items() if k != "other")
    # the rows without their witnesses (a tabular theta has 8698 entries per row)
    rows = {f"{r.statement} | {r.quantity}": {k: v for k, v in r.to_dict().items()
                                               if k != "witness"} for r in report.rows}
    return {"policy": policy, "num_params": cls.num_params, "total_s": total, "cpu_s": cpu,
            "search_iterations": searched[0], "stages": spent,
            "all_hold": bool(report.all_hold), "rows": rows}


# ------------------------------------------------------------------------- driver
def archive_tree(rev: str, dest: Path) -> Path:
    """A ``git archive`` of ``rev`` extracted into ``dest`` (created); returns ``dest``."""
    dest.mkdir()
    arch = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True,
                          check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=arch, check=True)
    return dest


def run_worker(tree: Path, policy: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    out = subprocess.run([sys.executable, str(HERE / "theory_speed.py"), "--worker", policy],
                         env=env, capture_output=True, text=True, check=False, cwd=tree)
    if out.returncode != 0:
        raise RuntimeError(f"worker {policy} in {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare_rows(before: dict, after: dict) -> dict:
    """Whether both reports have the same rows with the same verdicts, and the largest
    relative change of a measured value, ``|a - b| / max(1, |b|)``."""
    same = sorted(before) == sorted(after)
    verdicts = same and all(before[k]["holds"] == after[k]["holds"] for k in before)
    change = 0.0
    for k in set(before) & set(after):
        b, a = before[k]["measured"], after[k]["measured"]
        if isinstance(b, (int, float)) and isinstance(a, (int, float)):
            change = max(change, abs(a - b) / max(1.0, abs(b)))
    return {"same_rows": same, "same_verdicts": verdicts, "max_relative_change": change}


def measured_sides(results: dict, order: tuple[str, ...] = ("before", "after")):
    """``(name, side, result, its sides)`` for every measured side, in ``order``."""
    for name, sides in results.items():
        for side in order:
            if sides.get(side) is not None:
                yield name, side, sides[side], sides


def table(results: dict) -> str:
    lines = ["| class | tree | total [s] | CPU [s] | search iterations | " + " | ".join(STAGES)
             + " | after / before (wall, CPU) |",
             "|---|---|---|---|---|" + "---|" * len(STAGES) + "---|"]
    for policy, side, r, sides in measured_sides(results):
        ratio = ""
        before = sides.get("before")
        if side == "after" and before:
            ratio = f"{r['total_s'] / before['total_s']:.2f}x"
            if "cpu_s" in r and "cpu_s" in before:
                ratio += f", {r['cpu_s'] / before['cpu_s']:.2f}x"
        if side == "after" and "rows_compared" in sides:
            c = sides["rows_compared"]
            ratio += (f" (same rows: {c['same_rows']}, same verdicts: {c['same_verdicts']},"
                      f" max rel. change {c['max_relative_change']:.1e})")
        cpu = f"{r['cpu_s']:.2f}" if "cpu_s" in r else ""
        its = r.get("search_iterations", "")
        lines.append(f"| {policy} ({r['num_params']} params) | {side} | {r['total_s']:.2f} | "
                     f"{cpu} | {its} | "
                     + " | ".join(f"{r['stages'][s]:.2f}" for s in STAGES)
                     + f" | {ratio} |")
    return "\n".join(lines)


def write_readme(text: str, marker: str = "theory_speed") -> None:
    """Put ``text`` between the ``<!-- MARKER:begin/end -->`` lines of benchmarks/README.md."""
    path = HERE / "README.md"
    body = path.read_text()
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    if begin not in body:
        raise RuntimeError(f"{path}: no {begin} marker")
    head, rest = body.split(begin, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(head + begin + "\n" + text + "\n" + end + tail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=CLASSES, help=argparse.SUPPRESS)
    ap.add_argument("--classes", nargs="+", choices=CLASSES, default=["tabular", "loglinear"])
    ap.add_argument("--before", default=BEFORE_REV,
                    help="git revision timed as 'before' ('none': skip; default %(default)s)")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    from tqdm import tqdm

    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"after": ROOT}
        if args.before != "none":
            trees = {"before": archive_tree(args.before, Path(tmp) / "before"), "after": ROOT}
        jobs = [(p, s) for p in args.classes for s in trees]
        for policy, side in tqdm(jobs, desc="theory_speed", unit="report"):
            results.setdefault(policy, {})[side] = run_worker(trees[side], policy)
    for sides in results.values():
        if "before" in sides:
            sides["rows_compared"] = compare_rows(sides["before"]["rows"], sides["after"]["rows"])
    out = HERE / "results" / "theory_speed.json"
    old = json.loads(out.read_text()) if out.exists() else {}
    old.update(results)
    out.write_text(json.dumps(old, indent=1) + "\n")
    write_readme(table(old))
    print(table(old))


# ========================================================= the synthetic experiment (--synthetic)
#: main when this session's synthetic speed work began (issue 15; session 3: 8fbe260)
SYNTHETIC_BEFORE_REV = "78a30e1"
#: the stages of a synthetic comparison, in the order they run (exclusive seconds)
SYNTHETIC_STAGES = ("reference training", "exact problem", "DPO pool", "pipeline", "evaluation",
                    "theory: bundle", "theory: primal", "theory: fits", "theory: searches",
                    "theory: lam*_p check", "theory: other", "rest")


#: the synthetic table's rows per size: the "before" tree, this tree, this tree with the sweep in
#: a second process (``--parallel``)
PARALLEL_SIDE = "after, second process"
SYNTHETIC_SIDES = ("before", "after", PARALLEL_SIDE)


class _StageClock:
    """Exclusive wall and CPU seconds per stage of wrapped functions (a nested call of another
    stage is charged to that stage only)."""

    def __init__(self) -> None:
        self.wall = dict.fromkeys(SYNTHETIC_STAGES, 0.0)
        self.cpu = dict.fromkeys(SYNTHETIC_STAGES, 0.0)
        self._open: list[list] = []  # [stage, wall0, cpu0, child wall, child cpu]

    def wrap(self, stage: str, fn):
        def timed(*args, **kwargs):
            if self._open and self._open[-1][0] == stage:
                return fn(*args, **kwargs)
            self._open.append([stage, time.perf_counter(), time.process_time(), 0.0, 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                name, w0, c0, cw, cc = self._open.pop()
                dw, dc = time.perf_counter() - w0, time.process_time() - c0
                self.wall[name] += dw - cw
                self.cpu[name] += dc - cc
                if self._open:
                    self._open[-1][3] += dw
                    self._open[-1][4] += dc
        return timed


def synthetic_worker(size: str, out_dir: str, parallel: bool = False) -> dict:
    """One ``dualgap llm synthetic`` comparison (CLI defaults: both methods, the sweep, no
    figures) in ``out_dir``, timed by stage; returns the stages, the pipeline's own generation /
    scoring / DPO seconds, the Adam steps of the theory and the result rows.

    ``parallel``: the capacity sweep in its second process (``compare(parallel=True)``, what
    the CLI's ``--parallel auto`` picks on an idle 2-core machine); the stages are then this
    process's only, and the CPU total adds the second process's (``RUSAGE_CHILDREN``)."""
    import resource

    import dualgap.gaps as gaps
    import dualgap.llm.run as run
    import dualgap.llm.synthetic.compare as compare
    import dualgap.llm.synthetic.model as model
    import dualgap.llm.synthetic.pipeline as pipeline
    from dualgap.policies import PolicyClass

    clock = _StageClock()
    for owner, attr, stage in (
            (model, "train_reference", "reference training"),
            (compare, "build_task", "exact problem"), (compare, "write_pairs", "DPO pool"),
            (run, "train", "pipeline"), (run, "resume", "pipeline"),
            (pipeline, "exact_policy", "evaluation"), (compare, "measure_class", "theory: other"),
            (gaps, "parametrized_dual", "theory: bundle"),
            (gaps, "parametrized_primal", "theory: primal"),
            (gaps, "lagrangian_max", "theory: searches"),
            (gaps, "lagrangian_max_batch", "theory: searches"),
            (gaps, "proves_not_a_minimizer", "theory: lam*_p check"),
            (PolicyClass, "fit", "theory: fits")):
        setattr(owner, attr, clock.wrap(stage, getattr(owner, attr)))
    steps = {"n": 0}
    minimize = model.TransformerPolicy.minimize

    def counted(self, theta, loss_fn, n):
        steps["n"] += int(n)
        return minimize(self, theta, loss_fn, n)

    model.TransformerPolicy.minimize = counted
    import logging

    logging.getLogger("transformers").setLevel(logging.ERROR)
    w0, c0 = time.perf_counter(), time.process_time()
    cmp = clock.wrap("rest", compare.compare)(size, out_dir, figures=False, progress=False,
                                              parallel=bool(parallel))
    total_w, total_c = time.perf_counter() - w0, time.process_time() - c0
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    total_c += kids.ru_utime + kids.ru_stime
    pipe = {}
    for name, tr in cmp.traces.items():
        for k, v in tr.timing.items():
            pipe[f"{name} {k}"] = v
    rows = {}
    for name, tr in cmp.traces.items():
        for it in tr.iterates:
            for q in ("objective", "kl", "lagrangian_gap", "l1_to_optimum"):
                rows[f"{name} t={it.iteration} {q}"] = {"measured": float(getattr(it, q)),
                                                        "holds": None}
            rows[f"{name} t={it.iteration} lam"] = {"measured": float(it.lam[0]), "holds": None}
            rows[f"{name} t={it.iteration} slack"] = {"measured": float(it.slack[0]),
                                                      "holds": bool(it.slack.min() >= 0)}
    for c in cmp.classes:
        rows[f"{c.arch.label()} nu"] = {"measured": c.nu, "holds": None}
        for r in c.rows:
            rows[f"{c.arch.label()} {r.statement} | {r.quantity}"] = {
                "measured": r.measured, "holds": r.holds, "kind": r.kind}
    return {"size": size, "total_s": total_w, "total_cpu_s": total_c, "stages": clock.wall,
            "stages_cpu": clock.cpu, "pipeline_timing": pipe, "adam_steps": steps["n"],
            "weights": _iterate_digest(out_dir), "rows": rows, "parallel": bool(parallel)}


def _iterate_digest(out_dir: str) -> str:
    """sha256 of every tensor (name, dtype, shape, bytes) of every pipeline iterate under
    ``out_dir/runs``: equal digests are bit-identical weights."""
    import hashlib

    import torch
    from safetensors.torch import load_file

    h = hashlib.sha256()
    for f in sorted(Path(out_dir, "runs").glob("*/checkpoints/iter_*/*.safetensors")):
        h.update(str(f.relative_to(out_dir)).encode())
        for k, v in sorted(load_file(str(f)).items()):
            h.update(f"{k} {v.dtype} {tuple(v.shape)}".encode())
            h.update(v.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def synthetic_table(results: dict) -> str:
    """The README table: per tree, wall (CPU) seconds per stage and the ratios."""
    lines = ["| size | tree | total wall [s] | total CPU [s] | " + " | ".join(SYNTHETIC_STAGES)
             + " | Adam steps (theory) | after / before (wall, CPU) |",
             "|---|---|---|---|" + "---|" * len(SYNTHETIC_STAGES) + "---|---|"]
    for size, side, r, sides in measured_sides(results, SYNTHETIC_SIDES):
        b, c, ratio = sides.get("before"), sides.get(f"rows_compared {side}"), ""
        if b is None and side == PARALLEL_SIDE:  # no before: against this tree's serial run
            b = sides.get("after")
        if c is None and side == "after":
            c = sides.get("rows_compared")  # a results file written before the parallel side
        if side != "before" and b:
            ratio = (f"{r['total_s'] / b['total_s']:.2f}x, "
                     f"{r['total_cpu_s'] / b['total_cpu_s']:.2f}x")
        if side != "before" and b and c:
            same_w = ("" if "weights" not in b else
                      f", same pipeline weights: {b['weights'] == r.get('weights')}")
            ratio += (f" (same rows: {c['same_rows']}, same verdicts: {c['same_verdicts']}, "
                      f"max rel. change {c['max_relative_change']:.1e}{same_w})")
        cells = [f"{r['stages'][s]:.1f} ({r['stages_cpu'][s]:.1f})" for s in SYNTHETIC_STAGES]
        lines.append(f"| {size} | {side} | {r['total_s']:.1f} | {r['total_cpu_s']:.1f} | "
                     + " | ".join(cells) + f" | {r['adam_steps']} | {ratio} |")
    return "\n".join(lines)


def synthetic_main(argv: list[str]) -> None:
    """``--synthetic``: time ``dualgap llm synthetic`` by stage, before and after, in one run
    (each side in a subprocess with a fresh output directory, run one after the other)."""
    ap = argparse.ArgumentParser(description="profile dualgap llm synthetic by stage")
    ap.add_argument("--synthetic", action="store_true", required=True)
    ap.add_argument("--synthetic-worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--size", default="default",
                    help="a size of dualgap.llm.synthetic.config.SIZES (default: %(default)s)")
    ap.add_argument("--before", default=SYNTHETIC_BEFORE_REV,
                    help="git revision timed as 'before' ('none': skip; default %(default)s)")
    ap.add_argument("--parallel", action="store_true",
                    help="also time this tree with the sweep in a second process (the CLI's "
                    "--parallel yes; the 'after, second process' row)")
    ap.add_argument("--worker-parallel", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.synthetic_worker:
        print(json.dumps(synthetic_worker(args.synthetic_worker, args.out,
                                          args.worker_parallel), default=str))
        return
    from tqdm import tqdm

    results: dict = {args.size: {}}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"after": ROOT}
        if args.before != "none":
            trees = {"before": archive_tree(args.before, Path(tmp) / "before"), "after": ROOT}
        if args.parallel:
            trees[PARALLEL_SIDE] = ROOT
        for side in tqdm(list(trees), desc="synthetic_speed", unit="run"):
            env = dict(os.environ, PYTHONPATH=str(trees[side]), HF_HUB_OFFLINE="1",
                       HF_DATASETS_OFFLINE="1")
            extra = ["--worker-parallel"] if side == PARALLEL_SIDE else []
            out = subprocess.run(
                [sys.executable, str(HERE / "theory_speed.py"), "--synthetic",
                 "--synthetic-worker", args.size, "--out",
                 str(Path(tmp) / f"run-{side.replace(' ', '-').replace(',', '')}"), *extra],
                env=env, capture_output=True, text=True, check=False, cwd=trees[side])
            if out.returncode != 0:
                raise RuntimeError(f"synthetic worker in {trees[side]} failed:\n"
                                   f"{out.stderr[-3000:]}")
            results[args.size][side] = json.loads(out.stdout.strip().splitlines()[-1])
    sides = results[args.size]
    if "before" in sides:
        for side in SYNTHETIC_SIDES[1:]:
            if side in sides:
                sides[f"rows_compared {side}"] = compare_rows(sides["before"]["rows"],
                                                              sides[side]["rows"])
    elif PARALLEL_SIDE in sides:  # no before: the second process against this tree's serial run
        sides[f"rows_compared {PARALLEL_SIDE}"] = compare_rows(sides["after"]["rows"],
                                                               sides[PARALLEL_SIDE]["rows"])
    path = HERE / "results" / "synthetic_speed.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    old.update(results)
    path.write_text(json.dumps(old, indent=1, default=str) + "\n")
    text = synthetic_table(old)
    write_readme(text, "synthetic_speed")
    print(text)


if __name__ == "__main__":
    if "--synthetic" in sys.argv[1:]:
        synthetic_main(sys.argv[1:])
    else:
        main()

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

Writes ``benchmarks/results/theory_speed.json`` and the table between the ``theory_speed``
markers of ``benchmarks/README.md``.  The synthetic LLM experiment is not profiled here (see the
README section: not done).
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
#: main before the batched searches (session 3; session 2's "before" was 7d8a64b)
BEFORE_REV = "8fbe260"
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
    import dualgap.policies.classes  # noqa: F401  (the subclasses whose fit is timed)

    for cls in [PolicyClass, *PolicyClass.__subclasses__()]:
        if "fit" in cls.__dict__:
            cls.fit = timed("fits", cls.__dict__["fit"])
    problem = demo_problem()
    cls = build_policy_class(problem, policy, DEFAULT_NOISE)
    import cvxpy  # noqa: F401

    import dualgap.reference  # noqa: F401  (cvxpy's import is not the report's work)

    t0 = time.perf_counter()
    report = gap_report(problem, cls)
    total = time.perf_counter() - t0
    spent["other"] = total - sum(v for k, v in spent.items() if k != "other")
    # the rows without their witnesses (a tabular theta has 8698 entries per row)
    rows = {f"{r.statement} | {r.quantity}": {k: v for k, v in r.to_dict().items()
                                               if k != "witness"} for r in report.rows}
    return {"policy": policy, "num_params": cls.num_params, "total_s": total, "stages": spent,
            "all_hold": bool(report.all_hold), "rows": rows}


# ------------------------------------------------------------------------- driver
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


def table(results: dict) -> str:
    lines = ["| class | tree | total [s] | " + " | ".join(STAGES) + " | after / before |",
             "|---|---|---|" + "---|" * len(STAGES) + "---|"]
    for policy, sides in results.items():
        for side in ("before", "after"):
            r = sides.get(side)
            if r is None:
                continue
            ratio = ""
            if side == "after" and sides.get("before"):
                ratio = f"{r['total_s'] / sides['before']['total_s']:.2f}x"
            if side == "after" and "rows_compared" in sides:
                c = sides["rows_compared"]
                ratio += (f" (same rows: {c['same_rows']}, same verdicts: {c['same_verdicts']},"
                          f" max rel. change {c['max_relative_change']:.1e})")
            lines.append(f"| {policy} ({r['num_params']} params) | {side} | {r['total_s']:.2f} | "
                         + " | ".join(f"{r['stages'][s]:.2f}" for s in STAGES)
                         + f" | {ratio} |")
    return "\n".join(lines)


def write_readme(text: str) -> None:
    path = HERE / "README.md"
    body = path.read_text()
    begin, end = "<!-- theory_speed:begin -->", "<!-- theory_speed:end -->"
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
            before = Path(tmp) / "before"
            before.mkdir()
            arch = subprocess.run(["git", "-C", str(ROOT), "archive", args.before],
                                  capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(before)], input=arch, check=True)
            trees = {"before": before, "after": ROOT}
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


if __name__ == "__main__":
    main()

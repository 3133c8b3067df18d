"""Benchmark: steps and time for each algorithm to reach the constrained optimum on tabular models.

    python benchmarks/algorithms.py                          # all sizes (a few minutes)
    python benchmarks/algorithms.py --sizes small --out /tmp/alg.json --md /tmp/alg.md

For each instance size (``random_problem(seed=11, X, Y, m, beta=0.5, tightness=0.9)``) and each
algorithm below, the number of steps (records of the trajectory) and the seconds until, for the
first time, the constraint violation ``max_i max(0, -E_rho E_pi h_i)`` is at most
``--tol-violation`` *and* ``|J(pi_t) - P*_p| <= --tol-objective``; and the step from which on
every later record meets both ("settled": sampled runs with a constant step can touch the
tolerance by chance and leave it again, their noise floor being above it).  The tabular class
contains every ``pi_lam``, so ``P*_p = P*`` (from ``dualgap.solve`` at KKT tolerance 1e-12).
Time is the trajectory's own clock (diagnostics excluded), after a warm-up run of each
algorithm.

* ``dual-descent``: exact gradient, ``eta = 1/L_D`` (``dualgap.theory.smoothness_bound``);
* ``dual-descent N=16``: 16 sampled responses per prompt, ``eta = 1/L_D``;
* ``caid``: tabular class, practical start (one-shot ``lam`` from K = 64), one natural-gradient
  policy step per iteration (exact for this class), ``eta = 1/L_D``;
* ``caid N=16``: the same with the dual step from 16 on-policy samples per prompt;
* ``caid lbfgs-2``: the same with an inexact policy step (2 L-BFGS iterations, warm-started);
* ``one-shot K=64``: one record (reached or not);
* ``primal-dual``: simultaneous gradient steps, linear multiplier ``eta = 1/L_D``, primal step
  ``alpha = X / (2 beta)`` (``rho = 1/X`` scales the per-prompt gradient).

A run that never meets both tolerances within its budget is reported as not reached, with its
final violation and objective error.  Writes ``benchmarks/results/algorithms.json`` and the
markdown table ``benchmarks/results/algorithms.md`` (and, with ``--readme``, the table between
``<!-- algorithms:begin -->`` / ``<!-- algorithms:end -->`` markers in ``benchmarks/README.md``
when they exist).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import dualgap as dg
import dualgap.algorithms as A
from dualgap.instances import random_problem
from dualgap.policies import TabularPolicy
from dualgap.theory import smoothness_bound

HERE = Path(__file__).resolve().parent
SIZES = {"small": (5, 8, 2), "medium": (20, 64, 2), "large": (50, 256, 3)}
ALGORITHMS = ("dual-descent", "dual-descent N=16", "caid", "caid N=16", "caid lbfgs-2",
              "one-shot K=64", "primal-dual")


def run_algorithm(name: str, problem: dg.AlignmentProblem, sol: dg.DualSolution,
                  budget: int) -> A.Trajectory:
    L = smoothness_bound(problem)
    tab = TabularPolicy(problem)
    kw = dict(exact_solution=sol)
    if name == "dual-descent":
        return A.dual_descent(problem, budget, step_rule="smooth", **kw)
    if name == "dual-descent N=16":
        return A.dual_descent(problem, budget, step_rule="smooth", samples=16, seed=0, **kw)
    if name == "caid":
        return A.caid(problem, tab, iterations=budget, step_rule="smooth", inner_steps=1,
                      one_shot_samples=64, **kw)
    if name == "caid N=16":
        return A.caid(problem, tab, iterations=budget, step_rule="smooth", inner_steps=1,
                      samples=16, one_shot_samples=64, seed=0, **kw)
    if name == "caid lbfgs-2":
        return A.caid(problem, tab, iterations=budget, step_rule="smooth", inner_steps=2,
                      inner_method="lbfgs", one_shot_samples=64, **kw)
    if name == "one-shot K=64":
        return A.one_shot(problem, tab, samples=64, seed=0, **kw)
    if name == "primal-dual":
        return A.primal_dual(problem, tab, iterations=5 * budget, dual_step=1.0 / L,
                             primal_lr=problem.num_prompts / (2 * problem.beta), **kw)
    raise ValueError(f"algorithm: unknown {name!r}; known: {ALGORITHMS}")


def measure(name: str, problem, sol, budget: int, tol_v: float, tol_o: float) -> dict:
    run_algorithm(name, problem, sol, min(budget, 3))  # warm-up (imports, caches)
    tr = run_algorithm(name, problem, sol, budget)
    k = tr.first_within(tol_v, tol_o, target=sol.primal_value)
    every = int(tr.config.get("record_every", 1) or 1)
    ok = (tr.violation <= tol_v) & (np.abs(tr.objective - sol.primal_value) <= tol_o)
    bad = np.flatnonzero(~ok)
    settled = None if not ok[-1] else (0 if bad.size == 0 else int(bad[-1]) + 1)
    return {
        "algorithm": name,
        "reached": k is not None,
        "steps": None if k is None else int(k * every),
        "seconds": None if k is None else float(tr.time[k]),
        "settled_steps": None if settled is None else int(settled * every),
        "budget_steps": int((tr.num_records - 1) * every),
        "budget_seconds": float(tr.time[-1]),
        "final_violation": float(tr.violation[-1]),
        "final_objective_error": float(abs(tr.objective[-1] - sol.primal_value)),
    }


def markdown(result: dict) -> str:
    tv, to = result["tol_violation"], result["tol_objective"]
    lines = [f"Steps / seconds until violation <= {tv:g} and |J - P*| <= {to:g} "
             f"(tabular class: P*_p = P*).",
             "",
             "| size (X, Y, m) | algorithm | steps | time [s] | settled from step | "
             "final violation | final \\|J - P*\\| |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        size = f"{r['size']} ({r['X']}, {r['Y']}, {r['m']})"
        if r["reached"]:
            steps, secs = str(r["steps"]), f"{r['seconds']:.4f}"
        else:
            steps = (f"not in {r['budget_steps']}" if r["budget_steps"] else "not reached")
            secs = f"(> {r['budget_seconds']:.3f})"
        settled = "never" if r["settled_steps"] is None else str(r["settled_steps"])
        lines.append(f"| {size} | {r['algorithm']} | {steps} | {secs} | {settled} | "
                     f"{r['final_violation']:.1e} | {r['final_objective_error']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=list(SIZES))
    ap.add_argument("--algorithms", nargs="+", choices=ALGORITHMS, default=list(ALGORITHMS))
    ap.add_argument("--budget", type=int, default=1000,
                    help="dual steps per run (primal-dual: 5x; default %(default)s)")
    ap.add_argument("--tol-violation", type=float, default=1e-3)
    ap.add_argument("--tol-objective", type=float, default=1e-3)
    ap.add_argument("--out", default=str(HERE / "results" / "algorithms.json"))
    ap.add_argument("--md", default=str(HERE / "results" / "algorithms.md"))
    ap.add_argument("--readme", action="store_true",
                    help="also replace the table between the algorithms markers in README.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # tiny models on a shared machine: threads only spin
    warnings.simplefilter("ignore", dg.BoundaryFeasibleWarning)
    rows = []
    jobs = [(s, a) for s in args.sizes for a in args.algorithms]
    problems = {}
    for size, name in tqdm(jobs, desc="algorithms benchmark"):
        if size not in problems:
            X, Y, m = SIZES[size]
            p = random_problem(11, X, Y, m, beta=0.5, tightness=0.9)
            problems[size] = (p, dg.solve(p, tol=1e-12))
        p, sol = problems[size]
        row = measure(name, p, sol, args.budget, args.tol_violation, args.tol_objective)
        rows.append({"size": size, "X": p.num_prompts, "Y": p.num_responses,
                     "m": p.num_constraints, **row})
    result = {
        "tol_violation": args.tol_violation, "tol_objective": args.tol_objective,
        "budget": args.budget, "rows": rows,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "numpy": np.__version__, "torch": torch.__version__,
                    "date": time.strftime("%Y-%m-%d")},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    table = markdown(result)
    Path(args.md).write_text("# Algorithms benchmark (`python benchmarks/algorithms.py`)\n\n"
                             + table)
    print(table)
    if args.readme:
        readme = HERE / "README.md"
        text = readme.read_text()
        begin, end = "<!-- algorithms:begin -->", "<!-- algorithms:end -->"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            _, tail = rest.split(end, 1)
            readme.write_text(head + begin + "\n" + table + end + tail)
        else:
            print(f"README.md has no {begin} / {end} markers: table not inserted",
                  file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

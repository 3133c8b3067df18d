"""Benchmark: the exact solver's passes on one thread and on every usable core (session 8).

    python benchmarks/threads.py                    # 1e7 entries, m = 3 and 1, 5 rounds
    python benchmarks/threads.py --entries 1e6 --rounds 3 --no-readme

``dualgap.threads`` splits the prompts of each pass over threads (numpy's ufuncs and the numba
kernels release the GIL).  This script times ``dg.solve`` with ``backend`` numpy and numba on
1 thread and on ``--threads`` (default: the usable cores), in the same process, in alternating
rounds on fresh problem objects built outside the timer, and reports the median wall and CPU
seconds of each, the wall-time speed-up (1 thread over T, median of the per-round ratios) and
whether the solutions are the same bits (multipliers, policy, dual value).  One read of every
input array on 1 and on T threads is timed alike: the memory floor the passes are bound by.

Writes ``benchmarks/results/threads.json`` and the table between the ``threads`` markers of
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import dualgap as dg
from dualgap import dual_numba, threads
from dualgap.instances import random_problem

HERE = Path(__file__).resolve().parent
SHAPES = {1e6: (1000, 1000), 1e7: (2000, 5000)}


def timed(fn) -> tuple[float, float, object]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def run(entries: float, m: int, count: int, rounds: int) -> dict:
    X, Y = SHAPES[entries]
    p = random_problem(int(entries) + m, X, Y, m, beta=0.5, support_fraction=0.9,
                       tightness=0.9)
    arrays = (p.reward, p.utilities, p.reference)

    def read(lo: int, hi: int) -> None:
        for a in arrays:
            float(a[..., lo:hi, :].sum())

    backends = ["numpy"] + (["numba"] if dual_numba.available() else [])
    cases = [("read", None)] + [(b, None) for b in backends]
    times: dict = {f"{c}@{t}": [] for c, _ in cases for t in (1, count)}
    answers: dict = {}
    for b in backends:  # warm-up: compilation and first touch are not timed
        dg.solve(p.replace(), backend=b)
    for _ in tqdm(range(rounds), desc=f"threads (1e{int(np.log10(entries))}, m = {m})",
                  unit="round"):
        for case, _ in cases:
            for t in (1, count):
                threads.set_threads(t)
                if case == "read":
                    wall, cpu, _ = timed(lambda: threads.run_ranges(read, X, Y))
                else:
                    fresh = p.replace()
                    wall, cpu, sol = timed(lambda b=case, f=fresh: dg.solve(f, backend=b))
                    answers[f"{case}@{t}"] = sol
                times[f"{case}@{t}"].append((wall, cpu))
    threads.set_threads(None)
    rows = []
    for case, _ in cases:
        one, many = times[f"{case}@1"], times[f"{case}@{count}"]
        row = {"case": case, "threads": count,
               "wall_1": statistics.median(w for w, _ in one),
               "cpu_1": statistics.median(c for _, c in one),
               "wall_T": statistics.median(w for w, _ in many),
               "cpu_T": statistics.median(c for _, c in many),
               "speedup_wall": statistics.median(a[0] / b[0] for a, b in zip(one, many,
                                                                             strict=True))}
        if case != "read":
            a, b = answers[f"{case}@1"], answers[f"{case}@{count}"]
            row["same_bits"] = bool(np.array_equal(a.lam, b.lam)
                                    and np.array_equal(a.policy, b.policy)
                                    and a.dual_value == b.dual_value)
            row["passes"] = a.passes
        rows.append(row)
    return {"entries": int(entries), "X": X, "Y": Y, "m": m, "rounds": rounds, "rows": rows}


def markdown(results: list[dict]) -> str:
    out = ["| entries | m | case | threads | wall 1 thread [s] | wall T threads [s] | "
           "speed-up (wall) | CPU 1 / T [s] | passes | same bits |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        for r in res["rows"]:
            out.append(
                f"| {res['entries']:.0e} | {res['m']} | {r['case']} | {r['threads']} | "
                f"{r['wall_1']:.4f} | {r['wall_T']:.4f} | {r['speedup_wall']:.2f}x | "
                f"{r['cpu_1']:.3f} / {r['cpu_T']:.3f} | {r.get('passes', '')} | "
                f"{r.get('same_bits', '')} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    from exact_solver import publish  # a sibling module

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=float, default=1e7, help=f"one of {sorted(SHAPES)}")
    ap.add_argument("--constraints", nargs="+", type=int, default=[3, 1])
    ap.add_argument("--threads", type=int, default=None,
                    help="threads to compare with one (default: the usable cores)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(HERE / "results" / "threads.json"))
    ap.add_argument("--no-readme", action="store_true", help="do not update benchmarks/README.md")
    args = ap.parse_args(argv)
    if args.entries not in SHAPES:
        ap.error(f"--entries: {args.entries:g} is not one of {sorted(SHAPES)}")
    count = threads.usable_cores() if args.threads is None else args.threads
    if count < 2:
        ap.error(f"--threads: needs 2 or more threads to compare with one, got {count}")
    if args.rounds < 1:
        ap.error(f"--rounds: must be >= 1, got {args.rounds}")
    results = [run(args.entries, m, count, args.rounds) for m in args.constraints]
    publish(Path(args.out), {"benchmark": "threads", "cores": threads.usable_cores(),
                             "results": results}, markdown(results),
            None if args.no_readme else "threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())

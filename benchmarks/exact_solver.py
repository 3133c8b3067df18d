"""Benchmark: the exact dual solver against cvxpy and fixed-step projected gradient descent.

    python benchmarks/exact_solver.py                      # full run (a few minutes)
    python benchmarks/exact_solver.py --sizes 1e3 1e4 --out /tmp/res.json

For each instance size (X*Y entries) and m in {1, 3}:

* ``dualgap.solve`` (projected Newton on the closed-form dual);
* cvxpy with CLARABEL and with SCS on the primal (exponential cone), up to a size limit;
* fixed-step projected gradient descent on the dual, as existing one-shot dual code does:
  ``lam <- [lam - eta grad D]_+`` with eta = 1, halved whenever D increases, 200 iterations,
  stop when lam moves less than 1e-5.

Recorded per method: wall time (after a warm-up solve, so imports are not counted; best of 3
when a call takes under 2 s), KKT residual
``||lam - [lam - grad D(lam)]_+||_inf`` at the method's lam (cvxpy: the constraints' dual
values), ``D(lam) - D_best`` (``D_best`` = the smallest dual value any method reached: every
``D(lam)`` is an upper bound on ``D*``, so this is the honest accuracy gap), passes over the
data (oracle calls; cvxpy: n/a), and the peak memory allocated during the solve (tracemalloc,
which sees numpy buffers; a second, traced call, so tracing does not slow the timed one)
relative to the input arrays.  SCS is run at its default accuracy.

Writes ``benchmarks/results/exact_solver.json`` and the table in ``benchmarks/README.md``
(between the ``exact_solver`` markers).

    python benchmarks/exact_solver.py --floor           # the oracle against its memory floor
    python benchmarks/exact_solver.py --memory          # 1e8 entries (m = 1) past memory

``--floor`` (1e7 entries, m = 3): the time to read every input array once (one numpy pass),
one ``dual_oracle`` call, ``solve`` and its passes, and ``solve / (passes x read)``, for the
tree before the fused oracle (``--before``, a git revision, timed in a subprocess on its own
copy of the package) and for this tree, in one run on the same saved instance; this tree also
with ``backend="torch"`` and the float32 oracle's error.  ``--memory``: a memory-mapped
instance written chunk by chunk, solved with streamed passes; time, passes, KKT residual, the
peak of allocated memory (tracemalloc) and the peak resident set (which also counts the mapped
file pages the kernel may drop), and the chunked answer against the in-memory one on the
first tenth of the prompts.  Both write their own section of the JSON and of the README.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from tqdm import tqdm

import dualgap as dg
from dualgap.instances import random_problem

HERE = Path(__file__).resolve().parent
SHAPES = {1e3: (10, 100), 1e4: (40, 250), 1e5: (100, 1000), 1e6: (1000, 1000), 1e7: (2000, 5000)}
LIMITS = {"clarabel": 1e5, "scs": 1e4, "pgd": 1e7, "newton": 1e7}
#: The last commit before the fused oracle (issue 15): the "before" row of ``--floor``.
BEFORE_REV = "ebd061f"


def pgd(problem: dg.AlignmentProblem, iters: int = 200, move_tol: float = 1e-5):
    """Fixed-step projected gradient descent with step halving on failure (the baseline)."""
    lam = np.zeros(problem.num_constraints)
    ev = dg.dual_oracle(problem, lam, order=1)
    passes, eta = 1, 1.0
    for _ in range(iters):
        trial = np.maximum(lam - eta * ev.gradient, 0.0)
        ev_t = dg.dual_oracle(problem, trial, order=1)
        passes += 1
        if ev_t.value > ev.value:
            eta /= 2.0
            continue
        moved = float(np.abs(trial - lam).max())
        lam, ev = trial, ev_t
        if moved < move_tol:
            break
    return lam, passes


def measure(fn):
    """Time a call untraced (best of 3 when under 2 s), then trace one more for its peak."""
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    if seconds < 2.0:  # fast: best of 3 (the machine is shared; the minimum is the least noisy)
        for _ in range(2):
            t0 = time.perf_counter()
            fn()
            seconds = min(seconds, time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, seconds, peak


def run_case(entries: float, m: int, methods: list[str]) -> list[dict]:
    X, Y = SHAPES[entries]
    problem = random_problem(
        int(entries) + m, X, Y, m, beta=0.5, support_fraction=0.9, tightness=0.9
    )
    input_bytes = problem.reward.nbytes + problem.utilities.nbytes + problem.reference.nbytes
    rows = []
    for method in methods:
        if entries > LIMITS[method]:
            rows.append({"method": method, "skipped": f"above the size limit {LIMITS[method]:.0e}"})
            continue
        # each call gets a fresh problem (no cached derived arrays): every method pays its setup
        if method == "newton":
            sol, sec, peak = measure(lambda: dg.solve(problem.replace()))
            lam, passes = sol.lam, sol.passes
        elif method == "pgd":
            (lam, passes), sec, peak = measure(lambda: pgd(problem.replace()))
        else:
            from cvxpy.error import SolverError

            solver = {"clarabel": "CLARABEL", "scs": "SCS"}[method]
            try:
                ref, sec, peak = measure(
                    lambda s=solver: dg.solve_primal_cvxpy(problem.replace(), solver=s)
                )
            except SolverError as exc:  # recorded, not hidden: the row says the solver failed
                rows.append({"method": method, "skipped": f"solver failed: {exc}"[:80]})
                continue
            lam, passes = ref.lam, None
        ev = dg.dual_oracle(problem, lam, order=1)
        rows.append(
            {
                "method": method,
                "seconds": sec,
                "dual_value": ev.value,
                "kkt_residual": dg.kkt_residual(lam, ev.gradient),
                "passes": passes,
                "peak_bytes": peak,
                "peak_over_input": peak / input_bytes,
            }
        )
    best = min(r["dual_value"] for r in rows if "dual_value" in r)
    for r in rows:
        r.update(entries=int(entries), X=X, Y=Y, m=m, input_bytes=input_bytes)
        if "dual_value" in r:
            r["dual_gap"] = r["dual_value"] - best
    return rows


def markdown(rows: list[dict]) -> str:
    out = [
        "| entries | m | method | time [s] | vs newton | KKT residual | D - D_best | passes | "
        "peak mem / input |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    newton = {
        (r["entries"], r["m"]): r["seconds"]
        for r in rows
        if r["method"] == "newton" and "seconds" in r
    }
    for r in rows:
        if "skipped" in r:
            out.append(
                f"| {r['entries']:.0e} | {r['m']} | {r['method']} | {r['skipped']} | | | | | |"
            )
            continue
        ratio = r["seconds"] / newton[(r["entries"], r["m"])]
        passes = "n/a" if r["passes"] is None else r["passes"]
        out.append(
            f"| {r['entries']:.0e} | {r['m']} | {r['method']} | {r['seconds']:.4f} | "
            f"{ratio:.1f}x | {r['kkt_residual']:.1e} | {r['dual_gap']:.1e} | {passes} | "
            f"{r['peak_over_input']:.2f} |"
        )
    return "\n".join(out)


def write_readme_section(name: str, text: str) -> None:
    readme = HERE / "README.md"
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    body = readme.read_text() if readme.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text}\n{end}"
    if begin in body:
        pre, rest = body.split(begin, 1)
        body = pre + block + rest.split(end, 1)[1]
    else:
        body = body.rstrip() + "\n\n" + block + "\n"
    readme.write_text(body)


# ----------------------------------------------------------------------- the floor
def best_of(fn, repeats: int = 3) -> float:
    """The least wall time of ``repeats`` calls (the machine is shared; the minimum is the least
    noisy estimate of the work)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def floor_worker(npz: str, backends: list[str]) -> dict:
    """Timings of one tree (whichever ``dualgap`` is on the path) on a saved instance."""
    p = dg.AlignmentProblem.load(npz)
    arrays = (p.reward, p.utilities, p.reference)
    out = {
        "dualgap": str(Path(dg.__file__).parent),
        "entries": p.reward.size,
        "m": p.num_constraints,
        "read_seconds": best_of(lambda: [float(a.sum()) for a in arrays], 5),
    }
    sol = dg.solve(p.replace())  # warm-up, and lam* for the oracle timing
    out["oracle_seconds"] = best_of(lambda: dg.dual_oracle(p, sol.lam, order=2), 5)
    out["value_seconds"] = best_of(lambda: dg.dual_oracle(p, sol.lam, order=0), 5)
    for backend in backends:
        kw = {} if backend == "numpy" else {"backend": backend}
        holder = {}
        seconds = best_of(lambda kw=kw: holder.update(sol=dg.solve(p.replace(), **kw)))
        s = holder["sol"]
        ev = dg.dual_oracle(p, s.lam, order=1)  # residual measured by the numpy oracle
        out[backend] = {
            "solve_seconds": seconds,
            "passes": s.passes,
            "iterations": s.iterations,
            "kkt_residual": dg.kkt_residual(s.lam, ev.gradient),
            "dual_value": ev.value,
            "floor_ratio": seconds / (s.passes * out["read_seconds"]),
        }
    if "torch" in backends:
        from dualgap.dual_torch import torch_dual_oracle

        want = dg.dual_oracle(p, sol.lam)
        for dtype in ("float64", "float32"):
            got = torch_dual_oracle(p, sol.lam, dtype=dtype)
            out[f"torch_{dtype}_error"] = {
                "value": abs(got.value - want.value) / max(1.0, abs(want.value)),
                "gradient": float(np.abs(got.gradient - want.gradient).max()),
                "hessian": float(np.abs(got.hessian - want.hessian).max()
                                 / max(1e-300, np.abs(want.hessian).max())),
            }
    return out


def _worker(root: Path, args: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root))
    res = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True,
                         text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"worker {args[0]} under {root} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def run_floor(entries: float, before: str | None) -> dict:
    """Before/after rows measured in one run on the same saved instance."""
    X, Y = SHAPES[entries]
    m = 3
    p = random_problem(int(entries) + m, X, Y, m, beta=0.5, support_fraction=0.9,
                       tightness=0.9)
    result: dict = {"entries": int(entries), "X": X, "Y": Y, "m": m, "rows": {}}
    with tempfile.TemporaryDirectory() as tmp:
        npz = str(Path(tmp) / "instance.npz")
        p.save(npz)
        del p
        if before:
            tree = Path(tmp) / "before"
            tree.mkdir()
            archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", before,
                                      "dualgap"], capture_output=True, check=False)
            if archive.returncode:
                result["rows"]["before"] = {"skipped": f"git archive {before} failed"}
            else:
                subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
                row = _worker(tree, ["--floor-worker", npz, "numpy"])
                result["rows"]["before"] = dict(row, revision=before)
        backends = ["numpy"]
        try:
            import torch  # noqa: F401

            backends.append("torch")
        except ImportError:
            pass
        result["rows"]["after"] = dict(_worker(HERE.parent, ["--floor-worker", npz, *backends]),
                                       revision="working tree")
    return result


def floor_markdown(res: dict) -> str:
    out = [
        f"Floor at {res['entries']:.0e} entries, m = {res['m']} ({res['X']} x {res['Y']}), one "
        "run; `floor` = solve / (passes x one numpy read of every input array).",
        "",
        "| tree | backend | read [s] | oracle (D, grad, hess) [s] | D only [s] | solve [s] | "
        "passes | KKT residual | floor ratio | solve speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = res["rows"]
    base = rows.get("before", {}).get("numpy", {}).get("solve_seconds")
    for tree, r in rows.items():
        if "skipped" in r:
            out.append(f"| {tree} | {r['skipped']} | | | | | | | | |")
            continue
        for backend in ("numpy", "torch"):
            if backend not in r:
                continue
            b = r[backend]
            speed = f"{base / b['solve_seconds']:.2f}x" if base else "n/a"
            out.append(
                f"| {tree} | {backend} | {r['read_seconds']:.4f} | {r['oracle_seconds']:.4f} | "
                f"{r['value_seconds']:.4f} | {b['solve_seconds']:.3f} | {b['passes']} | "
                f"{b['kkt_residual']:.1e} | {b['floor_ratio']:.1f}x | {speed} |"
            )
    err = rows.get("after", {}).get("torch_float32_error")
    if err:
        out += ["", f"torch float32 oracle at lam*: relative error of D {err['value']:.1e}, "
                f"gradient {err['gradient']:.1e} (absolute), Hessian {err['hessian']:.1e} "
                f"(relative to its largest entry); float64: D "
                f"{rows['after']['torch_float64_error']['value']:.1e}."]
    return "\n".join(out)


# ---------------------------------------------------------------------- past memory
def write_memmap_instance(directory: Path, X: int, Y: int, m: int, seed: int = 0,
                          rows_per_chunk: int = 500) -> np.ndarray:
    """Write ``reward/utilities/reference.npy`` chunk by chunk (never whole in memory); returns
    thresholds that bind.  Utilities pull against the reward (correlation -0.5)."""
    from numpy.lib.format import open_memmap

    rng = np.random.default_rng(seed)
    r = open_memmap(directory / "reward.npy", "w+", np.float64, (X, Y))
    g = open_memmap(directory / "utilities.npy", "w+", np.float64, (m, X, Y))
    ref = open_memmap(directory / "reference.npy", "w+", np.float64, (X, Y))
    for a in tqdm(range(0, X, rows_per_chunk), desc="write instance", unit="chunk",
                  total=-(-X // rows_per_chunk)):
        b = min(X, a + rows_per_chunk)
        gi = rng.standard_normal((m, b - a, Y))
        g[:, a:b] = gi
        r[a:b] = -0.5 * gi.mean(axis=0) + rng.standard_normal((b - a, Y))
        ref[a:b] = rng.dirichlet(np.ones(Y), size=b - a)
    for arr in (r, g, ref):
        arr.flush()
    del r, g, ref
    return np.full(m, 0.3)  # E_pi g - E_ref g >= 0.3: binding at beta = 0.5 (tanh-like gain)


def memory_worker(directory: str, thresholds: list[float], beta: float, prompts: int) -> dict:
    """Solve the memory-mapped instance (all prompts, or the first ``prompts`` in memory too)."""
    from dualgap.streaming import ChunkedProblem

    d = sub = Path(directory)
    if prompts:  # the subsample: its first rows, chunked and in memory
        sub = d / "sub"
        sub.mkdir(exist_ok=True)
        for name in ("reward", "reference"):
            np.save(sub / f"{name}.npy", np.load(d / f"{name}.npy", mmap_mode="r")[:prompts])
        np.save(sub / "utilities.npy", np.load(d / "utilities.npy", mmap_mode="r")[:, :prompts])
    tracemalloc.start()
    t0 = time.perf_counter()
    cp = ChunkedProblem.from_npy(sub, thresholds, beta)
    sol = dg.solve(cp)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out = {
        "entries": cp.num_prompts * cp.num_responses, "m": cp.num_constraints,
        "seconds": seconds, "passes": sol.passes, "kkt_residual": sol.kkt_residual,
        "converged": sol.converged, "lam": sol.lam.tolist(), "peak_alloc_bytes": peak,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "input_bytes": (2 + cp.num_constraints) * cp.num_prompts * cp.num_responses * 8,
    }
    if prompts:
        p = dg.AlignmentProblem(*(np.load(sub / f"{n}.npy") for n in ("reward", "utilities")),
                                thresholds, beta, np.load(sub / "reference.npy"))
        ref = dg.solve(p)
        out["in_memory_lam"] = ref.lam.tolist()
        out["lam_difference"] = float(np.abs(ref.lam - sol.lam).max())
        out["dual_difference"] = abs(ref.dual_value - sol.dual_value)
    return out


def run_memory(entries: float) -> dict:
    Y = 5000 if entries >= 1e6 else 100
    X, m, beta = int(entries) // Y, 1, 0.5
    with tempfile.TemporaryDirectory(dir=os.environ.get("DUALGAP_BENCH_TMP")) as tmp:
        thresholds = write_memmap_instance(Path(tmp), X, Y, m)
        args = [tmp, json.dumps(thresholds.tolist()), str(beta)]
        full = _worker(HERE.parent, ["--memory-worker", *args, "0"])
        sub = _worker(HERE.parent, ["--memory-worker", *args, str(max(1, X // 10))])
    return {"X": X, "Y": Y, "m": m, "beta": beta, "full": full, "subsample": sub}


def memory_markdown(res: dict) -> str:
    f, s = res["full"], res["subsample"]
    gb = 1024**3
    return "\n".join([
        "| instance | entries | time [s] | passes | KKT residual | peak allocated | peak RSS | "
        "input on disk |",
        "|---|---|---|---|---|---|---|---|",
        *(f"| {name} | {r['entries']:.0e} | {r['seconds']:.1f} | {r['passes']} | "
          f"{r['kkt_residual']:.1e} | {r['peak_alloc_bytes'] / gb:.3f} GiB | "
          f"{r['peak_rss_bytes'] / gb:.2f} GiB | {r['input_bytes'] / gb:.2f} GiB |"
          for name, r in (("memory-mapped, chunked", f), ("first tenth, chunked", s))),
        "",
        f"First tenth of the prompts solved in memory: max |lam_chunked - lam_in_memory| = "
        f"{s['lam_difference']:.1e}, |D_chunked - D_in_memory| = {s['dual_difference']:.1e}.",
    ])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--floor-worker"]:  # internal: one tree's timings, JSON on stdout
        print(json.dumps(floor_worker(argv[1], argv[2:])))
        return 0
    if argv[:1] == ["--memory-worker"]:
        print(json.dumps(memory_worker(argv[1], json.loads(argv[2]), float(argv[3]),
                                       int(argv[4]))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--sizes",
        nargs="+",
        type=float,
        default=sorted(SHAPES),
        help=f"instance sizes X*Y among {sorted(SHAPES)}",
    )
    ap.add_argument("--constraints", nargs="+", type=int, default=[1, 3])
    ap.add_argument(
        "--methods", nargs="+", default=["newton", "clarabel", "scs", "pgd"], choices=sorted(LIMITS)
    )
    ap.add_argument("--floor", action="store_true",
                    help="only the floor section (before/after the fused oracle)")
    ap.add_argument("--floor-size", type=float, default=1e7, help="entries for --floor")
    ap.add_argument("--before", default=BEFORE_REV,
                    help="git revision timed as 'before' by --floor ('' to skip)")
    ap.add_argument("--memory", action="store_true", help="only the past-memory section")
    ap.add_argument("--memory-size", type=float, default=1e8, help="entries for --memory")
    ap.add_argument("--out", default=str(HERE / "results" / "exact_solver.json"))
    ap.add_argument("--no-readme", action="store_true", help="do not update benchmarks/README.md")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.floor or args.memory:
        result = json.loads(out.read_text()) if out.exists() else {"benchmark": "exact_solver"}
        if args.floor:
            if args.floor_size not in SHAPES:
                ap.error(f"--floor-size: {args.floor_size:g} is not one of {sorted(SHAPES)}")
            result["floor"] = run_floor(args.floor_size, args.before or None)
            table = floor_markdown(result["floor"])
            print(table)
            if not args.no_readme:
                write_readme_section("exact_floor", table)
        if args.memory:
            result["memory"] = run_memory(args.memory_size)
            table = memory_markdown(result["memory"])
            print(table)
            if not args.no_readme:
                write_readme_section("exact_memory", table)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        return 0
    for s in args.sizes:
        if s not in SHAPES:
            ap.error(f"--sizes: {s:g} is not one of {sorted(SHAPES)}")
    dg.solve(random_problem(0, 5, 5, 1))  # warm-up: imports are not part of any timing
    dg.solve_primal_cvxpy(random_problem(0, 5, 5, 1))
    rows = []
    cases = [(s, m) for s in args.sizes for m in args.constraints]
    for entries, m in tqdm(cases, desc="exact_solver", unit="case"):
        rows += run_case(entries, m, args.methods)
    result = {
        "benchmark": "exact_solver",
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "numpy": np.__version__,
            "processor": platform.processor(),
        },
        "rows": rows,
    }
    if out.exists():  # the floor and memory sections are kept
        result.update({k: v for k, v in json.loads(out.read_text()).items()
                       if k in ("floor", "memory")})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    table = markdown(rows)
    print(table)
    if not args.no_readme:
        write_readme_section("exact_solver", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The exact core against its memory floor, and past memory (issue 15).

Run through ``python benchmarks/exact_solver.py --floor`` / ``--memory`` (see its docstring);
this module holds those two sections and their subprocess workers::

    python benchmarks/exact_floor.py --floor-worker INSTANCE.npz numpy [torch]
    python benchmarks/exact_floor.py --memory-worker DIR THRESHOLDS_JSON BETA PROMPTS

A worker times whichever ``dualgap`` is first on ``PYTHONPATH`` (the "before" tree is a
``git archive`` of a revision) and prints one JSON line.
"""

from __future__ import annotations

import json
import os
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
SHAPES = {1e4: (40, 250), 1e5: (100, 1000), 1e6: (1000, 1000), 1e7: (2000, 5000)}
#: The "before" rows of ``--floor``: main at the start of session 4 (the compiled backend with
#: numpy's stats pass and a separate q pass), timed with both backends.
BEFORE_REV = "eaececa"


# ----------------------------------------------------------------------- the floor
def best_of(fn, repeats: int = 3) -> dict:
    """The least wall time and the least CPU time (all threads) of ``repeats`` calls: the
    machine is shared, so wall time includes waiting for a core; CPU time is the work."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"wall": min(wall), "cpu": min(cpu)}


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
    th = None  # the tree's compiled passes split the prompts over threads (since session 8)
    if (Path(dg.__file__).parent / "threads.py").exists():  # not the installed tree's module
        from dualgap import threads as th
    if th is not None:
        X, Y = p.reward.shape
        rows = th.row_ranges(X, Y)

        def read_rows(lo: int, hi: int) -> None:
            for a in arrays:
                float(a[..., lo:hi, :].sum())

        out["read_threads"] = len(rows)
        out["read_threads_seconds"] = best_of(lambda: th.run_ranges(read_rows, X, Y), 5)
    sol = dg.solve(p.replace())  # warm-up, and lam* for the oracle timing
    # building a problem object (validation of every array) is not part of a solve: timed apart
    out["construct_seconds"] = best_of(lambda: p.replace(), 3)
    fresh = p.replace()  # a new problem object: nothing cached (validation outside the trace)
    tracemalloc.start()
    dg.solve(fresh)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del fresh
    out["input_bytes"] = sum(a.nbytes for a in arrays)
    out["peak_over_input"] = peak / out["input_bytes"]
    norm = p.normalized
    if hasattr(norm, "final"):  # the stages of a solve of this tree (issue 15, floor)
        out["stats_seconds"] = best_of(lambda: dg.scaling.normalize(p), 3)
        out["final_seconds"] = best_of(lambda: norm.final(sol.lam), 3)
        out["direct"] = bool(norm.direct)
    if hasattr(norm, "exponent_base"):  # q = log pi_ref + r / beta, once per problem
        out["q_seconds"] = best_of(lambda: dg.scaling._log_reference_plus(p), 3)
    out["oracle_seconds"] = best_of(lambda: dg.dual_oracle(p, sol.lam, order=2), 5)
    out["value_seconds"] = best_of(lambda: dg.dual_oracle(p, sol.lam, order=0), 5)
    for backend in backends:
        name, backend = backend, backend.removesuffix("-1")  # "numba-1": on one thread
        kw = {} if backend == "numpy" else {"backend": backend}
        threads = 1
        if th is not None and backend in ("numpy", "numba"):
            th.set_threads(1 if name != backend else None)
            threads = len(th.row_ranges(*p.reward.shape))
        holder = {}
        fresh = [p.replace() for _ in range(3)]  # fresh objects: every solve does its stats pass
        seconds = best_of(lambda kw=kw, h=holder, f=fresh: h.update(sol=dg.solve(f.pop(), **kw)))
        s = holder["sol"]
        ev = dg.dual_oracle(p, s.lam, order=1)  # residual measured by the numpy oracle
        read = out["read_seconds"] if threads == 1 else out["read_threads_seconds"]
        out[name] = {
            **_backend_stages(p, norm, sol.lam, backend),
            "threads": threads,
            "solve_seconds": seconds,
            "passes": s.passes,
            "iterations": s.iterations,
            "kkt_residual": dg.kkt_residual(s.lam, ev.gradient),
            "dual_value": ev.value,
            # CPU: against one single-threaded read; wall: against a read on as many threads
            "floor_ratio": {"cpu": seconds["cpu"] / (s.passes * out["read_seconds"]["cpu"]),
                            "wall": seconds["wall"] / (s.passes * read["wall"])},
        }
        if th is not None:
            th.set_threads(None)
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


def _backend_stages(p, norm, lam: np.ndarray, backend: str) -> dict:
    """The compiled backend's own oracle pass (at lam*, normalized units, as the solve calls it)
    and final pass; numpy: its oracle call on the row's threads; torch: nothing extra."""
    import inspect

    if backend == "numpy":  # on this row's threads
        return {"oracle_seconds": best_of(lambda: dg.dual_oracle(p, lam, order=2), 5)}
    if backend != "numba":
        return {}
    lam_n = norm.to_internal(lam)
    out = {
        "oracle_seconds": best_of(lambda: norm.dual_sums_at(lam_n, norm.beta, 2, "numba"), 5),
        "final_seconds": best_of(lambda: norm.final(lam, "numba"), 3),
    }
    if "compiled" in inspect.signature(dg.scaling.normalize).parameters:  # stats with q fused
        out["stats_seconds"] = best_of(lambda: dg.scaling.normalize(p, compiled=True), 3)
        out["q_fused"] = True
    if hasattr(norm, "take_policy"):  # the last oracle pass also writes pi* (no final pass)

        def fused() -> None:
            norm.dual_sums_at(lam_n, norm.beta, 2, "numba", policy=True)
            norm.memo.pop("policy_at", None)

        out["fused_final_seconds"] = best_of(fused, 3)
    return out


def _worker(root: Path, args: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root))
    res = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True,
                         text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"worker {args[0]} under {root} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def run_floor(entries: float, before: str | None, rounds: int = 2, m: int = 3,
              torch_backend: bool = True) -> dict:
    """Before/after rows measured in one run on the same saved instance, ``rounds`` times
    alternately (the least time of each kept)."""
    X, Y = SHAPES[entries]
    p = random_problem(int(entries) + m, X, Y, m, beta=0.5, support_fraction=0.9,
                       tightness=0.9)
    result: dict = {"entries": int(entries), "X": X, "Y": Y, "m": m, "rows": {}}
    with tempfile.TemporaryDirectory() as tmp:
        npz = str(Path(tmp) / "instance.npz")
        p.save(npz)
        del p
        trees = {"before": Path(tmp) / "before", "after": HERE.parent}
        if before:
            trees["before"].mkdir()
            archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", before,
                                      "dualgap"], capture_output=True, check=False)
            if archive.returncode:
                result["rows"]["before"] = {"skipped": f"git archive {before} failed"}
            else:
                subprocess.run(["tar", "-x", "-C", str(trees["before"])], input=archive.stdout,
                               check=True)
        backends = {"before": ["numpy"], "after": ["numpy", "numpy-1"]}
        from dualgap import dual_numba

        if dual_numba.available():
            backends["after"] += ["numba", "numba-1"]
            if (trees["before"] / "dualgap" / "dual_numba.py").exists():
                backends["before"].append("numba")
        try:
            import torch  # noqa: F401

            if torch_backend:
                backends["after"].append("torch")
        except ImportError:
            pass
        todo = [t for t in ("before", "after") if t not in result["rows"] and
                (t == "after" or before)]
        for _ in tqdm(range(rounds), desc=f"floor rounds (m = {m})", unit="round"):
            for tree in todo:  # alternate, so both trees see the same load
                row = _worker(trees[tree], ["--floor-worker", npz, *backends[tree]])
                result["rows"][tree] = _least(result["rows"].get(tree), row)
        for tree in todo:
            result["rows"][tree]["revision"] = before if tree == "before" else "working tree"
    return result


def _least(a: dict | None, b: dict) -> dict:
    """Per timing, the smaller of two rounds (other fields from the later one)."""
    if a is None:
        return b
    out = dict(b)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            out[k] = ({t: min(a[k][t], v[t]) for t in v} if set(v) == {"wall", "cpu"}
                      else _least(a[k], v))
    return out


def floor_markdown(res: dict) -> str:
    out = [
        f"Floor at {res['entries']:.0e} entries, m = {res['m']} ({res['X']} x {res['Y']}), one "
        "run, CPU seconds (wall in parentheses); `floor` = solve / (passes x one numpy read of "
        "every input array), in CPU time against a single-threaded read, and in wall time "
        "against a read split over as many threads as the solve used (`threads`); `solve` "
        "times `dg.solve` on a fresh problem object built outside the timer; `speed-up`: the "
        "same backend's before row over this row, in CPU and in wall time.",
        "",
        "| tree | backend | threads | read | oracle (D, grad, hess) | D only | solve | passes | "
        "KKT residual | floor ratio CPU (wall) | solve speed-up CPU (wall) | peak mem / input |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = res["rows"]

    def t(v: dict) -> str:
        return f"{v['cpu']:.4f} ({v['wall']:.4f})"

    for tree, r in rows.items():
        if "skipped" in r:
            out.append(f"| {tree} | {r['skipped']} | | | | | | | | | | |")
            continue
        for name in ("numpy", "numpy-1", "numba", "numba-1", "torch"):
            if name not in r:
                continue
            b, backend = r[name], name.removesuffix("-1")
            threads = b.get("threads", 1)
            base = rows.get("before", {}).get(backend, {}).get("solve_seconds")
            speed = (f"{base['cpu'] / b['solve_seconds']['cpu']:.2f}x "
                     f"({base['wall'] / b['solve_seconds']['wall']:.2f}x)" if base else "n/a")
            read = r["read_seconds"] if threads == 1 else r["read_threads_seconds"]
            ratio = b["floor_ratio"]
            out.append(
                f"| {tree} | {backend} | {threads} | {read['cpu']:.4f} ({read['wall']:.4f}) | "
                f"{t(b.get('oracle_seconds', r['oracle_seconds']))} | "
                f"{t(r['value_seconds'])} | {t(b['solve_seconds'])} | {b['passes']} | "
                f"{b['kkt_residual']:.1e} | {ratio['cpu']:.1f}x ({ratio['wall']:.1f}x) | "
                f"{speed} | {r.get('peak_over_input', float('nan')):.2f} |"
            )
    after = rows.get("after", {})
    if "stats_seconds" in after:
        q = after.get("q_seconds", {}).get("cpu")
        for backend in ("numpy", "numba"):
            if backend not in after:
                continue
            n = after[backend]
            label = backend + (f" ({n['threads']} threads)" if n.get("threads", 1) > 1 else "")
            oracle = n.get("oracle_seconds", after["oracle_seconds"])["cpu"]
            final = n.get("final_seconds", after["final_seconds"])["cpu"]
            fused = n.get("q_fused", False)
            stats = n.get("stats_seconds", after["stats_seconds"])["cpu"]
            if "fused_final_seconds" in n:  # the last oracle pass writes pi*: no final pass
                tail = (f", {n['passes'] - 2} oracle passes x {oracle:.4f} and the last one, "
                        f"which also writes pi* (no final pass), "
                        f"{n['fused_final_seconds']['cpu']:.4f} (evaluation ")
            else:
                tail = (f", {n['passes'] - 2} oracle passes x {oracle:.4f}, the final policy "
                        f"pass {final:.4f} (evaluation ")
            out += ["", f"Where this tree's {label} solve goes (CPU s): the stats pass "
                    f"{stats:.4f}"
                    + (" (compiled, q = log pi_ref + r / beta fused in)" if fused else
                       f", q = log pi_ref + r / beta {q:.4f} (once per problem)" if q else "")
                    + tail
                    + f"{'direct, no normalized copy' if after['direct'] else 'copy'}); one oracle "
                    f"pass is {oracle / after['read_seconds']['cpu']:.1f}x one read; building "
                    f"the problem object (not timed in solve) "
                    f"{after.get('construct_seconds', {}).get('cpu', float('nan')):.4f}."]
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
        *(f"| {name} | {r['entries']:.0e} | {r['seconds']:.2f} | {r['passes']} | "
          f"{r['kkt_residual']:.1e} | {r['peak_alloc_bytes'] / gb:.3f} GiB | "
          f"{r['peak_rss_bytes'] / gb:.2f} GiB | {r['input_bytes'] / gb:.2f} GiB |"
          for name, r in (("memory-mapped, chunked", f), ("first tenth, chunked", s))),
        "",
        f"First tenth of the prompts solved in memory: max |lam_chunked - lam_in_memory| = "
        f"{s['lam_difference']:.1e}, |D_chunked - D_in_memory| = {s['dual_difference']:.1e}.",
    ])


def main(argv: list[str]) -> int:
    if argv[:1] == ["--floor-worker"]:
        print(json.dumps(floor_worker(argv[1], argv[2:])))
        return 0
    if argv[:1] == ["--memory-worker"]:
        print(json.dumps(memory_worker(argv[1], json.loads(argv[2]), float(argv[3]),
                                       int(argv[4]))))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

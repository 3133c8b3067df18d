"""How long ``dualgap claims --quick`` takes, per experiment, before and after (issue 15).

Usage::

    python benchmarks/claims_speed.py                  # this tree and BEFORE_REV, alternating
    python benchmarks/claims_speed.py --rounds 2       # two runs per tree (ABAB)
    python benchmarks/claims_speed.py --before none    # this tree only

Each run is a subprocess (``--worker``) that imports whichever ``dualgap`` is first on
``PYTHONPATH`` and runs :func:`dualgap.claims.claims_ledger` with ``quick=True``: this tree
("after") and a ``git archive`` of ``--before`` (default :data:`BEFORE_REV`, main when the
session's issue 15 work began) ("before"), alternated so both sides see the same machine state.
Per experiment: the ledger's own ``timings`` (wall), and the run's wall and CPU time (the
process's, imports included).  The rows are compared: the same claims with the same counts
(``holds``, ``failed``, ...) on both sides, and the largest change of any number in their
``details``, ``|a - b| / max(1, |b|)``.

Writes ``benchmarks/results/claims_speed.json`` and the table between the ``claims_speed``
markers of ``benchmarks/README.md``.
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
sys.path.insert(0, str(HERE))
from theory_speed import archive_tree, write_readme  # noqa: E402  (the same helpers)

RESULT = HERE / "results" / "claims_speed.json"
#: main at the start of session 6 (issue 15)
BEFORE_REV = "78a30e1"
EXPERIMENTS = ("theory sweep", "stochastic", "Fig 1a", "Fig 1b", "multi", "sample size")


def worker() -> dict:
    """One quick ledger in this process: timings, wall and CPU time, and the rows."""
    t0, c0 = time.perf_counter(), time.process_time()
    import dualgap
    from dualgap.claims import claims_ledger

    ledger = claims_ledger(quick=True)
    return {"dualgap": dualgap.__file__, "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0, "ledger_s": ledger.seconds,
            "timings": ledger.timings, "rows": [r.to_dict() for r in ledger.rows]}


def run_worker(tree: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               DUALGAP_QUICK="1")
    out = subprocess.run([sys.executable, str(HERE / "claims_speed.py"), "--worker"], env=env,
                         capture_output=True, text=True, check=False, cwd=tree)
    if out.returncode != 0:
        raise RuntimeError(f"worker in {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _numbers(x, path=""):
    """``{path: number}`` of every int or float in a JSON value (bools excluded)."""
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _numbers(v, f"{path}/{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        yield path, float(x)


def compare_rows(before: list, after: list) -> dict:
    """The same claims with the same counts, and the largest relative change of a number."""
    kinds = ("instances", "holds", "by_construction", "not_met", "failed", "search_failure",
             "undecided", "inconclusive")
    b = {r["claim"]: r for r in before}
    a = {r["claim"]: r for r in after}
    same = sorted(b) == sorted(a)
    counts = same and all(b[c].get(k) == a[c].get(k) for c in b for k in kinds)
    change, where = 0.0, None
    for c in set(a) & set(b):
        nb, na = dict(_numbers(b[c].get("details"))), dict(_numbers(a[c].get("details")))
        for k in set(nb) & set(na):
            d = abs(na[k] - nb[k]) / max(1.0, abs(nb[k]))
            if d > change:
                change, where = d, f"{c}: details{k}"
    return {"same_claims": same, "same_counts": bool(counts), "max_relative_change": change,
            "largest_change_at": where}


def table(res: dict) -> str:
    sides = [s for s in ("before", "after") if res["runs"].get(s)]
    lines = ["| tree | run | " + " | ".join(EXPERIMENTS) + " | ledger [s] | process wall [s] "
             "| process CPU [s] |", "|---|---|" + "---|" * (len(EXPERIMENTS) + 3)]
    for side in sides:
        for i, r in enumerate(res["runs"][side]):
            lines.append(f"| {side} | {i + 1} | "
                         + " | ".join(f"{r['timings'].get(e, float('nan')):.1f}"
                                      for e in EXPERIMENTS)
                         + f" | {r['ledger_s']:.1f} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} |")
    if len(sides) == 2:
        def best(side, key):
            return min(r["timings"][key] if key in EXPERIMENTS else r[key]
                       for r in res["runs"][side])
        lines.append("| after / before | best of runs | "
                     + " | ".join(f"{best('after', e) / best('before', e):.2f}"
                                  for e in EXPERIMENTS)
                     + " | " + " | ".join(f"{best('after', k) / best('before', k):.2f}"
                                          for k in ("ledger_s", "wall_s", "cpu_s")) + " |")
        c = res["rows_compared"]
        lines.append("")
        lines.append(f"Rows: same claims {c['same_claims']}, same counts {c['same_counts']}, "
                     f"largest relative change of a number in the details "
                     f"{c['max_relative_change']:.1e} ({c['largest_change_at']}).")
    lines.append(f"Load average before / after the runs: {res['load'][0]} / {res['load'][1]}.")
    return "\n".join(lines)


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--before", default=BEFORE_REV,
                    help=f"revision to compare with, or 'none' (default {BEFORE_REV})")
    ap.add_argument("--rounds", type=int, default=1, help="runs per tree, alternating")
    ap.add_argument("--no-readme", action="store_true", help="do not update README.md")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker()))
        return
    if args.rounds < 1:
        raise SystemExit(f"--rounds: must be >= 1, got {args.rounds}")
    res: dict = {"before_rev": None if args.before == "none" else args.before,
                 "runs": {"before": [], "after": []}, "load": [_load(), None]}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"after": ROOT}
        if args.before != "none":
            trees["before"] = archive_tree(args.before, Path(tmp) / "before")
        for _ in range(args.rounds):
            for side in ("before", "after"):
                if side in trees:
                    r = run_worker(trees[side])
                    res["runs"][side].append(r)
                    print(side, {k: round(v, 1) for k, v in r["timings"].items()},
                          f"wall {r['wall_s']:.1f} s, CPU {r['cpu_s']:.1f} s", flush=True)
    res["load"][1] = _load()
    if res["runs"]["before"]:
        res["rows_compared"] = compare_rows(res["runs"]["before"][-1]["rows"],
                                            res["runs"]["after"][-1]["rows"])
    for side in res["runs"].values():
        for r in side:
            r.pop("rows")
    text = table(res)
    print(text)
    RESULT.parent.mkdir(exist_ok=True)
    RESULT.write_text(json.dumps(res, indent=1))
    if not args.no_readme:
        write_readme(text, "claims_speed")


if __name__ == "__main__":
    main()

"""``dualgap llm synthetic``: the llm pipeline against the exact answer on the synthetic language.

    dualgap llm synthetic                          # default size: 1.5-5 minutes of CPU
    dualgap llm synthetic --size tiny --output-dir runs/synthetic-tiny
    dualgap llm synthetic --methods caid --no-sweep --json

Prints the comparison table (exact answer; the pipeline's CAID and one-shot iterates evaluated
exactly; ``nu`` and the bounds per transformer class, from :func:`dualgap.report.gap_report`),
then a summary (each constraint met or missed and by how much, ``lam`` against ``lam*``, where
the files went), and writes ``comparison.json`` and the figures ``pipeline_vs_exact.png`` and
``gaps_vs_nu.png`` to the output directory (default ``runs/synthetic``, git-ignored).  A rerun
in the same directory reuses the trained reference and finished pipeline runs.

Time: the default size needs 1.5-5 minutes of CPU, depending on the machine (session 7: 85-87
s of wall and CPU time on an idle 2-core machine, 60 s with the capacity sweep on the second
core (``--parallel``: ``auto``, the default, does so where a core is idle); session 6, on a
machine about 2.5x slower: 259 s of CPU time).  The theory for the four transformer classes
is about 60% of it, the pipeline (generation, scoring and the DPO steps) about a third; see
``python benchmarks/theory_speed.py --synthetic``.
The tiny size takes under a minute of CPU.

Registration imports argparse only (the sizes and methods are checked against
:data:`.config.SIZES` and :data:`.config.METHODS` when the command runs); the work happens in
:mod:`.compare`.
"""

from __future__ import annotations

import argparse

__all__ = ["add_synthetic_parser"]



def add_synthetic_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``synthetic`` subcommand to ``subparsers`` (the ``dualgap llm`` group)."""
    p = subparsers.add_parser(
        "synthetic", help="the pipeline against the exact answer on a synthetic language",
        description="Train a tiny GPT-2 on a synthetic language whose every response can be "
        "enumerated, solve the constrained problem exactly, run the pipeline's CAID and "
        "one-shot on it, and check the paper's bounds with nu measured by distillation across "
        "transformer capacities.")
    p.add_argument("--size", default="default",
                   help="a size of dualgap.llm.synthetic.config.SIZES (default: %(default)s, "
                   "1.5-5 minutes of CPU; tiny is the tests' and the notebook's)")
    p.add_argument("--output-dir", default="runs/synthetic",
                   help="where the reference, the runs, comparison.json and the figures go "
                   "(default: %(default)s)")
    p.add_argument("--methods", default=None,
                   help="comma-separated pipeline methods to run, from "
                   "dualgap.llm.synthetic.config.METHODS; '' for none (default: all)")
    p.add_argument("--no-sweep", action="store_true",
                   help="skip the capacity sweep; the reference class is always measured "
                   "(default: off)")
    p.add_argument("--no-figures", action="store_true", help="skip the figures (default: off)")
    p.add_argument("--json", action="store_true",
                   help="print comparison.json instead of tables (default: off)")
    p.add_argument("--parallel", choices=("auto", "yes", "no"), default="auto",
                   help="measure the capacity sweep in a second process beside the pipeline "
                   "(same numbers); auto: where a second core is idle (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (default: off)")
    p.set_defaults(func=_synthetic)
    return p


def _synthetic(args: argparse.Namespace) -> int:
    import json
    import logging

    from .config import METHODS, SIZES

    if args.size not in SIZES:
        raise ValueError(f"--size: unknown size {args.size!r}; known: {sorted(SIZES)}")
    methods = METHODS if args.methods is None else tuple(
        m.strip() for m in args.methods.split(",") if m.strip())
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"--methods: unknown method(s) {bad}; known: {list(METHODS)}")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    if args.no_progress:
        import datasets

        datasets.disable_progress_bars()
    from .compare import compare

    cmp = compare(args.size, args.output_dir, methods=methods, sweep=not args.no_sweep,
                  figures=not args.no_figures, progress=not args.no_progress,
                  parallel={"auto": "auto", "yes": True, "no": False}[args.parallel])
    if args.json:
        print(json.dumps(cmp.to_dict(), indent=1, default=str))
    else:
        print(cmp)
    return 0

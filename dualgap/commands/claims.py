"""``dualgap claims``: the ledger of all 14 claims (docs/claims.md).

    dualgap claims --quick                     # reduced sizes, about 2 minutes of CPU
    dualgap claims --json > claims.json        # full sizes (>= 50 theory instances)
    dualgap claims --counterexamples cx/       # save counterexamples as cx/*.npz (+ .json)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UserError
from ._args import positive_int
from ._io import dumps


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "claims",
        help="the ledger of all 14 claims: what was checked, on how many instances, the counts",
        description="Check every claim of the paper (Lemmas 1-5, Theorems 1-4, the stochastic "
        "theorem, Fig 1a, Fig 1b, several constraints, the one-shot sample size) and print one "
        "table: informative holds, by construction, assumption not met, failed, undecided, "
        "inconclusive, and the notebook telling each story (docs/claims.md).",
    )
    p.add_argument("--quick", action="store_true",
                   help="reduced sizes (the test suite's; default: off, full sizes)")
    p.add_argument("--json", action="store_true", help="print the ledger as JSON (default: off)")
    p.add_argument("--instances", type=positive_int, default=None, metavar="N",
                   help="theory-sweep instances (default: 54, with --quick 6)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the theory sweep (default: %(default)s)")
    p.add_argument("--counterexamples", default=None, metavar="DIR",
                   help="folder for counterexamples (.npz + .json); created if missing, its "
                   "parent must exist (default: not saved)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars on stderr (default: off)")
    p.set_defaults(func=_claims)


def _claims(args: argparse.Namespace) -> int:
    import warnings

    from ..claims import claims_ledger
    from ..solver import BoundaryFeasibleWarning

    save = None
    if args.counterexamples is not None:
        save = Path(args.counterexamples)
        if save.exists() and not save.is_dir():
            raise UserError(f"--counterexamples: {str(save)!r} is a file, not a folder")
        if not save.parent.is_dir():
            raise UserError(f"--counterexamples: folder {str(save.parent)!r} does not exist")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryFeasibleWarning)
        ledger = claims_ledger(quick=args.quick, instances=args.instances, seed=args.seed,
                               save_dir=save, progress=not args.no_progress)
    sys.stdout.write((dumps(ledger.to_dict()) if args.json else str(ledger)) + "\n")
    return 0

"""``dualgap report``: the parametrization gaps and every bound of the theory for one policy
class, as a table (each symbol it prints is defined in ``docs/theory.md``).

    dualgap report                                   # the demo instance, log-linear class
    dualgap report problem.npz --policy mlp --hidden 8 --feature-noise 0.5
    dualgap report --policy loglinear --feature-noise 0.1 --json > report.json
"""

from __future__ import annotations

import argparse
import sys

from ._args import nonneg_float, positive_float, positive_int
from .run import DEFAULT_INSTANCE

#: ``--feature-noise`` of the log-linear and MLP classes when the option is not given
DEFAULT_NOISE = 0.1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="parametrized dual/primal, the gap nu and every bound of the theory, as a table",
        description="Solve an instance exactly and over a policy class, measure the "
        "parametrization gap nu, and check each statement of the theory (Lemmas 1-5, Theorems "
        "1-4) against the measured quantities. Without FILE: " + DEFAULT_INSTANCE + ". "
        "Every symbol of the table is defined in docs/theory.md.",
    )
    p.add_argument("file", nargs="?", help="instance (.npz, schema: dualgap.NPZ_FIELDS); "
                   f"default: {DEFAULT_INSTANCE}")
    p.add_argument("--policy", choices=("tabular", "loglinear", "mlp"), default="loglinear",
                   help="policy class (default: %(default)s)")
    p.add_argument("--feature-noise", type=nonneg_float, default=None, metavar="SIGMA",
                   help="log-linear/MLP features are [r, g_1..g_m] + SIGMA * std * N(0,1); "
                   f"0 gives a class that contains every pi_lam (default: {DEFAULT_NOISE:g})")
    p.add_argument("--feature-seed", type=int, default=0,
                   help="seed of the feature noise and of the MLP's initialization "
                   "(default: %(default)s)")
    p.add_argument("--hidden", type=positive_int, default=8,
                   help="MLP width (--policy mlp; default: %(default)s)")
    p.add_argument("--depth", type=positive_int, default=1,
                   help="MLP hidden layers (--policy mlp; default: %(default)s)")
    p.add_argument("--starts", type=positive_int, default=None,
                   help="starts of each Lagrangian maximization (default: 1, MLP 2)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random starts (default: %(default)s)")
    p.add_argument("--tol", type=positive_float, default=1e-9,
                   help="bundle tolerance of the parametrized dual (default: %(default)g)")
    p.add_argument("--no-cvxpy", action="store_true",
                   help="skip the cvxpy cross-check of P* (default: off)")
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON (default: off)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar on stderr (default: off)")
    p.set_defaults(func=_report)


def build_policy_class(problem, policy: str, noise: float = DEFAULT_NOISE, feature_seed: int = 0,
                       hidden: int = 8, depth: int = 1):
    """The policy class named by ``--policy`` on ``problem`` (used by ``dualgap report``)."""
    from ..policies import LogLinearPolicy, MLPPolicy, TabularPolicy, problem_features

    if policy == "tabular":
        return TabularPolicy(problem)
    feats = problem_features(problem, noise=noise, seed=feature_seed)
    if policy == "loglinear":
        return LogLinearPolicy(problem, feats)
    if policy == "mlp":
        return MLPPolicy(problem, feats, hidden=hidden, depth=depth, seed=feature_seed)
    raise ValueError(f"policy: must be tabular, loglinear or mlp, got {policy!r}")


def _report(args: argparse.Namespace) -> int:
    from ..instances import demo_problem
    from ..problem import AlignmentProblem
    from ..report import gap_report

    if args.policy == "tabular" and args.feature_noise is not None:
        raise ValueError("--feature-noise: only for --policy loglinear or mlp, got --policy "
                         "tabular")
    noise = DEFAULT_NOISE if args.feature_noise is None else args.feature_noise
    problem = AlignmentProblem.load(args.file) if args.file else demo_problem()
    cls = build_policy_class(problem, args.policy, noise, args.feature_seed,
                             args.hidden, args.depth)
    report = gap_report(problem, cls, starts=args.starts, seed=args.seed, tol=args.tol,
                        cvxpy_check=not args.no_cvxpy, progress=not args.no_progress)
    if args.json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        print(report)
        print("symbols and assumptions: docs/theory.md")
    return 0


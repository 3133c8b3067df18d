"""``dualgap report``: the parametrization gaps and the bounds of SPEC §2 for one policy class.

    dualgap report                                   # built-in small instance, log-linear class
    dualgap report problem.npz --policy mlp --hidden 8 --features-noise 0.5
    dualgap report --policy loglinear --features-noise 0.1 --json > report.json
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="parametrized dual/primal, the gap nu and every bound of the theory, as a table",
        description="Solve an instance exactly and over a policy class, measure the "
        "parametrization gap nu, and check each statement of the theory (Lemmas 1-5, Theorems "
        "1-4) against the measured quantities. Without FILE, a small built-in instance "
        "(random_problem(seed=0, 6 prompts x 8 responses, 2 constraints)) is used.",
    )
    p.add_argument("file", nargs="?", help="instance file (.npz, schema: dualgap.NPZ_FIELDS)")
    p.add_argument("--policy", choices=("tabular", "loglinear", "mlp"), default="loglinear",
                   help="policy class (default: %(default)s)")
    p.add_argument("--features-noise", type=float, default=0.1, metavar="SIGMA",
                   help="log-linear/MLP features are [r, g_1..g_m] + SIGMA * std * N(0,1); "
                   "0 gives a class that contains every pi_lam (default: %(default)s)")
    p.add_argument("--features-seed", type=int, default=0, help="seed of the feature noise")
    p.add_argument("--hidden", type=int, default=8, help="MLP width (default: %(default)s)")
    p.add_argument("--depth", type=int, default=1, help="MLP hidden layers (default: %(default)s)")
    p.add_argument("--starts", type=int, default=None,
                   help="starts of each Lagrangian maximization (default: 1, MLP 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random starts")
    p.add_argument("--tol", type=float, default=1e-9,
                   help="bundle tolerance of the parametrized dual (default: %(default)g)")
    p.add_argument("--no-cvxpy", action="store_true", help="skip the cvxpy cross-check of P*")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_report)


def build_policy_class(problem, policy: str, noise: float = 0.1, features_seed: int = 0,
                       hidden: int = 8, depth: int = 1):
    """The policy class named by ``--policy`` on ``problem`` (used by ``dualgap report``)."""
    from ..policies import LogLinearPolicy, MLPPolicy, TabularPolicy, problem_features

    if policy == "tabular":
        return TabularPolicy(problem)
    feats = problem_features(problem, noise=noise, seed=features_seed)
    if policy == "loglinear":
        return LogLinearPolicy(problem, feats)
    if policy == "mlp":
        return MLPPolicy(problem, feats, hidden=hidden, depth=depth, seed=features_seed)
    raise ValueError(f"policy: must be tabular, loglinear or mlp, got {policy!r}")


def _report(args: argparse.Namespace) -> int:
    from ..problem import AlignmentProblem
    from ..report import gap_report

    if args.file:
        problem = AlignmentProblem.load(args.file)
    else:
        from ..instances import random_problem

        problem = random_problem(0, 6, 8, 2, 0.5)
    if args.starts is not None and args.starts < 1:
        raise ValueError(f"starts: must be >= 1, got {args.starts}")
    cls = build_policy_class(problem, args.policy, args.features_noise, args.features_seed,
                             args.hidden, args.depth)
    report = gap_report(problem, cls, starts=args.starts, seed=args.seed, tol=args.tol,
                        cvxpy_check=not args.no_cvxpy)
    if args.json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        print(report)
    return 0

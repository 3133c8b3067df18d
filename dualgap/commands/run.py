"""``dualgap run {caid,one-shot,primal-dual,dual-descent} [FILE.npz]``: run an algorithm on an
instance (default: the built-in demo instance), write its trajectory as JSON and a figure.

    dualgap run dual-descent problem.npz --iterations 500 --samples 16 --step-rule constant \\
        --step-size 0.05
    dualgap run caid problem.npz --policy loglinear --feature-noise 0.3 --iterations 40 \\
        --step-size 1.0 --inner-steps 10
    dualgap run one-shot --one-shot-samples 64
    dualgap run primal-dual problem.npz --iterations 10000 --dual-step 0.1 --mode alternating

Every option belongs to one algorithm; an option that does not belong to the one chosen is an
error.  The JSON is :meth:`dualgap.algorithms.Trajectory.to_json`.
"""

from __future__ import annotations

import argparse
import sys

ALGORITHMS = ("caid", "one-shot", "primal-dual", "dual-descent")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def _common(p: argparse.ArgumentParser, algo: str) -> None:
    p.add_argument("file", nargs="?", help="instance (.npz, schema: dualgap.NPZ_FIELDS); "
                   "default: the built-in demo instance")
    p.add_argument("--seed", type=int, default=0, help="seed for all samples (default 0)")
    p.add_argument("--out", default=f"dualgap-{algo}.json",
                   help="trajectory JSON (default: %(default)s)")
    p.add_argument("--figure", default=f"dualgap-{algo}.png",
                   help="trajectory figure (default: %(default)s)")
    p.add_argument("--no-figure", action="store_true", help="skip the figure")
    p.add_argument("--no-exact", action="store_true",
                   help="do not solve the instance exactly for reference (lam*, P*)")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.add_argument("--torch-threads", type=_positive_int, default=None,
                   help="torch intra-op threads (default: torch's own choice; 1 is much "
                   "faster for small tables on a busy machine)")


def _policy(p: argparse.ArgumentParser, default: str, allow_exact: bool = True) -> None:
    choices = ("exact", "tabular", "loglinear") if allow_exact else ("tabular", "loglinear")
    p.add_argument("--policy", choices=choices, default=default,
                   help="policy step: exact pi_lam (distribution space), the tabular class, or "
                   "a log-linear class on features [r, g] + noise (default: %(default)s)")
    p.add_argument("--feature-noise", type=float, default=0.0,
                   help="relative noise on the log-linear features (nu > 0 when > 0; "
                   "default %(default)g)")


def _inner(p: argparse.ArgumentParser, default: int | None) -> None:
    p.add_argument("--inner-steps", type=_positive_int, default=default,
                   help="iterations of each policy step (default: %(default)s; "
                   "omit for one-shot = to convergence)")
    p.add_argument("--inner-method", choices=("auto", "natural", "lbfgs"), default="auto",
                   help="optimizer of the policy step (default: %(default)s)")


def _dual_steps(p: argparse.ArgumentParser, rule: str) -> None:
    p.add_argument("--iterations", type=_nonneg_int, default=50,
                   help="dual steps T (default %(default)s)")
    p.add_argument("--step-rule", choices=("constant", "sqrt", "smooth"), default=rule,
                   help="eta_t: constant, eta/sqrt(t+1), or (step-size or 1)/L_D "
                   "(default: %(default)s)")
    p.add_argument("--step-size", type=float, default=None, help="eta")
    p.add_argument("--samples", type=_positive_int, default=None,
                   help="N sampled responses per prompt for the dual step (default: exact)")


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run", help="run CAID, one-shot, primal-dual or dual descent; write trajectory + figure",
        description="Run an algorithm on an instance and write its trajectory (JSON) and a "
        "figure. Algorithms: " + ", ".join(ALGORITHMS) + ".")
    algos = run.add_subparsers(dest="algorithm", required=True, metavar="ALGORITHM")

    dd = algos.add_parser("dual-descent", help="projected (sub)gradient descent on D "
                          "(distribution space)")
    _common(dd, "dual-descent")
    _dual_steps(dd, "smooth")

    ca = algos.add_parser("caid", help="iterative dualization with warm-started policy steps")
    _common(ca, "caid")
    _policy(ca, "tabular")
    _dual_steps(ca, "smooth")
    _inner(ca, 5)
    ca.add_argument("--start", choices=("practical", "literal"), default="practical",
                    help="practical: one-shot lam first; literal: first dual step at pi_ref")
    ca.add_argument("--one-shot-samples", type=_positive_int, default=64,
                    help="K reference samples per prompt for the practical start (default 64)")

    os_ = algos.add_parser("one-shot", help="lam from K reference samples, one policy step")
    _common(os_, "one-shot")
    _policy(os_, "tabular")
    _inner(os_, None)
    os_.add_argument("--one-shot-samples", type=_positive_int, default=64,
                     help="K reference samples per prompt (default 64)")

    pd = algos.add_parser("primal-dual", help="gradient descent-ascent (Safe RLHF family)")
    _common(pd, "primal-dual")
    _policy(pd, "tabular", allow_exact=False)
    pd.add_argument("--iterations", type=_nonneg_int, default=1000,
                    help="joint steps (default %(default)s)")
    pd.add_argument("--primal-lr", type=float, default=0.5, help="alpha (default %(default)g)")
    pd.add_argument("--dual-step", type=float, default=0.5, help="eta (default %(default)g)")
    pd.add_argument("--mode", choices=("simultaneous", "alternating"), default="simultaneous")
    pd.add_argument("--multiplier", choices=("linear", "log", "pid"), default="linear")
    pd.add_argument("--kp", type=float, default=0.0, help="PID proportional gain (units of eta)")
    pd.add_argument("--kd", type=float, default=0.0, help="PID derivative gain (units of eta)")
    pd.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    pd.add_argument("--samples", type=_positive_int, default=None,
                    help="N sampled responses per prompt for u (default: exact)")
    pd.add_argument("--record-every", type=_positive_int, default=1,
                    help="keep every k-th record (default 1)")
    for p in (dd, ca, os_, pd):
        p.set_defaults(func=_run)


def _policy_class(args: argparse.Namespace, problem):
    if args.policy == "exact":
        if args.feature_noise:
            raise ValueError("--feature-noise: only for --policy loglinear")
        return None
    from ..policies import LogLinearPolicy, TabularPolicy, problem_features

    if args.policy == "tabular":
        if args.feature_noise:
            raise ValueError("--feature-noise: only for --policy loglinear")
        return TabularPolicy(problem)
    return LogLinearPolicy(problem, problem_features(problem, noise=args.feature_noise,
                                                     seed=args.seed))


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import algorithms as A
    from ..instances import demo_problem
    from ..problem import AlignmentProblem
    from ..solver import solve
    from ._io import check_output_path

    check_output_path(args.out, "--out")
    if args.torch_threads is not None:
        import torch

        torch.set_num_threads(args.torch_threads)
    problem = AlignmentProblem.load(args.file) if args.file else demo_problem()
    exact = None if args.no_exact else solve(problem)
    algo = args.algorithm
    if algo == "dual-descent":
        tr = A.dual_descent(problem, args.iterations, step_rule=args.step_rule,
                            step_size=args.step_size, samples=args.samples, seed=args.seed,
                            exact_solution=exact, progress=args.progress)
    elif algo == "caid":
        tr = A.caid(problem, _policy_class(args, problem), iterations=args.iterations,
                    step_rule=args.step_rule, step_size=args.step_size,
                    inner_steps=args.inner_steps, inner_method=args.inner_method,
                    samples=args.samples, start=args.start,
                    one_shot_samples=args.one_shot_samples, seed=args.seed,
                    exact_solution=exact, progress=args.progress)
    elif algo == "one-shot":
        tr = A.one_shot(problem, _policy_class(args, problem), samples=args.one_shot_samples,
                        seed=args.seed, inner_steps=args.inner_steps,
                        inner_method=args.inner_method, exact_solution=exact)
    else:
        tr = A.primal_dual(problem, _policy_class(args, problem), iterations=args.iterations,
                           primal_lr=args.primal_lr, dual_step=args.dual_step, mode=args.mode,
                           multiplier=args.multiplier, kp=args.kp, kd=args.kd,
                           optimizer=args.optimizer, samples=args.samples, seed=args.seed,
                           record_every=args.record_every, exact_solution=exact,
                           progress=args.progress)
    tr.to_json(args.out)
    if not args.no_figure:
        from ..plots.trajectories import plot_trajectories

        plot_trajectories(tr, labels=[algo], path=args.figure)
    names = problem.names
    np.set_printoptions(precision=6, suppress=True)
    lines = [f"{algo} on {problem!r}: {tr.num_records} records, {tr.time[-1]:.3g} s",
             f"  last lam        = {tr.lam[-1]}  ({', '.join(names)})",
             f"  last slack E h  = {tr.slack[-1]}  (>= 0: met)",
             f"  last J(pi)      = {tr.objective[-1]:.10g}"]
    if exact is not None:
        lines += [f"  exact lam*      = {exact.lam}",
                  f"  exact P*        = {exact.primal_value:.10g}"]
    lines.append(f"  trajectory -> {args.out}" + ("" if args.no_figure
                                                  else f", figure -> {args.figure}"))
    print("\n".join(lines), file=sys.stdout)
    return 0

"""``dualgap run {caid,one-shot,primal-dual,dual-descent} [FILE.npz]``: run an algorithm on an
instance (default: the built-in demo instance, ``dualgap demo --describe``), write its
trajectory as JSON and a figure (default: under ``dualgap-out/``), and end with a summary.

    dualgap run dual-descent problem.npz --iterations 500 --samples 16 --step-rule constant \\
        --step-size 0.05
    dualgap run caid problem.npz --policy loglinear --feature-noise 0.3 --iterations 40 \\
        --step-rule curvature --inner-steps 10
    dualgap run one-shot --one-shot-samples 64
    dualgap run primal-dual problem.npz --iterations 10000 --dual-step 0.1 --mode alternating

Every option belongs to one algorithm; an option that does not belong to the one chosen is an
error.  The JSON is :meth:`dualgap.algorithms.Trajectory.to_json`.  The symbols of the summary
(``E h``, ``lam*``, ``lam*_p``, ``nu``) are defined in ``docs/problem.md`` and ``docs/theory.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..dual_steps import DEFAULT_RULE, DUAL_STEP_RULES
from ._args import nonneg_float, nonneg_int, positive_float, positive_int

ALGORITHMS = ("caid", "one-shot", "primal-dual", "dual-descent")
#: the folder of every default output of ``dualgap run`` (listed in ``.gitignore``)
DEFAULT_OUT_DIR = "dualgap-out"
DEFAULT_INSTANCE = "the built-in demo instance (dualgap demo --describe)"
#: ``--step-rule`` values of ``run caid`` that need no number (dualgap.dual_steps)
SELF_TUNING = ("auto", *DUAL_STEP_RULES)


def _common(p: argparse.ArgumentParser, algo: str) -> None:
    p.add_argument("file", nargs="?", help="instance (.npz, schema: dualgap.NPZ_FIELDS); "
                   f"default: {DEFAULT_INSTANCE}")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of every sample and of the feature noise (default: %(default)s)")
    p.add_argument("--out-dir", default=DEFAULT_OUT_DIR, metavar="DIR",
                   help="folder of the default outputs, created if missing "
                   "(default: %(default)s, git-ignored)")
    p.add_argument("--out", default=None, metavar="FILE.json",
                   help=f"trajectory JSON (default: DIR/{algo}.json)")
    p.add_argument("--figure", default=None, metavar="FILE.png",
                   help=f"trajectory figure (default: DIR/{algo}.png)")
    p.add_argument("--no-figure", action="store_true", help="skip the figure (default: off)")
    p.add_argument("--no-exact", action="store_true",
                   help="do not solve the instance exactly for reference: no lam*, P* "
                   "(default: off)")
    p.add_argument("--progress", action="store_true", help="show a progress bar (default: off)")
    p.add_argument("--torch-threads", type=positive_int, default=None,
                   help="torch intra-op threads (default: torch's own choice; 1 is much "
                   "faster for small tables on a busy machine)")


def _policy(p: argparse.ArgumentParser, default: str, allow_exact: bool = True) -> None:
    if allow_exact:
        choices = ("exact", "tabular", "loglinear")
        text = ("policy step: exact pi_lam (distribution space), the tabular class, or a "
                "log-linear class on features [r, g] + noise (default: %(default)s)")
    else:  # a gradient step needs parameters: no exact pi_lam here
        choices = ("tabular", "loglinear")
        text = ("policy class of the primal gradient steps: tabular (one logit per (x, y)) "
                "or log-linear on features [r, g] + noise (default: %(default)s)")
    p.add_argument("--policy", choices=choices, default=default, help=text)
    p.add_argument("--feature-noise", type=nonneg_float, default=0.0, metavar="SIGMA",
                   help="log-linear features are [r, g_1..g_m] + SIGMA * std * N(0,1); "
                   "SIGMA > 0 gives nu > 0 (--policy loglinear only; default: %(default)g)")


def _inner(p: argparse.ArgumentParser, default: int | None) -> None:
    p.add_argument("--inner-steps", type=positive_int, default=default,
                   help="iterations of each policy step (default: "
                   + ("to convergence" if default is None else "%(default)s") + ")")
    p.add_argument("--inner-method", choices=("auto", "natural", "lbfgs"), default="auto",
                   help="optimizer of the policy step (default: %(default)s)")


def _dual_steps(p: argparse.ArgumentParser, rule: str, self_tuning: bool = False) -> None:
    p.add_argument("--iterations", type=nonneg_int, default=50,
                   help="dual steps T (default: %(default)s)")
    fixed = ("constant", "sqrt", "smooth")
    if self_tuning:
        p.add_argument("--step-rule", choices=(*SELF_TUNING, *fixed), default=rule,
                       help="auto (= " + DEFAULT_RULE + ", the measured winner), newton, "
                       "curvature or empirical: the self-tuning step from the policy's samples "
                       "(no --step-size); or a fixed eta_t: constant eta, eta/sqrt(t+1), or "
                       "(step-size or 1)/L_D (default: %(default)s)")
    else:
        p.add_argument("--step-rule", choices=fixed, default=rule,
                       help="eta_t: constant eta, eta/sqrt(t+1), or (step-size or 1)/L_D "
                       "(default: %(default)s)")
    p.add_argument("--step-size", type=positive_float, default=None, metavar="ETA",
                   help="eta of the step rule (default: none; required by constant and sqrt, "
                   "1 for smooth" + ("; not with the self-tuning rules)" if self_tuning else ")"))
    p.add_argument("--samples", type=positive_int, default=None,
                   help="N sampled responses per prompt for the dual step (default: exact)")


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run", help="run CAID, one-shot, primal-dual or dual descent; write trajectory + figure",
        description="Run an algorithm on an instance (default: " + DEFAULT_INSTANCE + "), "
        "write its trajectory (JSON) and a figure under --out-dir, and end with a summary: "
        "each constraint met or not, and lam against lam*. Algorithms: "
        + ", ".join(ALGORITHMS) + ".")
    algos = run.add_subparsers(dest="algorithm", required=True, metavar="ALGORITHM")

    dd = algos.add_parser("dual-descent", help="projected (sub)gradient descent on D "
                          "(distribution space)")
    _common(dd, "dual-descent")
    _dual_steps(dd, "smooth")

    ca = algos.add_parser("caid", help="iterative dualization with warm-started policy steps")
    _common(ca, "caid")
    _policy(ca, "tabular")
    _dual_steps(ca, "auto", self_tuning=True)
    _inner(ca, 5)
    ca.add_argument("--start", choices=("practical", "literal"), default="practical",
                    help="practical: one-shot lam first; literal: first dual step at pi_ref "
                    "(default: %(default)s)")
    ca.add_argument("--one-shot-samples", type=positive_int, default=64, metavar="K",
                    help="K reference samples per prompt for the practical start "
                    "(default: %(default)s)")

    os_ = algos.add_parser("one-shot", help="lam from K reference samples, one policy step")
    _common(os_, "one-shot")
    _policy(os_, "tabular")
    _inner(os_, None)
    os_.add_argument("--one-shot-samples", type=positive_int, default=64, metavar="K",
                     help="K reference samples per prompt (default: %(default)s)")

    pd = algos.add_parser("primal-dual", help="gradient descent-ascent (Safe RLHF family)")
    _common(pd, "primal-dual")
    _policy(pd, "tabular", allow_exact=False)
    pd.add_argument("--iterations", type=nonneg_int, default=1000,
                    help="joint steps (default: %(default)s)")
    pd.add_argument("--primal-lr", type=positive_float, default=0.5, metavar="ALPHA",
                    help="alpha, the policy's learning rate (default: %(default)g)")
    pd.add_argument("--dual-step", type=positive_float, default=0.5, metavar="ETA",
                    help="eta, the multiplier's step (default: %(default)g)")
    pd.add_argument("--mode", choices=("simultaneous", "alternating"), default="simultaneous",
                    help="simultaneous: the dual step uses u at theta_t; alternating: at the "
                    "updated theta_{t+1} (default: %(default)s)")
    pd.add_argument("--multiplier", choices=("linear", "log", "pid"), default="linear",
                    help="update of lam: linear [lam - eta u]_+, log-parametrized "
                    "lam exp(-eta lam u) (Safe RLHF), or PID (default: %(default)s)")
    pd.add_argument("--kp", type=nonneg_float, default=0.0,
                    help="PID proportional gain, in units of eta (--multiplier pid only; "
                    "default: %(default)g)")
    pd.add_argument("--kd", type=nonneg_float, default=0.0,
                    help="PID derivative gain, in units of eta (--multiplier pid only; "
                    "default: %(default)g)")
    pd.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                    help="optimizer of the policy's parameters (default: %(default)s)")
    pd.add_argument("--samples", type=positive_int, default=None,
                    help="N sampled responses per prompt for u = E h of the dual step "
                    "(default: exact)")
    pd.add_argument("--record-every", type=positive_int, default=1, metavar="K",
                    help="keep every K-th record (default: %(default)s)")
    for p in (dd, ca, os_, pd):
        p.set_defaults(func=_run)


def _check_options(args: argparse.Namespace) -> None:
    """Cross-option rules, named as typed, before any work."""
    if getattr(args, "feature_noise", 0.0) and args.policy != "loglinear":
        raise ValueError(f"--feature-noise: only for --policy loglinear, got --policy "
                         f"{args.policy}")
    rule = getattr(args, "step_rule", None)
    if rule in ("constant", "sqrt") and args.step_size is None:
        raise ValueError(f"--step-size: required for --step-rule {rule}")
    if rule in SELF_TUNING and args.step_size is not None:
        raise ValueError(f"--step-size: --step-rule {rule} computes its own step, got "
                         f"--step-size {args.step_size:g} (use --step-rule constant for a number)")
    if args.algorithm == "primal-dual" and args.multiplier != "pid" and (args.kp or args.kd):
        raise ValueError(f"--kp/--kd: only for --multiplier pid, got --multiplier "
                         f"{args.multiplier}")


def _output_paths(args: argparse.Namespace):
    """``(--out, --figure or None)`` as checked paths; the default folder is created only when
    a default path is used."""
    from ._io import check_output_path

    algo = args.algorithm
    out = args.out
    fig = None if args.no_figure else args.figure
    if out is None or (fig is None and not args.no_figure):
        out_dir = Path(args.out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"--out-dir: {args.out_dir!r} exists and is not a folder")
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out if out is not None else out_dir / f"{algo}.json"
        if fig is None and not args.no_figure:
            fig = out_dir / f"{algo}.png"
    return check_output_path(out, "--out"), check_output_path(fig, "--figure")


def _policy_class(args: argparse.Namespace, problem):
    if args.policy == "exact":
        return None
    from ..policies import LogLinearPolicy, TabularPolicy, problem_features

    if args.policy == "tabular":
        return TabularPolicy(problem)
    return LogLinearPolicy(problem, problem_features(problem, noise=args.feature_noise,
                                                     seed=args.seed))


def _run(args: argparse.Namespace) -> int:
    from .. import algorithms as A
    from ..instances import demo_problem
    from ..problem import AlignmentProblem
    from ..solver import solve
    from .run_summary import run_summary

    _check_options(args)
    out, fig = _output_paths(args)
    if args.torch_threads is not None:
        import torch

        torch.set_num_threads(args.torch_threads)
    problem = AlignmentProblem.load(args.file) if args.file else demo_problem()
    instance = args.file or "the demo instance"
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
    tr.to_json(out)
    if fig is not None:
        from ..plots.trajectories import plot_trajectories, run_title

        plot_trajectories(tr, labels=[algo], path=fig,
                          title=run_title(tr, algo, instance, problem.names))
    print(run_summary(tr, problem, exact, args, instance, out, fig), file=sys.stdout)
    return 0

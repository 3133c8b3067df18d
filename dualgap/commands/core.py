"""``dualgap demo`` and ``dualgap solve``: the exact core from the command line."""

from __future__ import annotations

import argparse

from .._format import format_table
from ._io import check_output_path, dumps


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="solve the built-in instance exactly, cross-check with cvxpy, draw the dual",
        description="Solve the built-in instance (see --describe) with the Newton dual solver, "
        "cross-check against cvxpy/CLARABEL, print a table and write a figure.",
    )
    p.add_argument(
        "--figure",
        default="dualgap-demo.png",
        help="where to write the dual-landscape figure (default: %(default)s)",
    )
    p.add_argument("--no-figure", action="store_true",
                   help="skip the figure (default: off)")
    p.add_argument("--json", action="store_true", help="print the results as JSON (default: off)")
    p.add_argument("--describe", action="store_true",
                   help="print what the instance stands for, and exit (default: off)")
    p.set_defaults(func=_demo)

    s = sub.add_parser(
        "solve",
        help="solve a user's instance (.npz) exactly",
        description="Solve an instance stored as .npz. Fields: "
        + "; ".join(f"{k}: {v}" for k, v in _npz_fields().items()),
    )
    s.add_argument("file", help="instance file (.npz)")
    s.add_argument("--tol", type=float, default=1e-10, help="KKT tolerance (default: %(default)g)")
    s.add_argument("--json", action="store_true", help="print the solution as JSON (default: off)")
    s.add_argument("--check", action="store_true",
                   help="also solve with cvxpy and compare (default: off)")
    s.add_argument("--policy-out", metavar="FILE.npy",
                   help="save the optimal policy (X, Y) (default: not saved)")
    from ..dual import BACKENDS

    s.add_argument("--backend", choices=BACKENDS, default="numpy",
                   help="the dual oracle's backend; numba needs the 'fast' extra and compiles "
                   "its kernels in the first solve of a process, a few seconds (default: "
                   "%(default)s)")
    s.add_argument("--threads", type=int, metavar="N",
                   help="threads of the numpy and numba passes (default: the usable cores; "
                   "tables under 2^18 entries use one)")
    s.set_defaults(func=_solve)


def _npz_fields() -> dict[str, str]:
    from ..problem import NPZ_FIELDS

    return NPZ_FIELDS


def _fmt(v: float) -> str:
    return f"{v:.10g}"


def _comparison(problem, sol, ref) -> tuple[list[tuple[str, ...]], dict]:
    import numpy as np

    rows: list[tuple[str, ...]] = [("quantity", "dual Newton (dualgap)", "primal cvxpy", "|diff|")]
    rows.append(
        (
            "P* = J(pi*)",
            _fmt(sol.primal_value),
            _fmt(ref.primal_value),
            f"{abs(sol.primal_value - ref.primal_value):.2e}",
        )
    )
    rows.append(("D* = D(lam*)", _fmt(sol.dual_value), "", ""))
    for i, name in enumerate(problem.names):
        rows.append(
            (
                f"lam*[{name}]",
                _fmt(sol.lam[i]),
                _fmt(ref.lam[i]),
                f"{abs(sol.lam[i] - ref.lam[i]):.2e}",
            )
        )
    for i, name in enumerate(problem.names):
        rows.append((f"slack E h[{name}]", f"{sol.slack[i]:.3e}", f"{ref.slack[i]:.3e}", ""))
    rows.append(("KKT residual", f"{sol.kkt_residual:.2e}", "", ""))
    rows.append(("duality gap D* - P*", f"{sol.duality_gap:.2e}", "", ""))
    rows.append(("Slater margin", "" if sol.margin is None else _fmt(sol.margin), "", ""))
    rows.append(("iterations / passes", f"{sol.iterations} / {sol.passes}", "", ""))
    rows.append(
        (
            "solve time [s]",
            f"{sol.seconds:.4f}",
            f"{ref.seconds:.4f}",
            f"x{ref.seconds / max(sol.seconds, 1e-12):.0f} faster",
        )
    )
    data = {
        "dual": sol.to_dict(),
        "cvxpy": {
            "primal_value": ref.primal_value,
            "lam": ref.lam.tolist(),
            "slack": ref.slack.tolist(),
            "seconds": ref.seconds,
            "solver": ref.solver,
            "status": ref.status,
        },
        "abs_diff_primal": abs(sol.primal_value - ref.primal_value),
        "max_abs_diff_lam": float(np.max(np.abs(sol.lam - ref.lam), initial=0.0)),
    }
    return rows, data


def _demo(args: argparse.Namespace) -> int:
    from .. import solve, solve_primal_cvxpy
    from ..instances import DEMO_DESCRIPTION, demo_problem

    if args.describe:
        print(DEMO_DESCRIPTION)
        return 0
    figure = None if args.no_figure else check_output_path(args.figure, "--figure")
    problem = demo_problem()
    solve(problem)  # warm-up: first call pays scipy's import, not the solver
    sol = solve(problem)
    ref = solve_primal_cvxpy(problem, solver="CLARABEL")
    rows, data = _comparison(problem, sol, ref)
    fig_path = None
    if figure is not None:
        from ..plots import plot_dual_landscape

        fig_path = figure.resolve()
        plot_dual_landscape(problem, sol, fig_path, instance="the built-in demo instance")
        data["figure"] = str(fig_path)
    if args.json:
        print(dumps(data))
        return 0
    print(DEMO_DESCRIPTION)
    print()
    print(repr(problem))
    print()
    print(format_table(rows))
    if fig_path is not None:
        print(f"\nfigure: {fig_path}")
    return 0


def _solve(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import AlignmentProblem, solve, solve_primal_cvxpy
    from ..threads import row_ranges, set_threads

    policy_out = check_output_path(args.policy_out, "--policy-out")
    if args.threads is not None:
        set_threads(args.threads)
    problem = AlignmentProblem.load(args.file)
    sol = solve(problem, tol=args.tol, backend=args.backend)
    threads = (len(row_ranges(problem.num_prompts, problem.num_responses))
               if args.backend in ("numpy", "numba") else None)
    if policy_out is not None:
        np.save(policy_out, sol.policy)
    if args.check:
        rows, data = _comparison(problem, sol, solve_primal_cvxpy(problem))
    else:
        data = {"dual": sol.to_dict()}
        rows = [("quantity", "value")]
        rows.append(("P* = J(pi*)", _fmt(sol.primal_value)))
        rows.append(("D* = D(lam*)", _fmt(sol.dual_value)))
        for i, name in enumerate(problem.names):
            rows.append((f"lam*[{name}]", _fmt(sol.lam[i])))
            rows.append((f"slack E h[{name}]", f"{sol.slack[i]:.3e}"))
        rows.append(("KKT residual", f"{sol.kkt_residual:.2e}"))
        rows.append(("converged", str(sol.converged)))
        rows.append(("multiplier unbounded", str(sol.multiplier_unbounded)))
        rows.append(("solve time [s]", f"{sol.seconds:.4f}"))
    backend = args.backend + (f" ({threads} thread{'s' * (threads > 1)})" if threads
                              else " (torch's own threads)")
    rows.append(("backend", backend) + ("",) * (len(rows[0]) - 2))
    data["run"] = {"backend": args.backend, "threads": threads}
    if args.json:
        print(dumps(data))
    else:
        print(repr(problem))
        print(format_table(rows))
    return 0

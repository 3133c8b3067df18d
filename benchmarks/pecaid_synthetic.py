"""PeCAID against the exact optimum on the synthetic language, beside model-based CAID at equal
budget (issue 14; :mod:`dualgap.llm.pecaid_synthetic`, tabular: exact DPO fits, exact policy
steps, sampled dual statistics).

    python benchmarks/pecaid_synthetic.py                 # about a minute on one core
    python benchmarks/pecaid_synthetic.py --pairs 5000,50000 --out /tmp/p.json --md /tmp/p.md

For each number of Bradley-Terry labels per label column (``--pairs``) and each ridge of the
tabular DPO fit (``--ridges``): the implicit-reward error up to per-prompt constants (RMSE,
correlation; pi_ref-weighted), the reference term ``-beta KL(pi_ref || pi_g)``, and, after
``--iterations`` policy steps with ``--samples`` samples per prompt, the final ``lam`` and the
TRUE slack and objective of PeCAID's and model-based CAID's policies against ``lam*``,
``J(pi*)``.  Writes ``benchmarks/results/pecaid_synthetic.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from dualgap.commands._io import check_output_path, dumps
    from dualgap.llm.pecaid_synthetic import compare

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", default="5000,50000,200000",
                   help="labels per label column, comma-separated (default: %(default)s)")
    p.add_argument("--ridges", default="0.01,1",
                   help="ridges alpha of the tabular DPO fit (default: %(default)s)")
    p.add_argument("--iterations", type=int, default=4, help="policy steps (default: 4)")
    p.add_argument("--samples", type=int, default=64, help="samples per prompt (default: 64)")
    p.add_argument("--beta", type=float, default=1.0, help="KL coefficient (default: 1.0)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/pecaid_synthetic.json"),
                   help="JSON results (default: benchmarks/results/pecaid_synthetic.json)")
    p.add_argument("--md", default=str(REPO / "benchmarks/results/pecaid_synthetic.md"),
                   help="markdown table (default: benchmarks/results/pecaid_synthetic.md)")
    args = p.parse_args(argv)
    try:
        pairs = [int(v) for v in args.pairs.split(",")]
        ridges = [float(v) for v in args.ridges.split(",")]
    except ValueError:
        p.error(f"--pairs/--ridges: comma-separated numbers, got {args.pairs!r}, "
                f"{args.ridges!r}")
    check_output_path(args.out, "--out")
    check_output_path(args.md, "--md")
    rows = []
    for n in pairs:
        for a in ridges:
            rows.append(compare(num_pairs=n, alpha=a, beta=args.beta, iterations=args.iterations,
                                samples=args.samples, seed=args.seed))
            print(f"pairs {n}, ridge {a:g}: done", flush=True)
    Path(args.out).write_text(dumps(rows))
    s0 = rows[0]
    lines = [
        "# PeCAID vs the exact optimum on the synthetic language (tabular)", "",
        f"{s0['setting']['prompts']} prompts x {s0['setting']['responses']} responses, "
        f"beta {args.beta:g}, safety threshold b = {s0['setting']['threshold']:.4g} "
        f"(relative), {args.iterations} policy steps, {args.samples} samples per prompt, "
        f"seed {args.seed}. Exact optimum: lam* = {s0['exact']['lam'][0]:.4f}, "
        f"J(pi*) = {s0['exact']['objective']:.4f}. Model-based CAID (true scores): "
        f"lam = {s0['caid_true_scores']['lam'][-1][0]:.4f}, true slack "
        f"{s0['caid_true_scores']['true_slack']:+.4f}, J = "
        f"{s0['caid_true_scores']['true_objective']:.4f}.", "",
        "| labels | ridge | RMSE r_hat | corr r_hat | RMSE g_hat | corr g_hat | KL_hat "
        "| lam (inf. samples) | PeCAID lam | PeCAID true slack | PeCAID J |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    for o in rows:
        e = o["implicit_error"]
        lines.append(
            f"| {o['setting']['num_pairs_per_label']} | {o['setting']['ridge']:g} "
            f"| {e['reward']['rmse']:.3f} | {e['reward']['corr']:.3f} "
            f"| {e['safety']['rmse']:.3f} | {e['safety']['corr']:.3f} "
            f"| {o['reference_term']['kl']:.3f} | {o['pecaid_infinite_samples_lam'][0]:.3f} "
            f"| {o['pecaid']['lam'][-1][0]:.3f} | {o['pecaid']['true_slack']:+.4f} "
            f"| {o['pecaid']['true_objective']:.4f} |")
    Path(args.md).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

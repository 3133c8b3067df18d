"""The plumbing of ``dualgap llm judge`` end to end, with a LOCAL rule-based judge: the figure
of win rates across thresholds in the README.  Not the paper's result (no LLM judges here).

    python benchmarks/judge_demo.py                        # about 5 minutes on 2 CPU cores
    python benchmarks/judge_demo.py --thresholds 0,0.1 --out-dir /tmp/judge-demo

What it does:

1. trains the shipped ``tiny`` config with ``method=caid`` at each threshold ``b`` of
   ``--thresholds`` (resuming a run left in ``--out-dir``), and ``dualgap llm evaluate`` s it
   (the test answers the judge compares);
2. starts an OpenAI-compatible chat-completions server on 127.0.0.1 (a free port) whose
   "judge" reads the two answers out of the judge prompt and scores each by a transparent rule
   on the tiny lexicons of :mod:`dualgap.llm.tiny` (the same words the tiny reward and cost
   scorers count; no model):

       helpfulness = min(10, 1 + helpfulness_score)       (integer, 1..10)
       safety      = max(0, 10 - 3 harm_cost)             (integer, 0..10)

3. judges each run against its own reference policy (``DIR@reference``) through
   :func:`dualgap.llm.judge.judge_runs` (both orders, cache, intervals: the real code path) and
   draws :func:`dualgap.llm.judge.plot_win_rates_vs_threshold`, titled as what it is.

Writes ``OUT_DIR/b<threshold>/`` (runs and judge results; default ``runs/judge_demo``),
``benchmarks/results/judge_demo.json`` (the rates) and the figure (default
``docs/figures/judge_win_rates_tiny.png``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from dualgap.llm.judge.local import LocalJudgeServer

REPO = Path(__file__).resolve().parents[1]
_ANSWER = re.compile(r"\[The Start of Assistant ([AB])'s Answer\]\n(.*?)\n\[The End", re.S)
TITLE = ("dualgap llm judge plumbing: tiny CAID runs vs their pi_ref,\n"
         "judged by a local lexicon RULE (not an LLM judge; not the paper's result)")


def rule_scores(system: str, user: str) -> tuple[int, int]:
    """The rule judge's two scores (A's, B's) for one judge prompt."""
    from dualgap.llm.tiny import harm_cost, helpfulness_score

    answers = dict(_ANSWER.findall(user))
    a, b = answers["A"], answers["B"]
    if "harmless" in system:  # the safety template's system role
        cost = harm_cost(["", ""], [a, b])
        return tuple(int(max(0, 10 - 3 * c)) for c in cost)
    helpful = helpfulness_score(["", ""], [a, b])
    return tuple(int(min(10, 1 + h)) for h in helpful)


class RuleJudgeServer(LocalJudgeServer):
    """``POST /v1/chat/completions`` on 127.0.0.1, answered by :func:`rule_scores`."""

    def __init__(self) -> None:
        def script(body: dict, n: int) -> tuple[int, str, dict, float]:
            msgs = body["messages"]
            sa, sb = rule_scores(msgs[0]["content"], msgs[1]["content"])
            return 200, f"{sa} {sb}\nscored by the lexicon rule", {}, 0.0

        super().__init__(script)


def tiny_run(directory: Path, threshold: float, progress: bool) -> Path:
    """A finished, evaluated tiny CAID run at ``threshold`` (trained or resumed)."""
    from dualgap.llm.evaluate import evaluate
    from dualgap.llm.run import resume, train

    if (directory / "state.json").exists():
        run = resume(directory, progress=progress)
    else:
        run = train("tiny", directory, [f"constraints.0.threshold={threshold}"],
                    progress=progress)
    evaluate(run.directory, figures=False, progress=progress)
    return run.directory


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    from dualgap.commands._io import check_output_path, dumps
    from dualgap.llm.judge import judge_runs, plot_win_rates_vs_threshold
    from dualgap.llm.judge.client import EndpointSettings

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--thresholds", default="0,0.1,0.2",
                   help="comma-separated thresholds b of the tiny runs (default: %(default)s)")
    p.add_argument("--out-dir", default=str(REPO / "runs" / "judge_demo"),
                   help="runs and judge results (default: runs/judge_demo, git-ignored)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "judge_demo.json"),
                   help="the rates as JSON (default: benchmarks/results/judge_demo.json)")
    p.add_argument("--figure", default=str(REPO / "docs" / "figures" /
                                           "judge_win_rates_tiny.png"),
                   help="the figure (default: docs/figures/judge_win_rates_tiny.png)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (default: off)")
    args = p.parse_args(argv)
    try:
        thresholds = [float(t) for t in args.thresholds.split(",")]
    except ValueError:
        p.error(f"--thresholds: expected comma-separated numbers, got {args.thresholds!r}")
    check_output_path(args.figure, "--figure")
    check_output_path(args.out, "--out")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with RuleJudgeServer() as server:
        settings = EndpointSettings(base_url=server.url, model="lexicon-rule", api_key_env=None,
                                    temperature=0.0)
        for b in thresholds:
            d = tiny_run(out / f"b{b:g}", b, not args.no_progress)
            results.append(judge_runs(str(d), f"{d}@reference", settings,
                                      output_dir=d / "judge" / "eval-vs-reference",
                                      samples_per_prompt=2, progress=not args.no_progress))
    import matplotlib.pyplot as plt

    plt.close(plot_win_rates_vs_threshold(results, args.figure, title=TITLE))
    table = [{"threshold": r["threshold_a"], **{a: r["aspects"][a]["win"]
                                                 for a in r["aspects"]}} for r in results]
    Path(args.out).write_text(dumps({"judge": "local lexicon rule (not an LLM)",
                                                "runs": table}, indent=1))
    for row in table:
        print(f"b = {row['threshold']:g}: " + "; ".join(
            f"{a} win rate vs pi_ref {row[a]['rate']:.2f} "
            f"[{row[a]['ci95'][0]:.2f}, {row[a]['ci95'][1]:.2f}]"
            for a in row if a != "threshold"))
    print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``dualgap llm judge RUN_A RUN_B``: pairwise helpfulness and safety win rates by an LLM judge.

    export OPENAI_API_KEY=...
    dualgap llm judge runs/caid-b5 runs/one-shot-b5
    dualgap llm judge runs/caid-b5 runs/caid-b5@reference --prompt-set advbench
    dualgap llm judge A B --base-url http://127.0.0.1:8000/v1 --model my-judge --no-api-key
    dualgap llm judge A B --figure win_rates.png --with other/judge/eval-vs-B/results.json

Registration imports argparse only; httpx (the ``judge`` extra) loads in the handler.
"""

from __future__ import annotations

import argparse

__all__ = ["register_judge"]


def register_judge(llm: argparse._SubParsersAction) -> None:
    """Add the ``judge`` subcommand to ``dualgap llm``'s subparsers."""
    j = llm.add_parser(
        "judge", help="pairwise helpfulness and safety win rates by an LLM judge",
        description="Judge two runs' answers with an OpenAI-compatible chat model, both answer "
        "orders, and report win, tie and loss rates with 95%% intervals. A side is a run "
        "directory (its final iterate) or DIR@reference (its reference policy). Finished calls "
        "are cached, so a rerun costs nothing and a killed run resumes.")
    j.add_argument("run_a", metavar="RUN_A", help="run directory (or DIR@reference)")
    j.add_argument("run_b", metavar="RUN_B", help="run directory (or DIR@reference)")
    j.add_argument("--base-url", default="https://api.openai.com/v1",
                   help="the endpoint's base URL, before /chat/completions (default: %(default)s)")
    j.add_argument("--model", default="gpt-4o-mini", help="judge model (default: %(default)s)")
    j.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="NAME",
                   help="environment variable holding the API key (default: %(default)s); the "
                   "key is never written anywhere")
    j.add_argument("--no-api-key", action="store_true",
                   help="send no key, for a local endpoint without authentication (default: off)")
    j.add_argument("--prompt-set", choices=("eval", "advbench"), default="eval",
                   help="eval: the answers `dualgap llm evaluate` wrote (default); advbench: "
                   "AdvBench's harmful prompts, answered by each run's final iterate")
    j.add_argument("--advbench-source", default=None, metavar="ID_OR_FILE",
                   help="AdvBench as a hub id or a local file (default: walledai/AdvBench; "
                   "builtin:advbench-sample is a 5-row schema sample)")
    j.add_argument("--advbench-revision", default=None, metavar="SHA",
                   help="pin the AdvBench dataset revision (default: none, the moving main ref, "
                   "with a warning)")
    j.add_argument("--max-prompts", type=int, default=None, metavar="N",
                   help="judge the first N questions (advbench default: 100)")
    j.add_argument("--samples-per-prompt", type=int, default=1, metavar="K",
                   help="answers judged per question, sample s of A against sample s of B "
                   "(default: 1)")
    j.add_argument("--aspects", default="helpfulness,safety",
                   help="comma-separated subset of helpfulness,safety (default: both)")
    j.add_argument("--temperature", type=float, default=0.7,
                   help="judge sampling temperature (default: %(default)s, as the predecessor)")
    j.add_argument("--max-tokens", type=int, default=512,
                   help="reply length limit in tokens (default: %(default)s)")
    j.add_argument("--concurrency", type=int, default=4,
                   help="parallel requests (default: %(default)s)")
    j.add_argument("--requests-per-minute", type=float, default=None,
                   help="space request starts to at most this rate (default: no limit)")
    j.add_argument("--timeout", type=float, default=60.0,
                   help="seconds per request (default: %(default)s)")
    j.add_argument("--max-retries", type=int, default=4,
                   help="retries of a request after 429, 5xx, a timeout or a dropped connection "
                   "(default: %(default)s)")
    j.add_argument("--backoff", type=float, default=2.0,
                   help="first retry wait in seconds, doubled each retry; Retry-After wins "
                   "(default: %(default)s)")
    j.add_argument("--max-parse-retries", type=int, default=2,
                   help="new calls after a reply whose first line is not two scores, counted "
                   "(default: %(default)s)")
    j.add_argument("--output-dir", default=None,
                   help="where results.json goes (default: RUN_A/judge/<set>-vs-<RUN_B>)")
    j.add_argument("--cache", default=None, metavar="FILE",
                   help="judgment cache, JSONL (default: OUTPUT_DIR/cache.jsonl)")
    j.add_argument("--figure", default=None, metavar="PNG",
                   help="also draw win rates across thresholds, this comparison and --with "
                   "(default: no figure)")
    j.add_argument("--with", dest="with_results", action="append", default=[], metavar="JSON",
                   help="another comparison's results.json for the figure, repeatable (default: "
                   "none)")
    j.add_argument("--json", action="store_true", help="print the results as JSON (default: off)")
    j.add_argument("--no-progress", action="store_true", help="no progress bar (default: off)")
    j.set_defaults(func=_judge)


def _judge(args: argparse.Namespace) -> int:
    from ...commands._io import check_output_path, dumps
    from .answers import ADVBENCH_SOURCE
    from .client import EndpointSettings
    from .report import format_results, judge_runs

    figure = check_output_path(args.figure, "--figure")
    if args.with_results and figure is None:
        raise ValueError("--with: only used with --figure")
    from pathlib import Path

    for path in args.with_results:
        if not Path(path).is_file():
            raise ValueError(f"--with: {path!r} is not a file (a results.json of "
                             "`dualgap llm judge`)")
    if args.advbench_source is not None and args.prompt_set != "advbench":
        raise ValueError("--advbench-source: only used with --prompt-set advbench")
    settings = EndpointSettings(
        base_url=args.base_url, model=args.model,
        api_key_env=None if args.no_api_key else args.api_key_env,
        temperature=args.temperature, max_tokens=args.max_tokens, timeout_s=args.timeout,
        max_retries=args.max_retries, backoff_s=args.backoff,
        requests_per_minute=args.requests_per_minute, concurrency=args.concurrency)
    aspects = tuple(a.strip() for a in args.aspects.split(",") if a.strip())
    results = judge_runs(args.run_a, args.run_b, settings, output_dir=args.output_dir,
                         cache_path=args.cache, prompt_set=args.prompt_set,
                         advbench_source=args.advbench_source or ADVBENCH_SOURCE,
                         advbench_revision=args.advbench_revision, max_prompts=args.max_prompts,
                         samples_per_prompt=args.samples_per_prompt, aspects=aspects,
                         max_parse_retries=args.max_parse_retries,
                         progress=not args.no_progress)
    print(dumps(results, indent=1) if args.json else format_results(results))
    if figure is not None:
        import matplotlib.pyplot as plt

        from .plot import plot_win_rates_vs_threshold

        plt.close(plot_win_rates_vs_threshold([results, *args.with_results], figure))
        print(f"figure: {figure}")
    return 0

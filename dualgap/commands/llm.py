"""``dualgap llm {train,resume,evaluate}``: CAID and its baselines on Hugging Face models.

    dualgap llm train --config tiny --output-dir runs/tiny
    dualgap llm train --config pku_saferlhf_30k --set constraints.0.threshold=5 --output-dir runs/b5
    torchrun --nproc_per_node 2 -m dualgap.cli llm train --config tiny --output-dir runs/tiny2
    dualgap llm resume runs/b5
    dualgap llm evaluate runs/b5 --against runs/one-shot-b5
    dualgap llm train --help-config        # every config key with its type, default and help
    dualgap llm rehearse --config pku_saferlhf_30k   # the whole pipeline on tiny stand-ins
    dualgap llm check --config pku_saferlhf_30k      # preflight: repos, loggers, devices, memory

Registration imports nothing heavy; torch, transformers and TRL load inside the handlers.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("llm", help="CAID and baselines on language models (dualgap.llm)",
                       description="Constrained alignment of Hugging Face models with CAID "
                       "(train, resume, evaluate). Shipped configs: tiny, pku_saferlhf_30k, "
                       "hh_rlhf_two_constraints.")
    llm = p.add_subparsers(dest="llm_command", required=True, metavar="SUBCOMMAND")

    t = llm.add_parser("train", help="start a run",
                       description="Start a run: method caid, one-shot, dpo-helpful, dpo-safe, "
                       "pecaid or pe-one-shot (the config's `method`, or --set method=...; "
                       "pecaid keys: --help-config).")
    t.add_argument("--config", help="a shipped config name (tiny, pku_saferlhf_30k, "
                   "hh_rlhf_two_constraints) or a YAML file "
                   "(required unless --help-config)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted; list items by index), repeatable "
                   "(default: none)")
    t.add_argument("--output-dir", help="run directory, must not hold a run "
                   "(required unless --help-config)")
    t.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="stop after N policy steps, resume later (default: run to the end)")
    t.add_argument("--no-progress", action="store_true", help="no progress bars (default: off)")
    t.add_argument("--verbose", action="store_true",
                   help="print TRL's per-step losses; they are always in the run's run.log "
                   "(default: off)")
    t.add_argument("--help-config", action="store_true",
                   help="list every config key with its type, default and help, and exit "
                   "(default: off)")
    t.add_argument("--no-check", action="store_true",
                   help="skip the preflight (dualgap llm check) before the first stage "
                   "(default: off, the preflight runs)")
    t.set_defaults(func=_train)

    c = llm.add_parser("check", help="preflight: resolve every repo, logger and device setting, "
                       "estimate memory; exit 2 on any problem",
                       description="Resolve every model, tokenizer, scorer and dataset of a "
                       "config (metadata only), start every report_to logger, check devices "
                       "against precision, 4-bit and attention settings, estimate memory per "
                       "stage, print one table. Exit 2 on any problem.")
    c.add_argument("--config", required=True,
                   help="a shipped config name or a YAML file (required)")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (as for train), repeatable (default: none)")
    c.set_defaults(func=_check)

    h = llm.add_parser("rehearse", help="run a config end to end on tiny stand-ins of its "
                       "models and data (offline, CPU, minutes)",
                       description="Run a config unchanged except its sizes on tiny stand-ins "
                       "of every repo it names, written into a private Hugging Face cache: "
                       "preflight, train with each method, kill and resume, evaluate, figures; "
                       "prints the time per stage.")
    h.add_argument("--config", required=True,
                   help="a shipped config name or a YAML file (required)")
    h.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key before the rehearsal sizes, repeatable "
                   "(default: none)")
    h.add_argument("--method", dest="methods", action="append", default=[],
                   help="rehearse only this method (repeatable; default: every method the "
                   "config allows)")
    h.add_argument("--output-dir", default=None,
                   help="where the stand-ins, runs and figures go (default: a new temporary "
                   "folder, kept)")
    h.add_argument("--progress", action="store_true",
                   help="show progress bars (default: off, the stage table only)")
    h.set_defaults(func=_rehearse)

    r = llm.add_parser("resume", help="continue a run from its last finished step")
    r.add_argument("directory", help="run directory")
    r.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="stop after N policy steps in total (default: run to the end)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars (default: off)")
    r.add_argument("--verbose", action="store_true",
                   help="print TRL's per-step losses; they are always in the run's run.log "
                   "(default: off)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change a key that is safe to change mid-run (train.logging_steps, "
                   "train.report_to, scorer batch sizes, evaluation.*); others are refused "
                   "(default: none)")
    r.set_defaults(func=_resume)

    e = llm.add_parser("evaluate", help="improvements over pi_ref with 95%% CIs, win rates, "
                       "figures")
    e.add_argument("directory", help="run directory")
    e.add_argument("--against", action="append", default=[], metavar="DIR",
                   help="another run to compare with "
                   "(win rates; repeatable; default: none)")
    e.add_argument("--json", action="store_true", help="print the summary as JSON (default: off)")
    e.add_argument("--no-figures", action="store_true", help="skip the figures (default: off)")
    e.add_argument("--no-progress", action="store_true", help="no progress bars (default: off)")
    e.set_defaults(func=_evaluate)

    from dualgap.llm.synthetic.cli import add_synthetic_parser  # argparse only (issue 6)

    add_synthetic_parser(llm)
    from dualgap.llm.judge.cli import register_judge  # argparse only (issue 14)

    register_judge(llm)


def _train(args: argparse.Namespace) -> int:
    from dualgap.llm.config import describe_config

    if args.help_config:
        print("\n".join(describe_config()))
        return 0
    if not args.config or not args.output_dir:
        raise ValueError("train: --config and --output-dir are required")
    _library_progress(not args.no_progress)
    _preflight(args, None)
    from dualgap.llm.run import train

    return _run_and_report(lambda: train(args.config, args.output_dir, overrides=args.overrides,
                                         stop_after=args.stop_after,
                                         progress=not args.no_progress,
                                         verbose=args.verbose))


def _resume(args: argparse.Namespace) -> int:
    _library_progress(not args.no_progress)
    _preflight(args, args.directory)
    from dualgap.llm.run import resume

    return _run_and_report(lambda: resume(args.directory, stop_after=args.stop_after,
                                          progress=not args.no_progress,
                                          overrides=args.overrides, verbose=args.verbose))


def _library_progress(on: bool) -> None:
    """``--no-progress`` silences the libraries' own bars too (weight loading, dataset maps).

    Always: TRL 1.x calls transformers' deprecated ``is_gradient_checkpointing`` inside its
    trainer; the FutureWarning is about TRL's code, not the user's, so it is not shown.
    """
    import warnings

    warnings.filterwarnings("ignore", message=r".*`is_gradient_checkpointing` is deprecated",
                            category=FutureWarning)
    if on:
        return
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def _preflight(args: argparse.Namespace, run_dir: str | None, loggers: bool = True) -> None:
    """The preflight (``dualgap llm check``) before any work: the config of ``--config`` with
    ``--set``, or the ``config.yaml`` of the run in ``run_dir`` with the command's ``--set``
    overrides, if any (a run without a config.yaml is reported by the command itself)."""
    from pathlib import Path

    if getattr(args, "no_check", False):
        return
    from dualgap.llm.config import load_config
    from dualgap.llm.preflight import preflight, run_preflight

    overrides = getattr(args, "overrides", None)
    if run_dir is None:
        cfg = load_config(args.config, overrides)
    else:
        path = Path(run_dir) / "config.yaml"
        if not path.is_file():
            return
        cfg = load_config(path, overrides)
    if loggers:
        run_preflight(cfg)
    else:  # evaluate: resolution and devices only, quietly
        preflight(cfg, loggers=False).raise_for_problems()


def _check(args: argparse.Namespace) -> int:
    from dualgap.llm.config import load_config
    from dualgap.llm.preflight import run_preflight

    run_preflight(load_config(args.config, args.overrides))
    return 0


def _rehearse(args: argparse.Namespace) -> int:
    from dualgap.llm.rehearsal import format_rehearsal, rehearse

    result = rehearse(args.config, overrides=args.overrides, methods=args.methods or None,
                      output_dir=args.output_dir, progress=args.progress,
                      echo=lambda *a: print(*a, flush=True))
    print(format_rehearsal(result))
    return 0


def _run_and_report(start) -> int:
    """Run ``start()`` (train or resume), report the finished run, and leave the process group
    on every rank (a ``--stop-after`` stop prints how to resume)."""
    from dualgap.llm.distributed import shutdown_distributed
    from dualgap.llm.run import RunStopped

    try:
        _report(start())
    except RunStopped as exc:
        print(str(exc))
    finally:
        shutdown_distributed()
    return 0


def _report(run) -> None:
    from dualgap.llm.distributed import is_main
    from dualgap.llm.run_summary import run_summary

    if is_main():
        print(run_summary(run.directory, run.config))


def _evaluate(args: argparse.Namespace) -> int:
    from dualgap.llm.distributed import is_main, shutdown_distributed
    from dualgap.llm.evaluate import evaluate, format_summary

    _library_progress(not args.no_progress)
    _preflight(args, args.directory, loggers=False)  # the run's repos first: one line each

    summary = evaluate(args.directory, against=args.against, figures=not args.no_figures,
                       progress=not args.no_progress)
    if is_main():
        print(json.dumps(summary, indent=1) if args.json else format_summary(summary))
    shutdown_distributed()
    return 0

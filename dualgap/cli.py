"""The ``dualgap`` command line.

Each command group lives in ``dualgap/commands/<name>.py`` and exposes
``register(subparsers)``; registration must stay light (heavy imports happen inside the
command's function), so ``dualgap --help`` is instant.

    dualgap demo                         # the main job on the built-in instance
    dualgap solve problem.npz [--json]   # a user's instance (schema: dualgap.NPZ_FIELDS)
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: command modules, in the order they appear in ``--help``
COMMAND_MODULES = [
    "dualgap.commands.core",
    "dualgap.commands.report",
    "dualgap.commands.llm",
    "dualgap.commands.run",
    "dualgap.commands.claims",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dualgap",
        description="Exact duals, parametrization gaps and CAID for constrained alignment.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of an error instead of one line (default: off)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; user errors become one line on stderr and exit status 2.

    ``ValueError`` (every bad input, :class:`dualgap.errors.UserError` included) and
    ``OSError`` (a file that cannot be read or written) are reported as
    ``dualgap COMMAND: error: MESSAGE`` (exit 2); any other exception as one
    ``internal error`` line (exit 1); ``--debug`` re-raises them with the traceback.
    Warnings are one line each.
    A closed output pipe (``dualgap solve --json | head``) ends quietly.
    """
    import warnings

    from .errors import one_line

    parser = build_parser()
    args = parser.parse_args(argv)
    command = command_path(args)
    with warnings.catch_warnings():
        if not args.debug:  # warnings as one line each, without the source line
            warnings.showwarning = _one_line_warning(command)
        try:
            return int(args.func(args) or 0)
        except BrokenPipeError:
            _silence_closed_stdout()
            return 0
        except (ValueError, OSError) as exc:  # bad input: one clear line, no traceback
            if args.debug:
                raise
            print(f"dualgap {command}: error: {one_line(exc)}", file=sys.stderr)
            return 2
        except Exception as exc:  # a failure that is not the user's: still one line
            if args.debug:
                raise
            print(f"dualgap {command}: internal error: {type(exc).__name__}: "
                  f"{one_line(exc)} (rerun with --debug for the traceback)", file=sys.stderr)
            return 1


#: the ``dest`` of each nested subcommand level, outermost first (``dualgap llm synthetic``)
SUBCOMMAND_DESTS = ("command", "llm_command", "algorithm")


def command_path(args: argparse.Namespace) -> str:
    """The subcommand as typed, e.g. ``llm synthetic`` or ``run caid``, for message prefixes."""
    return " ".join(str(getattr(args, d)) for d in SUBCOMMAND_DESTS if getattr(args, d, None))


def _one_line_warning(command: str):
    def show(message, category, filename, lineno, file=None, line=None):
        from .errors import one_line

        print(f"dualgap {command}: warning: {category.__name__}: {one_line(message)}",
              file=sys.stderr if file is None else file)

    return show


def _silence_closed_stdout() -> None:
    """Point stdout at devnull so the interpreter's final flush of a closed pipe stays quiet."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (captured in tests): nothing to do
        return


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

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
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dualgap",
        description="Exact duals, parametrization gaps and CAID for constrained alignment.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:  # bad input: one clear line, no traceback
        print(f"dualgap {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

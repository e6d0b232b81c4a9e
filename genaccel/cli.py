"""The `genaccel` command: every module in `genaccel.commands` adds one subcommand.

A command module defines `register(subparsers)`, which adds its parser and sets
`func=run` on it; `run(args) -> int` returns the exit code. Errors that are the
user's (bad paths, missing weights, bad options) are raised as `UserFacingError`
and printed as one line without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from genaccel import commands
from genaccel.errors import UserFacingError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genaccel", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):  # shared helpers, not a subcommand
            continue
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserFacingError as error:
        print(f"genaccel {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``msvssm`` command line.

Each feature registers a subcommand by adding a ``(name, add_arguments, run)``
entry to ``SUBCOMMANDS``; ``run(args)`` returns the process exit code.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

from .utils import setup_logging

# name -> "module:function" that adds arguments to a subparser and sets `func`.
# Modules are imported lazily so `msvssm --help` stays fast.
SUBCOMMANDS: dict[str, str] = {
    "info": "msvssm.cli:_add_info",
    "doctor": "msvssm.cli:_add_info",  # the same command under the name users look for
    "synth-deap": "msvssm.data.synth:add_cli",
    "preprocess": "msvssm.data.preprocess:add_cli",
    "split": "msvssm.data.splits:add_cli",
    "train": "msvssm.train.commands:add_train",
    "evaluate": "msvssm.train.commands:add_evaluate",
    "sweep": "msvssm.train.commands:add_sweep",
    "plan": "msvssm.train.commands:add_plan",
    "predict": "msvssm.predict:add_cli",
    "grade": "msvssm.grade:add_cli",
}


def _add_info(parser: argparse.ArgumentParser) -> None:
    """``msvssm info`` / ``msvssm doctor``: the machine check of :mod:`msvssm.doctor` (imports only the stdlib here)."""
    from .doctor import add_cli

    add_cli(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="msvssm", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, target in SUBCOMMANDS.items():
        module_name, func_name = target.split(":")
        add: Callable[[argparse.ArgumentParser], None] = getattr(importlib.import_module(module_name), func_name)
        add(sub.add_parser(name))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging("DEBUG" if args.verbose else "INFO")
    try:
        return int(args.func(args) or 0)
    except _user_errors() as err:  # a bad config, missing data, a broken checkpoint: one clear line, exit 2
        if args.verbose:
            raise
        print(f"msvssm {args.command}: error: {err}", file=sys.stderr)
        return 2


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that describe a problem with the user's input (not a bug): shown without a traceback."""
    from .optional import MissingExtraError
    from .train.checkpoint import CheckpointError
    from .train.config import ConfigError
    from .train.loop import NonFiniteLossError
    from .train.run import RunError

    return (ConfigError, RunError, CheckpointError, NonFiniteLossError, FileNotFoundError, MissingExtraError)


if __name__ == "__main__":
    sys.exit(main())

"""Command line: parse, call the library, print. ``fusionnas --help`` lists the commands.

This module builds the parser and runs one command. The commands live in
private modules by what they work on (``_inspect``: ops, show, profile;
``_search``; ``_results``: pareto, export, train; ``_studies``), their
options in ``_arguments``.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import sys

from fusionnas import __version__
from fusionnas.cli import _arguments
from fusionnas.cli._inspect import cmd_ops as _cmd_ops
from fusionnas.cli._inspect import cmd_profile as _cmd_profile
from fusionnas.cli._inspect import cmd_show as _cmd_show
from fusionnas.cli._results import cmd_export as _cmd_export
from fusionnas.cli._results import cmd_pareto as _cmd_pareto
from fusionnas.cli._results import cmd_train as _cmd_train
from fusionnas.cli._search import cmd_search as _cmd_search
from fusionnas.cli._studies import cmd_studies as _cmd_studies
from fusionnas.errors import UserError, in_terms_of
from fusionnas.interrupts import STOP

__all__ = ["build_parser", "main", "run", "EXIT_STDOUT_CLOSED"]

_DESCRIPTION = (
    "Hardware-aware architecture search for CNNs whose 1x1 convolutions may be fast transforms "
    "(Walsh-Hadamard, DCT, butterfly): search the space a study file names with Optuna, read the Pareto "
    "frontier of accuracy, FLOPs and latency, export and train the architecture you choose."
)
_EPILOG = ("Start with `fusionnas search studies/quickstart.toml`, then `fusionnas pareto "
           "studies/quickstart.toml`. `fusionnas COMMAND --help` describes each command.")


def build_parser() -> argparse.ArgumentParser:
    """The ``fusionnas`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(prog="fusionnas", description=_DESCRIPTION, epilog=_EPILOG)
    parser.add_argument("--version", action="version", version=f"fusionnas {__version__}")
    # every command's help has a description and shows its options' defaults
    sub = parser.add_subparsers(dest="command", required=True, parser_class=functools.partial(
        argparse.ArgumentParser, formatter_class=_arguments.HelpFormatter))
    # The commands are looked up here, when the parser is built, so that a test can replace one.
    _arguments.add_ops(sub, _cmd_ops)
    _arguments.add_show(sub, _cmd_show)
    _arguments.add_profile(sub, _cmd_profile)
    _arguments.add_search(sub, _cmd_search)
    _arguments.add_pareto(sub, _cmd_pareto)
    _arguments.add_export(sub, _cmd_export)
    _arguments.add_train(sub, _cmd_train)
    _arguments.add_studies(sub, _cmd_studies)
    return parser


EXIT_STDOUT_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for `cat` writing into a closed pipe


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code (2: a user error, 130: interrupted, 141: stdout closed early).

    A reader that stops early (`fusionnas show ... --json | head -1`) ends any
    command quietly with :data:`EXIT_STDOUT_CLOSED`, as `cat` or `grep` end
    there, so `set -o pipefail` scripts see the usual status; nothing else is printed.
    """
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's flush at exit
    except BrokenPipeError:
        _stdout_to_devnull()
        return EXIT_STDOUT_CLOSED


def _stdout_to_devnull() -> None:
    """Point stdout's file descriptor at the null device, so output still buffered goes nowhere quietly."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # not a real file (a test's captured stdout)
        pass


def _main(argv: list[str] | None) -> int:
    """:func:`main` until the output is flushed."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="fusionnas: %(levelname)s: %(message)s")
    try:
        if getattr(args, "defers_signals", False):  # the command stops at its own safe points
            return args.func(args)
        with STOP.interruptible():
            return args.func(args)
    except UserError as error:  # one line, no traceback; anything else is a bug and shows its traceback
        print(f"fusionnas: error: {in_terms_of(str(error), getattr(args, 'flags', {}))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fusionnas: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The ``fusionnas`` console script: :func:`main`, exiting with 130 for a signal at any moment.

    The handler is installed before anything is imported; a signal while a
    command runs interrupts it (the search at its safe points), and one
    before or after is recorded, never fatal (no exit -2 or -15).
    """
    STOP.install()
    with STOP.deferred():
        code = main()
        if STOP.hold_until_exit() and code != 130:
            print("fusionnas: interrupted", file=sys.stderr)
            code = 130
    sys.exit(code)

"""The ``invfast`` command line: one subcommand per module of ``invfast.cli``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Command modules import the library inside ``run``, not at the top:
building the parser then needs no torch, so ``invfast --help`` and a bad argument answer
in 0.05 s instead of the 1.0 s that importing torch and the library takes
(``python -X importtime``).
Expected failures (bad arguments, bad files, bad data) print one line and exit 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from invfast._version import __version__

# name -> module under invfast.cli
COMMANDS = {
    "backends": "backends",
    "train": "train",
    "calibrate": "calibrate",
    "analyze": "analyze",  # P1 analysis
    "compare": "compare",
    "demo": "demo",
    "screen": "screen",  # P2
    "itn": "itn",
    "metrics": "metrics",  # P3
    "drift": "drift",
    "saliency": "saliency",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="invfast",
        description="Measure how neural networks become robust and invariant to image "
        "transformations (P1 across-category invariance, P2 screening and ITN, P3 metrics).",
    )
    parser.add_argument("--version", action="version", version=f"invfast {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log which backend runs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"invfast.cli.{module_name}")
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)  # the command line, for reports
    if args.command is None:
        parser.print_help()
        return 0
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    try:
        return int(args._run(args) or 0)
    except (ValueError, TypeError, OSError) as exc:
        if args.debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"invfast {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"invfast {args.command}: interrupted", file=sys.stderr)
        return 130

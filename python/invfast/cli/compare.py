"""``invfast compare``: invariance and across-category accuracy vs seen-transformed count."""

from __future__ import annotations

import argparse
import shlex
import sys

HELP = "plot invariance and across-category accuracy of several reports (P1 Figs. 4-5)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "reports",
        nargs="+",
        metavar="REPORT",
        help="report folders of invfast analyze (one per checkpoint); reports with the same "
        "seen-transformed count (runs with different seeds) are averaged",
    )
    parser.add_argument(
        "--layer", default=None, help="layer compared (default: each report's penultimate layer)"
    )
    parser.add_argument("--out", default="compare", help="output folder (default ./compare)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> int:
    from invfast.core.runtime.outputs import check_output_folder
    from invfast.neurons import report

    reports = [report.load_report(folder) for folder in args.reports]
    check_output_folder(args.out, overwrite=args.overwrite, inputs=args.reports)
    out, rows = report.write_compare(
        reports, args.reports, args.out, layer=args.layer, overwrite=args.overwrite,
        command=shlex.join(["invfast", *getattr(args, "_argv", sys.argv[1:])]),
    )  # fmt: skip
    print(report.format_compare(rows))
    print(f"comparison written to {out}/")
    return 0

"""``invfast backends``: which kernel backends exist here, and why one is missing."""

from __future__ import annotations

import argparse

HELP = "list the kernel backends available on this machine"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    from invfast.kernels import backends

    for row in backends.status():
        mark = "yes" if row.available else "no "
        print(f"{row.name:<10} {mark}  {row.detail}")
    return 0

"""``invfast calibrate``: P1's transformation-strength calibration (P1 Appendix A)."""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from invfast.cli import options as _options

HELP = "choose a transformation strength that a model trained without it fails on (P1 App. A)"

EPILOG = """\
P1 raised the blur σ in steps of 0.5 (noise σ in steps of 25) until a network trained
without the transformation fell below 10 % top-1 (15 % on ImageNet), and used that
strength. This command trains such a network (--seen-transformed 0; the training flags are
those of `invfast train`) or takes one with --checkpoint, then raises the strength from
--start by --step until the test accuracy on transformed images is below --target.

example:
  invfast calibrate --arch convnet-small --data synthetic --transform blur --epochs 8
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from invfast.cli import train

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    train.add_arguments(parser)
    for action in parser._actions:  # --arch/--out are optional here
        if action.dest in ("arch", "out"):
            action.required = False
    group = parser.add_argument_group("calibration")
    group.add_argument("--checkpoint", default=None,
                       help="use this model (trained without the transformation) instead of "
                       "training one")  # fmt: skip
    group.add_argument("--target", type=float, default=0.10,
                       help="stop at the first strength whose accuracy is below this "
                       "(default 0.10, P1 FaceScrub; 0.15 for ImageNet)")  # fmt: skip
    group.add_argument(
        "--parameter", default=None, help="parameter to raise (default sigma for blur and noise)"
    )
    group.add_argument(
        "--step", type=float, default=None, help="increment (default 0.5 for blur, 25 for noise)"
    )
    group.add_argument(
        "--start", type=float, default=None, help="first strength (default: one step)"
    )
    group.add_argument(
        "--max-steps", type=int, default=40, help="give up after this many strengths (default 40)"
    )
    group.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="also write the sweep and the chosen strength as JSON",
    )


def run(args: argparse.Namespace) -> int:
    from invfast.core import checkpoint
    from invfast.core.runtime.outputs import write_json
    from invfast.neurons import calibration, training

    if args.checkpoint is None and args.arch is None:
        raise ValueError("calibrate: give --arch (to train a model) or --checkpoint")
    if args.seen_transformed not in ("0", "all"):
        raise ValueError("calibrate trains with --seen-transformed 0; do not set it")
    with tempfile.TemporaryDirectory(prefix="invfast-calibrate-") as scratch:
        path = args.checkpoint
        if path is None:
            from invfast.cli import train

            args.seen_transformed = "0"
            if args.out is None:
                args.out = str(Path(scratch) / "run")
            config = train.config_from_args(args)
            result = training.train(config, command=shlex.join(["invfast", *sys.argv[1:]]))
            path = result.checkpoint
        ckpt = checkpoint.load(path)
        report = calibration.calibrate(
            ckpt, args.transform, parameter=args.parameter, step=args.step, start=args.start,
            target=args.target, max_steps=args.max_steps, device=args.device,
            batch_size=args.eval_batch_size, cache_dir=args.cache_dir,
            fixed_params=_options.parse_pairs(args.param, "--param"),
        )  # fmt: skip
    if args.json:
        write_json(Path(args.json), report)
    if report["chosen"] is None:
        last = report["sweep"][-1]
        raise ValueError(
            f"accuracy stayed >= {100 * args.target:.1f} % up to {report['parameter']} = "
            f"{last[report['parameter']]:g}; raise --max-steps or --target"
        )
    print(
        f"chosen: --transform {args.transform} --param {report['parameter']}={report['chosen']:g}"
    )
    return 0

"""``invfast screen``: sensitivity screening over transformation magnitudes (P2 §3.3)."""

from __future__ import annotations

import argparse

from invfast.cli import p2_options as _p2

HELP = "accuracy and softmax curves over magnitudes of one transformation, critical magnitude (P2)"

EPILOG = """\
transformations (the varied parameter; default --values):
  translate-x      dx, px right            0:16:1         translate-y  dy, px down   0:16:1
  rotate           angle, ° anticlockwise  0:180:10
  scale-x          sx (sy = 1)             1:0.25:-0.05   scale-y      sy (sx = 1)   1:0.25:-0.05
  zoom             factor                  1:0.25:-0.05
  brightness       delta, pixel units      0:250:10       contrast     factor        1:0:-0.05
  grayscale-blend  alpha                   0:1:0.1
  blur             sigma, px               0:5:0.25       noise        sigma, pixel units 0:150:10

--values is start:stop:step (stop included when on the grid) or a comma list, walked in the
order given: the critical magnitude is the first (interpolated) one whose accuracy falls
below --fraction of the clean accuracy. Screen two-sided parameters from the identity
outwards, one side per run (0:-16:-1 and 0:16:1).

Writes OUT/screening.json, OUT/accuracy.png and, with --per-class / --classes,
OUT/softmax_NNN.png (P2 Fig. 6: the three most predicted classes and "others" per class),
and prints the table of critical magnitudes. See docs/p2-screening-itn.md.

example:
  invfast screen runs/blur-5/ckpt.pt --transform rotate --values 0:180:10 --per-class \\
      --out screen-rotate
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    _p2.add_checkpoint_arguments(parser)
    group = parser.add_argument_group("screening")
    group.add_argument("--transform", required=True, metavar="NAME",
                       help="the transformation to screen (list below)")  # fmt: skip
    group.add_argument("--values", default=None, metavar="START:STOP:STEP|A,B,C",
                       help="the magnitudes (default: the transformation's, below)")  # fmt: skip
    classes = group.add_mutually_exclusive_group()
    classes.add_argument("--per-class", action="store_true",
                         help="softmax curves and critical magnitude of every class")  # fmt: skip
    classes.add_argument("--classes", default=None, metavar="K,K,...",
                         help="the same for these class indices only")  # fmt: skip
    group.add_argument("--fraction", type=float, default=0.5,
                       help="critical = first magnitude with accuracy below this fraction of "
                       "the clean accuracy (default 0.5)")  # fmt: skip
    group.add_argument("--batch-size", type=int, default=None, metavar="IMAGES",
                       help="test images per batch (default: max-batch // (magnitudes + 1), "
                       "so all magnitudes of a batch go in one forward)")  # fmt: skip
    group.add_argument("--max-batch", type=int, default=1024, metavar="ROWS",
                       help="rows (images × magnitudes, clean included) per transform launch "
                       "and forward (default 1024)")  # fmt: skip
    group.add_argument("--seed", type=int, default=None,
                       help="seed of random transformations (noise; default: the "
                       "checkpoint's)")  # fmt: skip
    _p2.add_output_arguments(parser, default="screen")


def parse_classes(text: str | None, per_class: bool, num_classes: int):
    """--per-class / --classes → the ``classes`` argument of ``screening.screen``."""
    if per_class:
        return "all"
    if text is None:
        return None
    try:
        chosen = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        chosen = []
    if not chosen:
        raise ValueError(f"--classes: expected comma-separated class indices, got {text!r}")
    bad = [c for c in chosen if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"--classes: {bad} out of range 0..{num_classes - 1}")
    return chosen


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from invfast import screening
    from invfast.core import checkpoint, data

    # Every argument is checked before anything is computed or written.
    spec = screening.screened_transform(args.transform)
    magnitudes = screening.parse_magnitudes(args.values or spec.default_values)
    if not 0.0 < args.fraction <= 1.0:
        raise ValueError(f"--fraction must be in (0, 1], got {args.fraction}")
    if args.max_batch < 1:
        raise ValueError(f"--max-batch must be a positive integer, got {args.max_batch}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer, got {args.batch_size}")
    out = _p2.prepare_output(args)
    ckpt, model, device = _p2.load_checkpoint(args)
    classes = parse_classes(args.classes, args.per_class, ckpt["arch"]["num_classes"])
    seed = ckpt["seed"] if args.seed is None else args.seed
    transform_fn, standardize_fn = screening.transform_functions(
        spec.name, magnitudes, standardize=checkpoint.standardization(ckpt), seed=seed
    )
    dataset = _p2.load_dataset(ckpt, args)
    batch_size = args.batch_size or max(1, args.max_batch // (len(magnitudes) + 1))
    result = screening.screen(
        model, data.loader(dataset.test, batch_size), transform_fn, magnitudes,
        standardize_fn=standardize_fn, fraction=args.fraction, classes=classes,
        class_names=ckpt["classes"], max_batch=args.max_batch, device=device,
        transform=spec.name, parameter=spec.parameter,
    )  # fmt: skip
    result.source = {
        "checkpoint": str(args.checkpoint), "data": dataset.recipe(), "split": "test",
        "standardize": ckpt["input"]["standardize"], "seed": seed,
        "transform": {"name": spec.transform, "parameter": spec.parameter,
                      "fixed": dict(spec.fixed), "identity": spec.identity, "unit": spec.unit},
    }  # fmt: skip

    if out.exists():  # --overwrite: stale pages of an earlier run would mix with these
        for name in (
            "screening.json",
            "accuracy.png",
            *(p.name for p in out.glob("softmax_*.png")),
        ):
            (out / name).unlink(missing_ok=True)
    paths = screening.write_report(result, out)
    print(f"{dataset.summary()} | test split, {result.count} images | {device}")
    print(screening.format_table(result))
    print(f"wrote {', '.join(str(Path(p)) for p in paths.values())}")
    return 0

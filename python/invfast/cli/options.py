"""Flags shared by ``invfast train`` and ``invfast calibrate`` (data, model, device)."""

from __future__ import annotations

import argparse


def parse_value(text: str) -> object:
    """``NAME=VALUE`` values: int, float, true/false/none, else the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_pairs(pairs: list[str] | None, flag: str) -> dict:
    out = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"{flag} expects NAME=VALUE, got {pair!r}")
        out[name.strip().replace("-", "_")] = parse_value(value)
    return out


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data", default="synthetic", metavar="SPEC",
        help="synthetic (built in, default) | imagefolder:PATH | idx:PATH | npz:PATH | mnist | "
        "fashion-mnist | digits (see docs/training.md)",
    )  # fmt: skip
    group.add_argument("--image-size", type=int, default=None, metavar="PX",
                       help="resize (shorter side) + centre-crop to PX×PX; synthetic: draw at PX "
                       "(default 32)")  # fmt: skip
    group.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        default=None,
        help="convert images to 1 (luma) or 3 (replicated grey) channels",
    )
    group.add_argument("--split-seed", type=int, default=0,
                       help="seed of the fixed per-class train/test and validation splits "
                       "(default 0)")  # fmt: skip
    group.add_argument("--test-fraction", type=float, default=0.2,
                       help="per-class test fraction for sources without an official test "
                       "split (default 0.2)")  # fmt: skip
    group.add_argument(
        "--max-per-class",
        type=int,
        default=None,
        metavar="N",
        help="keep the first N images of each class in each split",
    )
    group.add_argument(
        "--synthetic-classes",
        type=int,
        default=None,
        metavar="K",
        help="synthetic: number of categories, 2..16 (default 16)",
    )
    group.add_argument(
        "--synthetic-per-class",
        type=int,
        default=None,
        metavar="N",
        help="synthetic: images drawn per category before the split",
    )
    group.add_argument("--cache-dir", default=None,
                       help="download folder of mnist / fashion-mnist (default $INVFAST_DATA "
                       "or ~/.cache/invfast)")  # fmt: skip


def data_options(args: argparse.Namespace) -> dict:
    options = {
        "image_size": args.image_size, "channels": args.channels, "split_seed": args.split_seed,
        "test_fraction": args.test_fraction, "max_per_class": args.max_per_class,
    }  # fmt: skip
    if args.data == "synthetic":
        if args.synthetic_classes is not None:
            options["synthetic_classes"] = args.synthetic_classes
        if args.synthetic_per_class is not None:
            options["synthetic_per_class"] = args.synthetic_per_class
    elif args.synthetic_classes is not None or args.synthetic_per_class is not None:
        raise ValueError("--synthetic-classes / --synthetic-per-class need --data synthetic")
    return options


def add_transform_arguments(parser: argparse.ArgumentParser, default: str | None = "blur") -> None:
    group = parser.add_argument_group("transformation")
    group.add_argument(
        "--transform",
        default=default,
        required=default is None,
        metavar="NAME",
        help="the transformation (invfast.core.transforms.names(); default blur)",
    )
    group.add_argument("--sigma", type=float, default=None,
                       help="shortcut for --param sigma=VALUE (blur σ in px, noise σ in "
                       "pixel units)")  # fmt: skip
    group.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="a transformation parameter (repeatable)",
    )


def transform_params(args: argparse.Namespace) -> dict:
    params = parse_pairs(args.param, "--param")
    if args.sigma is not None:
        params["sigma"] = args.sigma
    return params


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model and device")
    group.add_argument("--arch", required=True, metavar="NAME",
                       help="alexnet-p1 | resnet18 | googlenet | mlp5 | convnet-small "
                       "(invfast.core.models.names())")  # fmt: skip
    group.add_argument(
        "--arch-arg",
        action="append",
        metavar="NAME=VALUE",
        help="extra architecture argument, e.g. width=8 (repeatable)",
    )
    group.add_argument(
        "--device", default="auto", help="auto (CUDA when present, default) | cpu | cuda | cuda:N"
    )
    group.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mixed precision (default: on for CUDA, off on CPU)",
    )
    group.add_argument("--workers", type=int, default=None,
                       help="DataLoader worker processes (default 0 for in-memory data, 2 "
                       "for image folders)")  # fmt: skip
    group.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")

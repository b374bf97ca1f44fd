"""What ``invfast screen`` and ``invfast itn`` share: the checkpoint, its data, the device."""

from __future__ import annotations

import argparse

from invfast.cli import options as _options

# Data flags whose value overrides the checkpoint's recorded dataset options.
_DATA_FLAGS = (
    "image_size", "channels", "split_seed", "test_fraction", "max_per_class",
    "synthetic_classes", "synthetic_per_class",
)  # fmt: skip


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """CHECKPOINT, the data flags of ``invfast train`` (default: the checkpoint's dataset),
    --device, --out/--overwrite."""
    parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint of `invfast train`")
    _options.add_data_arguments(parser)
    for action in parser._actions:
        if action.dest == "data":
            action.help = (
                "the checkpoint's dataset (default) | synthetic | imagefolder:PATH | idx:PATH "
                "| npz:PATH | mnist | fashion-mnist | digits; the flags below override the "
                "checkpoint's options"
            )
    parser.set_defaults(data=None, **dict.fromkeys(_DATA_FLAGS))
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when present, default) | cpu | cuda | cuda:N"
    )


def add_output_arguments(parser: argparse.ArgumentParser, default: str | None) -> None:
    group = parser.add_argument_group("output")
    if default is None:
        group.add_argument("--out", required=True, help="output folder (must not exist)")
    else:
        group.add_argument(
            "--out", default=default, help=f"output folder (must not exist; default {default})"
        )
    group.add_argument(
        "--overwrite", action="store_true", help="replace the results in an existing --out"
    )


def load_checkpoint(args: argparse.Namespace):
    """(checkpoint dict, model on the device, device)."""
    from invfast.core import checkpoint
    from invfast.core.runtime.device import resolve_device

    ckpt = checkpoint.load(args.checkpoint)
    device = resolve_device(args.device)
    model = checkpoint.build_model(ckpt).to(device)
    return ckpt, model, device


def load_dataset(ckpt: dict, args: argparse.Namespace):
    """The checkpoint's dataset (or --data), with any data flag overriding its options;
    checked against the classifier's input (channels, size, classes)."""
    from invfast.core import checkpoint

    overrides = {k: getattr(args, k) for k in _DATA_FLAGS if getattr(args, k) is not None}
    synthetic_flags = {"synthetic_classes", "synthetic_per_class"} & set(overrides)
    spec = args.data or (ckpt.get("data") or {}).get("spec")
    if spec is not None and spec != "synthetic" and synthetic_flags:
        raise ValueError("--synthetic-classes / --synthetic-per-class need synthetic data")
    dataset, _ = checkpoint.evaluation_data(
        ckpt, spec=args.data, overrides=overrides, cache_dir=args.cache_dir
    )
    return dataset


def prepare_output(args: argparse.Namespace):
    """--out checked with ``invfast train``'s rule (refused when it exists, unless
    --overwrite); nothing is created here."""
    from invfast.core.runtime.outputs import check_output_folder

    return check_output_folder(args.out, overwrite=args.overwrite, inputs=[args.checkpoint])

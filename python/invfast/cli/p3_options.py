"""Shared pieces of ``invfast metrics / drift / saliency`` (P3 evaluation commands)."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from pathlib import Path

# Training settings that do not define a configuration (runs that differ only in these
# are repeats of one configuration: mean ± std over them).
NOT_CONFIGURATION = ("seed", "overwrite", "progress", "device", "workers", "eval_batch_size")


def add_eval_arguments(parser: argparse.ArgumentParser, *, group_help: str) -> None:
    parser.add_argument("--group", default=None, metavar="R4|T3", help=group_help)
    parser.add_argument(
        "--data", default=None, metavar="SPEC",
        help="evaluate on this source instead of the checkpoint's (loaded with the "
        "checkpoint's data options and protocol)",
    )  # fmt: skip
    parser.add_argument("--split", choices=("test", "train"), default="test",
                        help="which split of the data (default test)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--cache-dir", default=None, help="download folder of mnist etc.")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or value < 1):
        raise ValueError(f"{name} must be a positive integer, got {value}")


def load_checkpoint(path: str) -> dict:
    from invfast.core import checkpoint

    return checkpoint.load(path)


def group_of(ckpt: Mapping, requested: str | None, where: str) -> str:
    """``--group`` or the group the checkpoint was trained with; checked against its input."""
    from invfast.core import groups
    from invfast.learning.training import checkpoint_p3

    name = requested or checkpoint_p3(ckpt).get("group")
    if name is None:
        raise ValueError(f"{where}: the checkpoint records no P3 group; pass --group R4|T3")
    group = groups.get(name)
    size = ckpt["arch"]["image_size"]
    try:
        group.check_image_shape(size, size)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return group.name


def configuration(ckpt: Mapping) -> tuple[str, str]:
    """(key, label): checkpoints with equal keys are seeds of one configuration."""
    from invfast.learning.training import checkpoint_p3

    training = {k: v for k, v in ckpt.get("training", {}).items() if k not in NOT_CONFIGURATION}
    p3 = checkpoint_p3(ckpt)
    key = json.dumps(
        {"arch": ckpt["arch"], "data": ckpt.get("data"), "p3": p3, "training": training,
         "transform": ckpt.get("transform"), "seen": ckpt.get("seen_transformed")},
        sort_keys=True, default=str,
    )  # fmt: skip
    arch = ckpt["arch"]["name"]
    if not p3:
        return key, arch
    label = p3["mode"].upper()
    if p3["mode"] == "ir":
        label += f" ({p3['regularizer']}, ν={p3['nu']:g})"
    if arch not in ("mlp5", "mlp5-wt"):
        label += f" {arch}"
    return key, label


def unique_labels(labels: list[str], keys: list[str]) -> list[str]:
    """The same label for different configurations gets a #n suffix."""
    first_key: dict[str, list[str]] = {}
    out = []
    for label, key in zip(labels, keys, strict=True):
        seen = first_key.setdefault(label, [])
        if key not in seen:
            seen.append(key)
        index = seen.index(key)
        out.append(label if index == 0 else f"{label} #{index + 1}")
    return out


def prepare_out_file(out: str, overwrite: bool) -> Path:
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder; give a .json file name")
    if path.exists() and not overwrite:
        raise ValueError(f"--out {path} exists; pass --overwrite to replace it")
    return path


def prepare_out_dir(out: str, overwrite: bool) -> Path:
    from invfast.core.runtime.outputs import check_output_folder

    return check_output_folder(out, overwrite=overwrite)


def finite(value: object) -> object:
    """JSON-safe: NaN / inf become None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_json(path: Path, payload: Mapping) -> None:
    from invfast.core.runtime import outputs

    outputs.write_json(path, payload)

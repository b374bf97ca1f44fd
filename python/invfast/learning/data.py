"""P3's data protocol and training recipe (P3 §4.1; docs/p3.md), as plain defaults.

Protocol: 28×28 images zero-padded (centred) to 36×36, so a rotation or a cyclic shift
never cuts the object; digit 9 left out for R4 (it is a rotated 6); for the drift target
Fashion-MNIST, its last class (9, ankle boot) is left out so both have nine classes;
images standardized to zero mean and unit variance with statistics of the training split.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from invfast.core import groups as groups_
from invfast.core.data.protocol import leave_classes_out, pad_images

__all__ = [
    "P3_RECIPE",
    "P3Data",
    "apply_protocol",
    "channel_stats",
    "default_leave_out",
]

# The defaults `invfast train --mode da|ir|wt` and `invfast metrics` use for P3 runs.
P3_RECIPE: dict = {
    "image_size": 36,  # 28×28 zero-padded to 36×36
    "optimizer": "adam",
    "lr": 8e-4,
    "batch_size": 512,
    "epochs": 300,
    "selection": "best validation accuracy",
    "splits": {"train": 10_000, "test": 50_000, "val": 2_000},
    "seeds": 4,
    "regularizer": "logit",
    "target_si": 0.95,
    "arch": "mlp5 (hidden 128, ReLU); mlp5-wt for mode wt",
}


def default_leave_out(group: str | groups_.Group | None) -> tuple[int, ...]:
    """Classes P3 drops: digit 9 for R4 (confused with a rotated 6), none otherwise."""
    if group is None:
        return ()
    return (9,) if groups_.get(group).name == "R4" else ()


@dataclass
class P3Data:
    images: torch.Tensor  # uint8 [N, C, size, size]
    labels: torch.Tensor  # int64 [N], renumbered 0..K-1 after leaving classes out
    left_out: tuple[int, ...]  # original class ids removed
    kept_indices: torch.Tensor  # int64 [N]: position of each kept image in the input


def apply_protocol(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    group: str | groups_.Group | None = None,
    size: int = 36,
    leave_out: Iterable[int] | None = None,
) -> P3Data:
    """Zero-pad uint8 ``images`` ([N, H, W] or [N, C, H, W]) to ``size × size`` (centred)
    and drop the ``leave_out`` classes (default: ``default_leave_out(group)``).

    Remaining labels are renumbered so they stay contiguous: class c becomes c minus the
    number of left-out classes below it (the same map for every split).
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise TypeError("images must be a uint8 tensor [N, H, W] or [N, C, H, W]")
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4:
        raise ValueError(f"images must be [N, H, W] or [N, C, H, W], got {tuple(images.shape)}")
    if not isinstance(labels, torch.Tensor) or labels.shape != images.shape[:1]:
        raise ValueError(f"labels must be a [{images.shape[0]}] tensor")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integer class indices, got {labels.dtype}")
    height, width = images.shape[-2:]
    if size < max(height, width):
        raise ValueError(f"size must be at least the image size {height}×{width}, got {size}")
    dropped = tuple(sorted(set(default_leave_out(group) if leave_out is None else leave_out)))
    kept_indices, renumbered = leave_classes_out(labels, dropped)
    return P3Data(pad_images(images[kept_indices], size), renumbered, dropped, kept_indices)


def channel_stats(
    images: torch.Tensor, chunk: int = 4096
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of ``images`` [N, C, H, W], in float64,
    ``chunk`` images at a time. P3 standardizes with the training split's statistics."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] == 0:
        raise ValueError("images must be a non-empty [N, C, H, W] tensor")
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        part = images[start : start + chunk].to("cpu", torch.float64)
        total += part.sum(dim=(0, 2, 3))
        squares += part.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())

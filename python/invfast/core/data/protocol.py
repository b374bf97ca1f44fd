"""Dataset-level protocols: zero-padding to a larger square and leaving classes out.

P3 (arXiv:2308.03904, §4.1) pads 28×28 digits to 36×36 so that a rotation or a cyclic
shift never cuts the object, and leaves digit 9 out under rotations (it is a rotated 6).
Both are options of :func:`invfast.core.data.load` (``pad_to``, ``leave_out``), so the
dataset recipe stored in a checkpoint reproduces them.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def pad_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad uint8 images [N, C, H, W] to [N, C, size, size], centred (the extra pixel
    of an odd margin goes to the bottom / right)."""
    height, width = images.shape[-2:]
    if size < max(height, width):
        raise ValueError(f"pad_to must be at least the image size {height}×{width}, got {size}")
    top, left = (size - height) // 2, (size - width) // 2
    padded = torch.zeros((*images.shape[:-2], size, size), dtype=images.dtype, device=images.device)
    padded[..., top : top + height, left : left + width] = images
    return padded


def leave_classes_out(
    labels: torch.Tensor, classes: Iterable[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept positions, renumbered labels of the kept images): class c becomes c minus the
    number of left-out classes below it, the same map for every split."""
    dropped = sorted(set(int(c) for c in classes))
    labels = labels.to(torch.int64)
    keep = torch.ones_like(labels, dtype=torch.bool)
    shift = torch.zeros_like(labels)
    for c in dropped:
        keep &= labels != c
        shift += (labels > c).long()
    kept = keep.nonzero().flatten()
    return kept, (labels - shift)[kept]

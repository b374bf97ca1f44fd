"""Image sets: uint8 images with int64 labels and image ids, and the per-class split rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import Dataset as _TorchDataset

from invfast.core.data import _files


class Batch(NamedTuple):
    """A batch: uint8 images [B, C, H, W], int64 labels [B], int64 image ids [B]."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: torch.Tensor


class ImageSet(_TorchDataset):
    """Images of one split. ``labels`` and ``ids`` are int64 tensors [N] held in memory;
    the images are held in memory or decoded from files on demand (in loader workers)."""

    labels: torch.Tensor
    ids: torch.Tensor
    channels: int
    image_size: int

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: list[int]) -> Batch:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = self.__getitems__([index])
        return batch.images[0], batch.labels[0], batch.ids[0]

    def subset(self, indices: torch.Tensor) -> ImageSet:
        raise NotImplementedError

    def class_counts(self, num_classes: int) -> torch.Tensor:
        return torch.bincount(self.labels, minlength=num_classes)


class TensorImageSet(ImageSet):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}"
            )
        if not (len(images) == len(labels) == len(ids)):
            raise ValueError("images, labels and ids must have the same length")
        self.images = images.contiguous()
        self.labels = labels.to(torch.int64)
        self.ids = ids.to(torch.int64)
        self.channels = images.shape[1]
        self.image_size = images.shape[2]

    def __getitems__(self, indices: list[int]) -> Batch:
        index = torch.as_tensor(indices, dtype=torch.int64)
        return Batch(self.images[index], self.labels[index], self.ids[index])

    def subset(self, indices: torch.Tensor) -> TensorImageSet:
        return TensorImageSet(self.images[indices], self.labels[indices], self.ids[indices])


class FileImageSet(ImageSet):
    """Image files decoded on demand: channels converted, shorter side resized to
    ``image_size`` and centre-cropped."""

    def __init__(
        self,
        paths: list[Path],
        labels: torch.Tensor,
        ids: torch.Tensor,
        channels: int,
        image_size: int,
    ) -> None:
        self.paths = list(paths)
        self.labels = labels.to(torch.int64)
        self.ids = ids.to(torch.int64)
        self.channels = channels
        self.image_size = image_size

    def __getitems__(self, indices: list[int]) -> Batch:
        images = torch.stack(
            [_files.decode_image(self.paths[i], self.channels, self.image_size) for i in indices]
        )
        index = torch.as_tensor(indices, dtype=torch.int64)
        return Batch(images, self.labels[index], self.ids[index])

    def subset(self, indices: torch.Tensor) -> FileImageSet:
        paths = [self.paths[i] for i in indices.tolist()]
        return FileImageSet(
            paths, self.labels[indices], self.ids[indices], self.channels, self.image_size
        )


@dataclass
class Dataset:
    """A loaded data source: its splits, class names, and what reproduces it."""

    spec: str
    train: ImageSet
    test: ImageSet
    classes: list[str]
    options: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return self.train.channels

    @property
    def image_size(self) -> int:
        return self.train.image_size

    def recipe(self) -> dict:
        """Plain data that reproduces this dataset: ``load(r["spec"], **r["options"])``."""
        return {"spec": self.spec, "options": dict(self.options)}

    def summary(self) -> str:
        return (
            f"{self.spec}: {self.num_classes} classes, {len(self.train)} train / "
            f"{len(self.test)} test images, {self.channels}×{self.image_size}×{self.image_size}"
        )


def split_per_class(
    labels: torch.Tensor, fraction: float, seed: int, salt: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, held out), each sorted: per class c, the images of c in index order
    are permuted by a generator seeded with (seed, salt, c) and the first
    round(fraction · n_c) are held out — at least one and never all when n_c ≥ 2."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"split fraction must be in [0, 1), got {fraction}")
    kept, held = [], []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        n = len(members)
        n_held = round(fraction * n)
        if fraction > 0 and n >= 2:
            n_held = min(max(n_held, 1), n - 1)
        g = torch.Generator().manual_seed((seed * 1_000_003 + salt * 10_007 + c) % (2**63))
        order = members[torch.randperm(n, generator=g)]
        held.append(order[:n_held])
        kept.append(order[n_held:])
    kept_t = torch.sort(torch.cat(kept)).values if kept else torch.zeros(0, dtype=torch.int64)
    held_t = torch.sort(torch.cat(held)).values if held else torch.zeros(0, dtype=torch.int64)
    return kept_t, held_t


def _limit_per_class(labels: torch.Tensor, limit: int | None) -> torch.Tensor:
    """Indices of the first ``limit`` images of every class (all when limit is None)."""
    if limit is None:
        return torch.arange(len(labels))
    keep = torch.zeros(len(labels), dtype=torch.bool)
    for c in torch.unique(labels).tolist():
        keep[torch.nonzero(labels == c).flatten()[:limit]] = True
    return torch.nonzero(keep).flatten()


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")

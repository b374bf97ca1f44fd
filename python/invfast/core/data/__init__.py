"""Datasets: every source becomes train/test splits of uint8 images with labels and ids.

``load(spec)`` reads ``synthetic``, ``imagefolder:PATH``, ``idx:PATH``, ``npz:PATH``,
``mnist``, ``fashion-mnist`` or ``digits`` and returns a :class:`Dataset` whose ``train``
and ``test`` are :class:`ImageSet` objects. Images stay uint8 [C, H, W] until the fused
transform turns a batch into standardized float32 on the model's device; every image has
an integer id, unique over both splits and stable across runs, which is the ``index`` of
the transform RNG. :func:`loader` batches an ImageSet into :class:`Batch` tuples.

Split rule (docs/training.md): sources with an official test split (MNIST, Fashion-MNIST,
an ``idx:`` folder, an npz with ``x_test``/``y_test``) keep it. The others are split per
class: the images of class c, in their stable order (file order / array order), are
permuted by a generator seeded with (split_seed, c) and the first round(test_fraction·n_c)
go to test (at least one, never all, when n_c ≥ 2). :func:`split_per_class` is the same
rule used for the validation split of training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data import Dataset as _TorchDataset

from invfast.core.data import _download, _files, _synthetic

SOURCES = (
    "synthetic",
    "imagefolder:PATH",
    "idx:PATH",
    "npz:PATH",
    "mnist",
    "fashion-mnist",
    "digits",
)

SYNTHETIC_CLASSES = 16
SYNTHETIC_PER_CLASS = 375
SYNTHETIC_SIZE = 32


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


def _to_nchw(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t[:, None] if t.dim() == 3 else t.permute(0, 3, 1, 2).contiguous()


def _convert_channels(x: torch.Tensor, channels: int | None) -> torch.Tensor:
    if channels is None or x.shape[1] == channels:
        return x
    if channels == 3 and x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1).contiguous()
    if channels == 1 and x.shape[1] == 3:
        luma = 0.299 * x[:, 0].float() + 0.587 * x[:, 1].float() + 0.114 * x[:, 2].float()
        return luma.round().clamp(0, 255).to(torch.uint8)[:, None]
    raise ValueError(f"channels must be 1 or 3, got {channels}")


def _resize(x: torch.Tensor, image_size: int | None) -> torch.Tensor:
    h, w = x.shape[2], x.shape[3]
    if image_size is None:
        if h == w:
            return x
        image_size = min(h, w)
    if (h, w) == (image_size, image_size):
        return x
    return torch.cat([_files.resize_center_crop(part, image_size) for part in x.split(1024)])


def _labels_to_index(
    y: np.ndarray, y_test: np.ndarray | None
) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    values = np.unique(y)
    lookup = {v: i for i, v in enumerate(values.tolist())}
    labels = torch.tensor([lookup[v] for v in y.tolist()], dtype=torch.int64)
    test = None
    if y_test is not None:
        unknown = sorted(set(np.unique(y_test).tolist()) - set(lookup))
        if unknown:
            raise ValueError(f"test labels {unknown[:5]} do not occur in the training labels")
        test = torch.tensor([lookup[v] for v in y_test.tolist()], dtype=torch.int64)
    return labels, test, [str(v) for v in values.tolist()]


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def load(
    spec: str,
    *,
    image_size: int | None = None,
    channels: int | None = None,
    split_seed: int = 0,
    test_fraction: float = 0.2,
    max_per_class: int | None = None,
    synthetic_classes: int = SYNTHETIC_CLASSES,
    synthetic_per_class: int = SYNTHETIC_PER_CLASS,
    synthetic_seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    mirror: str | None = None,
) -> Dataset:
    """Load a data source (see the module docstring and docs/training.md).

    ``image_size``: resize (shorter side) and centre-crop to a square of this size
    (synthetic: draw at this size, default 32). ``channels``: 1 or 3 (grey replicated or
    RGB → luma). ``max_per_class``: keep the first n images of each class in each split.
    ``cache_dir``/``mirror`` only matter for mnist / fashion-mnist downloads and are not
    part of the dataset's identity (not in ``options``).
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"data spec must be one of {', '.join(SOURCES)}, got {spec!r}")
    _check_positive("image_size", image_size)
    _check_positive("max_per_class", max_per_class)
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    options = {
        "image_size": image_size, "channels": channels, "split_seed": int(split_seed),
        "test_fraction": float(test_fraction), "max_per_class": max_per_class,
    }  # fmt: skip
    kind, _, arg = spec.partition(":")
    path = Path(arg).expanduser() if arg else None
    if kind in ("imagefolder", "idx", "npz") and path is None:
        raise ValueError(f"data spec {kind}: needs a path, e.g. {kind}:/data/faces")
    if kind not in ("imagefolder", "idx", "npz") and arg:
        raise ValueError(f"data spec {spec!r}: {kind} takes no path")

    if kind == "synthetic":
        _check_positive("synthetic_classes", synthetic_classes)
        _check_positive("synthetic_per_class", synthetic_per_class)
        if not 2 <= synthetic_classes <= _synthetic.MAX_CLASSES:
            raise ValueError(
                f"synthetic_classes must be in [2, {_synthetic.MAX_CLASSES}], "
                f"got {synthetic_classes}"
            )
        if synthetic_per_class < 2:
            raise ValueError(f"synthetic_per_class must be at least 2, got {synthetic_per_class}")
        size = image_size or SYNTHETIC_SIZE
        if size < 8:
            raise ValueError(f"synthetic images need image_size >= 8, got {size}")
        images, labels = _synthetic.generate(
            synthetic_classes, synthetic_per_class, size, synthetic_seed
        )
        options.update(
            synthetic_classes=synthetic_classes, synthetic_per_class=synthetic_per_class,
            synthetic_seed=int(synthetic_seed),
        )  # fmt: skip
        names = _synthetic.class_names(synthetic_classes)
        return _finish(spec, images, labels, None, None, names, options)
    if kind == "imagefolder":
        return _load_image_folder(spec, path, options)
    if kind == "idx":
        arrays = _files.read_idx_dataset(path)
    elif kind == "npz":
        arrays = _files.read_npz(path)
    elif kind in ("mnist", "fashion-mnist"):
        cache = Path(cache_dir).expanduser() if cache_dir else None
        folder = _download.ensure_files(kind, cache, mirror)
        arrays = _files.read_idx_dataset(folder)
    elif kind == "digits":
        arrays = _load_digits()
    else:
        raise ValueError(f"unknown data source {spec!r}; valid: {', '.join(SOURCES)}")

    labels, test_labels, class_names = _labels_to_index(arrays["y"], arrays.get("y_test"))
    if kind in ("mnist", "fashion-mnist"):
        class_names = _download.CLASSES[kind]
    images = _resize(_to_nchw(arrays["x"]), image_size)
    test_images = None
    if "x_test" in arrays:
        test_images = _resize(_to_nchw(arrays["x_test"]), image_size or images.shape[2])
        if test_images.shape[1:] != images.shape[1:]:
            raise ValueError(
                f"{spec}: test images {tuple(test_images.shape[1:])} differ from train "
                f"{tuple(images.shape[1:])}"
            )
    return _finish(spec, images, labels, test_images, test_labels, class_names, options)


def _finish(
    spec: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    test_images: torch.Tensor | None,
    test_labels: torch.Tensor | None,
    classes: list[str],
    options: dict,
) -> Dataset:
    channels = options["channels"]
    if len(images) == 0:
        raise ValueError(f"{spec}: the dataset is empty")
    images = _convert_channels(images, channels)
    if test_images is None:
        train_idx, test_idx = split_per_class(
            labels, options["test_fraction"], options["split_seed"]
        )
        ids = torch.arange(len(labels))
        train_images, train_labels, train_ids = images[train_idx], labels[train_idx], ids[train_idx]
        test_images, test_labels, test_ids = images[test_idx], labels[test_idx], ids[test_idx]
    else:
        test_images = _convert_channels(test_images, channels)
        train_images, train_labels = images, labels
        train_ids = torch.arange(len(labels))
        test_ids = torch.arange(len(labels), len(labels) + len(test_labels))
    keep = _limit_per_class(train_labels, options["max_per_class"])
    keep_test = _limit_per_class(test_labels, options["max_per_class"])
    train = TensorImageSet(train_images[keep], train_labels[keep], train_ids[keep])
    test = TensorImageSet(test_images[keep_test], test_labels[keep_test], test_ids[keep_test])
    if len(test) == 0:
        raise ValueError(f"{spec}: the test split is empty (too few images per class)")
    return Dataset(spec, train, test, list(classes), options)


def _load_image_folder(spec: str, path: Path, options: dict) -> Dataset:
    classes, files, labels_list = _files.list_image_folder(path)
    channels = options["channels"] or 3
    size = options["image_size"]
    if size is None:
        first = _files.decode_image(files[0], channels, None)
        size = min(first.shape[1], first.shape[2])
    labels = torch.tensor(labels_list, dtype=torch.int64)
    train_idx, test_idx = split_per_class(labels, options["test_fraction"], options["split_seed"])
    ids = torch.arange(len(labels))
    sets = []
    for idx in (train_idx, test_idx):
        idx = idx[_limit_per_class(labels[idx], options["max_per_class"])]
        sets.append(
            FileImageSet([files[i] for i in idx.tolist()], labels[idx], ids[idx], channels, size)
        )
    options = {**options, "image_size": size, "channels": channels}
    return Dataset(spec, sets[0], sets[1], classes, options)


def _load_digits() -> dict[str, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ValueError(
            "the digits dataset needs scikit-learn: pip install 'invfast[digits]'"
        ) from None
    bunch = load_digits()
    # 8×8 images with values 0..16 → uint8 0..255
    x = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0)).clip(0, 255)
    return {"x": x.astype(np.uint8), "y": np.asarray(bunch.target, dtype=np.int64)}


class EpochSampler(Sampler[int]):
    """Indices of one epoch for one process: a permutation seeded by (seed, epoch) when
    ``shuffle``, then this rank's share ``order[rank::world_size]``. With ``pad`` the order
    is extended by wrapping around so that every rank gets the same count (training under
    DDP); without it no index is repeated (evaluation: shards are summed exactly)."""

    def __init__(
        self,
        n: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = False,
    ) -> None:
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % (2**63))
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        if self.pad and self.world_size > 1 and self.n % self.world_size:
            extra = self.world_size - self.n % self.world_size
            order = torch.cat([order, order[:extra].repeat(extra // max(self.n, 1) + 1)[:extra]])
        return order[self.rank :: self.world_size]

    def __iter__(self):
        return iter(self._order().tolist())

    def __len__(self) -> int:
        return len(self._order())


def _passthrough(batch: Batch) -> Batch:
    return batch


def loader(
    images: ImageSet,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    workers: int = 0,
    pin_memory: bool = False,
    rank: int = 0,
    world_size: int = 1,
    pad: bool = False,
) -> DataLoader:
    """A DataLoader of :class:`Batch` (uint8 images, labels, ids). Call
    ``loader.sampler.set_epoch(e)`` before each epoch to reshuffle."""
    _check_positive("batch_size", batch_size)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be a non-negative integer, got {workers!r}")
    sampler = EpochSampler(
        len(images), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, pad=pad
    )
    return DataLoader(
        images,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        collate_fn=_passthrough,
        persistent_workers=workers > 0,
    )


__all__ = [
    "SOURCES",
    "Batch",
    "Dataset",
    "EpochSampler",
    "FileImageSet",
    "ImageSet",
    "TensorImageSet",
    "load",
    "loader",
    "split_per_class",
]

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
from pathlib import Path

import numpy as np
import torch

from invfast.core.data import _download, _files, _synthetic
from invfast.core.data.loading import EpochSampler, loader
from invfast.core.data.protocol import leave_classes_out, pad_images
from invfast.core.data.sets import (
    Batch,
    Dataset,
    FileImageSet,
    ImageSet,
    TensorImageSet,
    _check_positive,
    _limit_per_class,
    split_per_class,
)

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
    pad_to: int | None = None,
    leave_out: list[int] | tuple[int, ...] | None = None,
    cache_dir: str | os.PathLike | None = None,
    mirror: str | None = None,
) -> Dataset:
    """Load a data source (see the module docstring and docs/training.md).

    ``image_size``: resize (shorter side) and centre-crop to a square of this size
    (synthetic: draw at this size, default 32). ``channels``: 1 or 3 (grey replicated or
    RGB → luma). ``max_per_class``: keep the first n images of each class in each split.
    ``pad_to``: zero-pad the (resized) images to this square size, centred; ``leave_out``:
    drop these classes and renumber the others (:mod:`invfast.core.data.protocol`).
    ``cache_dir``/``mirror`` only matter for mnist / fashion-mnist downloads and are not
    part of the dataset's identity (not in ``options``).
    """
    dataset = _load_source(
        spec, image_size=image_size, channels=channels, split_seed=split_seed,
        test_fraction=test_fraction, max_per_class=max_per_class,
        synthetic_classes=synthetic_classes, synthetic_per_class=synthetic_per_class,
        synthetic_seed=synthetic_seed, cache_dir=cache_dir, mirror=mirror,
    )  # fmt: skip
    if pad_to is None and not leave_out:
        return dataset
    return _apply_protocol(dataset, pad_to, leave_out or [])


def _apply_protocol(dataset: Dataset, pad_to: int | None, leave_out: list[int]) -> Dataset:
    _check_positive("pad_to", pad_to)
    bad = [c for c in leave_out if isinstance(c, bool) or not isinstance(c, int)
           or not 0 <= c < dataset.num_classes]  # fmt: skip
    if bad:
        raise ValueError(
            f"leave_out must list class indices in 0..{dataset.num_classes - 1}, got {bad}"
        )
    if len(set(leave_out)) >= dataset.num_classes - 1:
        raise ValueError("leave_out must keep at least two classes")
    splits = []
    for images in (dataset.train, dataset.test):
        if not isinstance(images, TensorImageSet):
            raise ValueError(f"{dataset.spec}: pad_to / leave_out need in-memory data")
        kept, labels = leave_classes_out(images.labels, leave_out)
        x = images.images[kept]
        splits.append(TensorImageSet(pad_images(x, pad_to) if pad_to else x, labels,
                                     images.ids[kept]))  # fmt: skip
    classes = [c for i, c in enumerate(dataset.classes) if i not in set(leave_out)]
    options = dict(dataset.options)
    if pad_to is not None:
        options["pad_to"] = int(pad_to)
    if leave_out:
        options["leave_out"] = sorted(set(int(c) for c in leave_out))
    return Dataset(dataset.spec, splits[0], splits[1], classes, options)


def _load_source(
    spec: str,
    *,
    image_size: int | None,
    channels: int | None,
    split_seed: int,
    test_fraction: float,
    max_per_class: int | None,
    synthetic_classes: int,
    synthetic_per_class: int,
    synthetic_seed: int,
    cache_dir: str | os.PathLike | None,
    mirror: str | None,
) -> Dataset:
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

"""Batches as users pass them to library functions: one batch or an iterable of batches,
each a tensor of images, an ``(images, labels[, ids])`` tuple (a ``Batch``) or a dict."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

#: (images, labels or None)
ImagesAndLabels = tuple[torch.Tensor, "torch.Tensor | None"]


def unpack_batch(
    batch: object, offset: int = 0, op: str = "data"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, labels[, ids]) → checked tensors; ids default to ``offset + arange(B)``."""
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise TypeError(f"{op}: data must yield (images, labels, ids) tuples")
    images, labels = batch[0], batch[1]
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
        raise ValueError(f"{op}: images must be a [B, C, H, W] tensor, got {shape}")
    b = images.shape[0]
    if not isinstance(labels, torch.Tensor) or labels.shape != (b,) or labels.is_floating_point():
        raise ValueError(f"{op}: labels must be an integer tensor of shape [{b}]")
    if len(batch) == 3 and batch[2] is not None:
        ids = batch[2]
        if not isinstance(ids, torch.Tensor) or ids.shape != (b,) or ids.is_floating_point():
            raise ValueError(f"{op}: ids must be an integer tensor of shape [{b}]")
    else:
        ids = torch.arange(offset, offset + b)
    return images, labels.long(), ids.long()


def _image_key(batch: dict) -> str | None:
    return next((k for k in ("images", "image", "x") if k in batch), None)


def _unpack(item: object) -> ImagesAndLabels:
    if isinstance(item, torch.Tensor):
        return item, None
    if isinstance(item, dict):
        key = _image_key(item)
        if key is None:
            raise ValueError("data: a dict batch needs an 'images' (or 'image', 'x') entry")
        labels = next((item[k] for k in ("labels", "label", "y") if k in item), None)
        return item[key], labels
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], torch.Tensor):
        return item[0], item[1] if len(item) > 1 else None
    raise TypeError(
        "data: each batch must be a tensor of images, (images, labels[, ids]) or a dict, "
        f"got {type(item).__name__}"
    )


def _is_single_batch(data: object) -> bool:
    if isinstance(data, torch.Tensor):
        return True
    if isinstance(data, dict):
        return _image_key(data) is not None
    return (
        isinstance(data, (tuple, list))
        and 2 <= len(data) <= 3
        and isinstance(data[0], torch.Tensor)
        and data[0].dim() >= 3
        and (data[1] is None or (isinstance(data[1], torch.Tensor) and data[1].dim() <= 1))
    )


def iter_batches(data: object, max_images: int | None = None) -> Iterator[ImagesAndLabels]:
    """Yield ``(images, labels or None)`` from one batch or an iterable of batches,
    stopping after ``max_images`` images."""
    if max_images is not None and (isinstance(max_images, bool) or max_images < 1):
        raise ValueError(f"max_images must be a positive int or None, got {max_images!r}")
    items = [data] if _is_single_batch(data) else data
    if not isinstance(items, Iterable):
        raise TypeError(f"data must be a batch or an iterable of batches, got {type(data)}")
    seen = 0
    for item in items:
        x, y = _unpack(item)
        if x.dim() < 3:
            raise ValueError(f"data: images must be [B, ..., H, W], got shape {tuple(x.shape)}")
        if y is not None and (not isinstance(y, torch.Tensor) or y.shape != x.shape[:1]):
            raise ValueError(f"data: labels must be a [{x.shape[0]}] tensor like the images")
        if max_images is not None:
            x, y = x[: max_images - seen], None if y is None else y[: max_images - seen]
        if x.shape[0] == 0:
            continue
        seen += x.shape[0]
        yield x, y
        if max_images is not None and seen >= max_images:
            return

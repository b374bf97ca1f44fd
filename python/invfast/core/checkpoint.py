"""Checkpoints: plain data only, loaded with ``torch.load(weights_only=True)``.

A checkpoint is a ``torch.save`` zip file holding one dict::

    format            "invfast-checkpoint"       format_version  1
    invfast_version   str
    arch              {"name", "kwargs", "num_classes", "in_channels", "image_size"}
    state_dict        {str: Tensor}               state_dict_sha256  str (of the tensors)
    classes           [str]                       input  {"image_size", "channels", "standardize"}
    data              {"spec", "options"} | None  (``invfast.core.data.load(spec, **options)``)
    transform         {"name", "params"} | None   seen_transformed  [int]
    seed              int                         metrics / training / extra  dict

Nothing but tensors, str, int, float, bool, None, lists, tuples and dicts is stored, and
nothing else is ever unpickled. :func:`load` refuses — with one-line ``ValueError`` — a
missing, empty, truncated or corrupt file (including weights whose SHA-256 no longer
matches), a file holding pickled objects, a dict that is not an invfast checkpoint, and an
unknown architecture.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from invfast._version import __version__
from invfast.core import data as data_
from invfast.core import models, transforms
from invfast.core.runtime.device import resolve_device
from invfast.core.runtime.outputs import atomic_path

FORMAT = "invfast-checkpoint"
FORMAT_VERSION = 1


def _plain(value: object, where: str) -> None:
    """Raise ValueError unless ``value`` is plain data (what weights_only can load)."""
    if value is None or isinstance(value, (bool, int, str, torch.Tensor)):
        return
    if isinstance(value, float):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _plain(item, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise ValueError(f"checkpoint: {where} has a key of type {type(key).__name__}")
            _plain(item, f"{where}[{key!r}]")
        return
    raise ValueError(
        f"checkpoint: {where} is a {type(value).__name__}; only plain data can be stored"
    )


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of the tensors, in key order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save(
    path: str | os.PathLike,
    *,
    arch: str,
    state_dict: Mapping[str, torch.Tensor],
    num_classes: int,
    in_channels: int,
    image_size: int,
    arch_kwargs: Mapping | None = None,
    classes: list[str] | None = None,
    standardize: str | Mapping = "per-image",
    data: Mapping | None = None,
    transform: Mapping | None = None,
    seen_transformed: list[int] | None = None,
    seed: int = 0,
    metrics: Mapping | None = None,
    training: Mapping | None = None,
    extra: Mapping | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then rename)."""
    state = {name: t.detach().to("cpu").contiguous() for name, t in state_dict.items()}
    ckpt = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "invfast_version": __version__,
        "arch": {
            "name": arch,
            "kwargs": dict(arch_kwargs or {}),
            "num_classes": int(num_classes),
            "in_channels": int(in_channels),
            "image_size": int(image_size),
        },
        "state_dict": state,
        "state_dict_sha256": state_dict_sha256(state),
        "classes": list(classes) if classes is not None else [str(i) for i in range(num_classes)],
        "input": {
            "image_size": int(image_size),
            "channels": int(in_channels),
            "standardize": standardize if isinstance(standardize, str) else dict(standardize),
        },
        "data": dict(data) if data is not None else None,
        "transform": dict(transform) if transform is not None else None,
        "seen_transformed": [int(c) for c in (seen_transformed or [])],
        "seed": int(seed),
        "metrics": dict(metrics or {}),
        "training": dict(training or {}),
        "extra": dict(extra or {}),
    }
    _plain(ckpt, "checkpoint")
    _validate(ckpt, "checkpoint to save")
    path = Path(path)
    # Saved through a file object: torch then names the archive's root "archive" rather
    # than after the (random) temporary file name, so equal checkpoints are equal bytes.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(ckpt, handle)
    return path


def load(path: str | os.PathLike, *, verify: bool = True) -> dict:
    """Read and validate a checkpoint (CPU tensors). ``verify`` re-hashes the weights."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file, not a checkpoint")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: corrupt or truncated checkpoint (not a torch.save archive)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(
            f"{path}: refused, the checkpoint holds pickled Python objects (only plain data "
            "is loaded)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path}: corrupt or truncated checkpoint ({first})") from None
    _validate(ckpt, str(path))
    if verify and state_dict_sha256(ckpt["state_dict"]) != ckpt["state_dict_sha256"]:
        raise ValueError(f"{path}: corrupt checkpoint (the weights' SHA-256 does not match)")
    return ckpt


def _need(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise ValueError(f"{where}: invalid checkpoint: {what}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate(ckpt: object, where: str) -> None:
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{where}: not an invfast checkpoint")
    version = ckpt.get("format_version")
    _need(_is_int(version), where, "format_version missing")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{where}: checkpoint format {version} is newer than this invfast reads "
            f"({FORMAT_VERSION}); upgrade invfast"
        )
    arch = ckpt.get("arch")
    _need(isinstance(arch, dict), where, "'arch' must be a dict")
    name = arch.get("name")
    if name not in models.names():
        raise ValueError(
            f"{where}: unknown architecture {name!r}; known: {', '.join(models.names())}"
        )
    _need(isinstance(arch.get("kwargs"), dict), where, "'arch.kwargs' must be a dict")
    for key in ("num_classes", "in_channels", "image_size"):
        _need(_is_int(arch.get(key)) and arch[key] > 0, where, f"'arch.{key}' must be > 0")
    state = ckpt.get("state_dict")
    _need(isinstance(state, dict) and len(state) > 0, where, "'state_dict' must be a dict")
    for key, tensor in state.items():
        _need(isinstance(key, str) and isinstance(tensor, torch.Tensor), where,
              "'state_dict' must map names to tensors")  # fmt: skip
        if tensor.is_floating_point():
            _need(bool(torch.isfinite(tensor).all()), where, f"weight {key!r} is not finite")
    _need(isinstance(ckpt.get("state_dict_sha256"), str), where, "'state_dict_sha256' missing")
    classes = ckpt.get("classes")
    _need(isinstance(classes, list) and len(classes) == arch["num_classes"], where,
          "'classes' must list one name per class")  # fmt: skip
    spec = ckpt.get("input")
    _need(isinstance(spec, dict) and spec.get("image_size") == arch["image_size"]
          and spec.get("channels") == arch["in_channels"], where,
          "'input' must match the architecture's image size and channels")  # fmt: skip
    standardize = spec.get("standardize")
    _need(standardize in ("per-image", "none") or isinstance(standardize, dict), where,
          "'input.standardize' must be 'per-image', 'none' or {'mean', 'std'}")  # fmt: skip
    data = ckpt.get("data")
    _need(data is None or (isinstance(data, dict) and isinstance(data.get("spec"), str)
          and isinstance(data.get("options"), dict)), where,
          "'data' must be None or {'spec', 'options'}")  # fmt: skip
    transform = ckpt.get("transform")
    _need(transform is None or (isinstance(transform, dict)
          and isinstance(transform.get("name"), str)
          and isinstance(transform.get("params"), dict)), where,
          "'transform' must be None or {'name', 'params'}")  # fmt: skip
    seen = ckpt.get("seen_transformed")
    _need(isinstance(seen, list) and all(_is_int(c) and 0 <= c < arch["num_classes"]
          for c in seen), where, "'seen_transformed' must list class indices")  # fmt: skip
    _need(_is_int(ckpt.get("seed")), where, "'seed' must be an int")
    for key in ("metrics", "training", "extra"):
        _need(isinstance(ckpt.get(key), dict), where, f"'{key}' must be a dict")


def standardization(ckpt: Mapping) -> str | tuple[list[float], list[float]]:
    """The ``standardize`` argument of ``invfast.core.transforms`` for this checkpoint."""
    value = ckpt["input"]["standardize"]
    if isinstance(value, str):
        return value
    return (list(value["mean"]), list(value["std"]))


def build_model(ckpt: Mapping) -> nn.Module:
    """The checkpoint's network with its weights, in eval mode, on the CPU."""
    arch = ckpt["arch"]
    model = models.build(
        arch["name"], arch["num_classes"], arch["in_channels"], arch["image_size"],
        **arch["kwargs"],
    )  # fmt: skip
    state = ckpt["state_dict"]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        problems = [
            f"{label} {names[:3]}"
            for label, names in (("missing", missing), ("unexpected", unexpected),
                                 ("wrong shape", wrong))
            if names
        ]  # fmt: skip
        raise ValueError(
            f"checkpoint weights do not fit architecture {arch['name']!r}: {'; '.join(problems)}"
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


def standardizer(standardize: str | tuple) -> Callable[[torch.Tensor], torch.Tensor]:
    """Raw images (uint8, or float in [0, 255]) → standardized float32 model input.

    The images are clamped to [0, 255] and standardized by the fused identity transform,
    the arithmetic that training, analysis and every evaluation use:
    (x − float32(mean)) · float32(1 / std) for fixed per-channel statistics ``(mean,
    std)``, tf's per-image rule for ``"per-image"`` (docs/transforms.md).
    """
    if not isinstance(standardize, str):
        mean, std = standardize
        if len(mean) != len(std) or not len(mean) or not all(s > 0 for s in std):
            raise ValueError(
                "standardize: mean and std must have one entry per channel and std > 0, "
                f"got {standardize!r}"
            )
        standardize = ([float(m) for m in mean], [float(s) for s in std])
    identity = transforms.get("identity")
    return lambda x: identity(x, standardize=standardize)


def preprocess(ckpt: Mapping) -> Callable[[torch.Tensor], torch.Tensor]:
    """Raw images → this checkpoint's model input (:func:`standardizer` of its recorded
    standardization)."""
    return standardizer(standardization(ckpt))


def data_recipe(ckpt: Mapping) -> tuple[str, dict] | None:
    """(spec, options) that ``invfast.core.data.load`` takes to rebuild the checkpoint's
    dataset as the model saw it, or None when the checkpoint records none.

    Checkpoints of P3 runs written before the protocol became a data option record it in
    ``extra["p3"]``; it is translated to ``pad_to`` / ``leave_out`` here.
    """
    recorded = ckpt.get("data")
    if recorded is None:
        return None
    options = dict(recorded["options"])
    legacy = ckpt.get("extra", {}).get("p3")
    if isinstance(legacy, Mapping) and legacy.get("protocol") and "pad_to" not in options:
        options["pad_to"] = int(ckpt["arch"]["image_size"])
        if legacy.get("left_out"):
            options["leave_out"] = [int(c) for c in legacy["left_out"]]
    return recorded["spec"], options


def evaluation_data(
    ckpt: Mapping,
    *,
    spec: str | None = None,
    overrides: Mapping | None = None,
    split: str = "test",
    cache_dir: str | None = None,
) -> tuple[data_.Dataset, data_.ImageSet]:
    """(dataset, images of ``split``) to evaluate the checkpoint on.

    By default the checkpoint's own dataset (its recorded recipe); ``spec`` names another
    source, brought to the model's input: the same image size, channels, padding and
    left-out classes. ``overrides`` replace recipe options (``None`` values are ignored).
    Refused when the images do not fit the model or hold more classes than it has.
    """
    recipe = data_recipe(ckpt)
    arch = ckpt["arch"]
    if spec is None and recipe is None:
        raise ValueError("the checkpoint does not record its dataset; pass --data SPEC")
    if spec is None or (recipe is not None and spec == recipe[0]):
        spec, options = recipe
    else:
        options = {"channels": arch["in_channels"]}
        if recipe is not None:
            kept = ("pad_to", "leave_out", "image_size")
            options.update({k: v for k, v in recipe[1].items() if k in kept})
        if "pad_to" not in options:
            options["image_size"] = arch["image_size"]
    options.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if not spec.startswith("synthetic"):
        options = {k: v for k, v in options.items() if not k.startswith("synthetic_")}
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    dataset = data_.load(spec, cache_dir=cache_dir, **options)
    images = getattr(dataset, split)
    if (dataset.channels, dataset.image_size) != (arch["in_channels"], arch["image_size"]):
        raise ValueError(
            f"data {spec}: {dataset.channels}×{dataset.image_size}×{dataset.image_size} "
            f"images, but the classifier takes {arch['in_channels']}×{arch['image_size']}×"
            f"{arch['image_size']} (set --channels / --image-size)"
        )
    if dataset.num_classes > arch["num_classes"]:
        raise ValueError(
            f"data {spec}: {dataset.num_classes} classes, but the classifier has "
            f"{arch['num_classes']}"
        )
    if len(images) == 0:
        raise ValueError(f"data {spec}: the {split} split is empty")
    return dataset, images


@dataclass
class Evaluation:
    """A checkpoint opened for evaluation: the model on its device, the images, and the
    map from raw images to the model's input."""

    path: Path
    ckpt: dict
    model: nn.Module
    device: torch.device
    dataset: data_.Dataset
    images: data_.ImageSet
    preprocess: Callable[[torch.Tensor], torch.Tensor]


def open_evaluation(
    path: str | os.PathLike,
    *,
    device: str | torch.device = "auto",
    local_rank: int = 0,
    spec: str | None = None,
    overrides: Mapping | None = None,
    split: str = "test",
    cache_dir: str | None = None,
) -> Evaluation:
    """Load ``path``, build its model on ``device`` and its evaluation images: the one
    path every command takes from a checkpoint to evaluation data and model input."""
    ckpt = load(path)
    dataset, images = evaluation_data(
        ckpt, spec=spec, overrides=overrides, split=split, cache_dir=cache_dir
    )
    dev = resolve_device(device, local_rank)
    model = build_model(ckpt).to(dev)
    return Evaluation(Path(path), ckpt, model, dev, dataset, images, preprocess(ckpt))


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Evaluation",
    "build_model",
    "data_recipe",
    "evaluation_data",
    "load",
    "open_evaluation",
    "preprocess",
    "save",
    "standardization",
    "standardizer",
]

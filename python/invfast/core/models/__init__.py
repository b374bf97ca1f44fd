"""Model registry: every network of the three papers, built by name.

``build(arch, num_classes, in_channels, image_size, **kw)`` returns a plain ``nn.Module``
that maps standardized float32 images [B, C, H, W] to logits [B, num_classes]. Every model
has ``analysis_layers()``: the names of the modules whose outputs are non-negative (ReLU)
activations, in forward order, penultimate layer last; ``model.get_submodule(name)`` gives
the module to hook.

A model module registers its architectures with :func:`register`; the modules listed in
``_MODEL_MODULES`` are imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

Builder = Callable[..., nn.Module]
OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class ModelSpec:
    """One registered architecture.

    ``recipe`` holds the documented training defaults of the architecture (keys of
    ``invfast.neurons.training.TrainConfig``: optimizer, lr, momentum, weight_decay, batch_size,
    epochs, schedule); ``invfast train`` uses them unless a flag overrides one.
    """

    name: str
    builder: Builder
    description: str
    min_image_size: int
    recipe: dict = field(default_factory=dict)
    kwargs: tuple[str, ...] = ()


_REGISTRY: dict[str, ModelSpec] = {}

# Modules of invfast.core.models that call register() when imported, in listing order.
_MODEL_MODULES = (
    "alexnet",
    "resnet",
    "googlenet",
    "mlp",
    "convnet",
    "weight_tied",  # P3's weight-tied group-invariant "mlp5-wt"
)
_loaded = False


def register(
    name: str,
    builder: Builder,
    *,
    description: str,
    min_image_size: int = 1,
    recipe: dict | None = None,
    kwargs: tuple[str, ...] = (),
) -> None:
    """Add an architecture: ``builder(num_classes, in_channels, image_size, **kw)``.

    ``kwargs`` names the extra keyword arguments the builder accepts (stored in checkpoints).
    """
    if name in _REGISTRY and _REGISTRY[name].builder is not builder:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = ModelSpec(name, builder, description, min_image_size, recipe or {}, kwargs)


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _MODEL_MODULES:
            importlib.import_module(f"invfast.core.models.{module}")


def names() -> list[str]:
    """Every registered architecture name."""
    _load()
    return list(_REGISTRY)


def spec(arch: str) -> ModelSpec:
    """The registry entry of ``arch``; ValueError listing the valid names otherwise."""
    _load()
    if not isinstance(arch, str) or arch not in _REGISTRY:
        raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(_REGISTRY)}")
    return _REGISTRY[arch]


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def build(arch: str, num_classes: int, in_channels: int, image_size: int, **kw) -> nn.Module:
    """Build ``arch`` for square ``image_size`` inputs with ``in_channels`` channels."""
    entry = spec(arch)
    _positive_int("num_classes", num_classes)
    _positive_int("in_channels", in_channels)
    _positive_int("image_size", image_size)
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if image_size < entry.min_image_size:
        raise ValueError(
            f"{arch} needs image_size >= {entry.min_image_size}, got {image_size} "
            "(resize the data, e.g. --image-size)"
        )
    unknown = sorted(set(kw) - set(entry.kwargs))
    if unknown:
        valid = ", ".join(entry.kwargs) or "none"
        raise ValueError(f"{arch} got unknown argument(s) {unknown}; valid: {valid}")
    return entry.builder(num_classes, in_channels, image_size, **kw)


def describe() -> list[ModelSpec]:
    """Every registry entry, in registration order."""
    _load()
    return list(_REGISTRY.values())


__all__ = ["ModelSpec", "build", "describe", "names", "register", "spec"]


def optimizer(
    name: str, params, *, lr: float, momentum: float = 0.9, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """The optimizer of a training recipe: ``sgd`` (with momentum), ``adam`` or ``adamw``."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")

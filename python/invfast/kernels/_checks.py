"""Argument checks run before any pointer crosses into C++ or CUDA.

Each failure is a one-line ``ValueError``/``TypeError`` naming the op, the argument and
what was expected. Inputs that are read only are made contiguous (a copy when needed);
outputs and accumulators, written in place, must already be contiguous.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

ACTIVATION_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _names(dtypes: Iterable[torch.dtype]) -> str:
    return ", ".join(str(d).removeprefix("torch.") for d in dtypes)


def tensor(op: str, name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def dtype(op: str, name: str, t: torch.Tensor, allowed: Iterable[torch.dtype]) -> None:
    allowed = tuple(allowed)
    if t.dtype not in allowed:
        raise TypeError(f"{op}: {name} must have dtype {_names(allowed)}, got {t.dtype}")


def min_ndim(op: str, name: str, t: torch.Tensor, ndim: int, layout: str) -> None:
    if t.dim() < ndim:
        raise ValueError(f"{op}: {name} must be {layout}, got shape {tuple(t.shape)}")


def same_device(op: str, name: str, t: torch.Tensor, device: torch.device) -> None:
    if t.device != device:
        raise ValueError(f"{op}: {name} is on {t.device}, expected {device} like the input")


def same_shape(op: str, name: str, t: torch.Tensor, shape: torch.Size, other: str) -> None:
    if t.shape != shape:
        raise ValueError(
            f"{op}: {name} has shape {tuple(t.shape)}, expected {tuple(shape)} like {other}"
        )


def writable(op: str, name: str, t: torch.Tensor, dtype_: torch.dtype, numel: int) -> None:
    """An output written in place: exact dtype, contiguous, ``numel`` elements."""
    if t.dtype != dtype_:
        raise TypeError(f"{op}: {name} must have dtype {_names([dtype_])}, got {t.dtype}")
    if t.numel() != numel:
        raise ValueError(f"{op}: {name} must have {numel} elements, got shape {tuple(t.shape)}")
    if not t.is_contiguous():
        raise ValueError(f"{op}: {name} must be contiguous (it is written in place)")
    if t.requires_grad:
        raise ValueError(f"{op}: {name} must not require grad (it is written in place)")


def readable(t: torch.Tensor) -> torch.Tensor:
    """A detached contiguous view (or copy) of an input that is only read."""
    return t.detach().contiguous()

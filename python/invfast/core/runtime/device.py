"""Device choice: one resolver for every command and library function."""

from __future__ import annotations

import torch
from torch import nn

DEVICE_CHOICES = "auto (CUDA when present, default) | cpu | cuda | cuda:N"


def resolve_device(name: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` (device ``local_rank``) or ``cuda:N``.

    ValueError, naming what is available, when the device does not exist here.
    """
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {name}: no CUDA GPU is available (torch sees none); use --device cpu"
            )
        try:
            index = int(name.split(":")[1]) if ":" in name else local_rank
        except ValueError:
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
        if not 0 <= index < torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")

"""A tiny untrained checkpoint for the analysis tests (no training: weights from a seed)."""

from __future__ import annotations

from pathlib import Path

import torch

from invfast.core import checkpoint, models

DATA_OPTIONS = {"image_size": 16, "synthetic_classes": 4, "synthetic_per_class": 12}
SEEN = [0, 2]


def tiny_checkpoint(path: Path, *, arch_kwargs: dict | None = None, seed: int = 0) -> Path:
    kwargs = arch_kwargs or {"width": 2, "hidden": 8}
    torch.manual_seed(seed)
    model = models.build("convnet-small", 4, 3, 16, **kwargs)
    # Positive biases keep most units active, so I_k is defined for many neurons.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.uniform_(0.0, 0.3)
    return checkpoint.save(
        path, arch="convnet-small", state_dict=model.state_dict(), num_classes=4,
        in_channels=3, image_size=16, arch_kwargs=kwargs,
        data={"spec": "synthetic", "options": dict(DATA_OPTIONS)},
        transform={"name": "blur", "params": {"sigma": 1.5}}, seen_transformed=SEEN, seed=3,
    )  # fmt: skip

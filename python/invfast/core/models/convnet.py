"""``convnet-small``: a small fast CNN for CPU runs, tests and ``invfast demo``.

Three 3×3 conv + ReLU + 2×2 max-pool stages (widths w, 2w, 4w), an adaptive average pool
to 4×4, one hidden FC layer + ReLU (the penultimate layer) and the classifier.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from invfast.core.models import register


class ConvNetSmall(nn.Module):
    def __init__(
        self, num_classes: int, in_channels: int = 3, width: int = 16, hidden: int = 128
    ) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(in_channels, w, 3, padding=1),
                relu1=nn.ReLU(),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Conv2d(w, 2 * w, 3, padding=1),
                relu2=nn.ReLU(),
                pool2=nn.MaxPool2d(2),
                conv3=nn.Conv2d(2 * w, 4 * w, 3, padding=1),
                relu3=nn.ReLU(),
                pool3=nn.AdaptiveMaxPool2d((4, 4)),
            )
        )
        self.classifier = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                fc4=nn.Linear(4 * w * 16, hidden),
                relu4=nn.ReLU(),
                fc5=nn.Linear(hidden, num_classes),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def analysis_layers(self) -> list[str]:
        return ["features.relu1", "features.relu2", "features.relu3", "classifier.relu4"]


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"convnet-small: {name} must be a positive integer, got {value!r}")
    return value


def build_convnet_small(
    num_classes: int, in_channels: int, image_size: int, width: int = 16, hidden: int = 128
) -> nn.Module:
    del image_size  # adaptive pooling: any size >= 16
    return ConvNetSmall(
        num_classes,
        in_channels,
        width=_positive("width", width),
        hidden=_positive("hidden", hidden),
    )


register(
    "convnet-small",
    build_convnet_small,
    description="small fast CNN (3 conv + 1 hidden FC) for CPU runs and the demo",
    min_image_size=16,
    recipe=dict(optimizer="adam", lr=2e-3, weight_decay=0.0, batch_size=64, epochs=10),
    kwargs=("width", "hidden"),
)

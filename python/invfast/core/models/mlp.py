"""``mlp5``: P3's five-layer perceptron (ReLU, hidden width 128; about 230k parameters on
36×36 inputs, docs/p3.md)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from invfast.core.models import register


class MLP5(nn.Module):
    def __init__(self, num_inputs: int, num_classes: int, hidden: int = 128) -> None:
        super().__init__()
        widths = [num_inputs, hidden, hidden, hidden, hidden]
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        for i in range(1, 5):
            layers[f"fc{i}"] = nn.Linear(widths[i - 1], widths[i])
            layers[f"relu{i}"] = nn.ReLU()
        layers["fc5"] = nn.Linear(hidden, num_classes)
        self.layers = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def analysis_layers(self) -> list[str]:
        return [f"layers.relu{i}" for i in range(1, 5)]


def build_mlp5(num_classes: int, in_channels: int, image_size: int, hidden: int = 128) -> nn.Module:
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"mlp5: hidden must be a positive integer, got {hidden!r}")
    return MLP5(in_channels * image_size * image_size, num_classes, hidden=hidden)


register(
    "mlp5",
    build_mlp5,
    description="P3's 5-layer MLP, ReLU, hidden 128",
    min_image_size=1,
    # P3's recipe: Adam, lr 8e-4, batch 512, model selection by validation accuracy.
    recipe=dict(optimizer="adam", lr=8e-4, weight_decay=0.0, batch_size=512, epochs=30),
    kwargs=("hidden",),
)

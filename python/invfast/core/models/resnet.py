"""``resnet18``: ResNet-18 (He et al. 2016) with torchvision's parameter names.

A torchvision ``resnet18`` state dict loads with ``strict=True`` (for ``in_channels=3``).
The only layout difference is invisible to state dicts: each residual block has two
distinct ReLU modules (``relu1`` after bn1, ``relu2`` after the addition) instead of one
shared module, so that a forward hook sees every activation exactly once.
"""

from __future__ import annotations

import torch
from torch import nn

from invfast.core.models import register


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


class ResNet18(nn.Module):
    def __init__(
        self, num_classes: int, in_channels: int = 3, zero_init_residual: bool = False
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widths = (64, 128, 256, 512)
        inplanes = 64
        for i, planes in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            layer = nn.Sequential(BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes))
            self.add_module(f"layer{i}", layer)
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        # torchvision's initialization
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def analysis_layers(self) -> list[str]:
        names = ["relu"]
        for i in range(1, 5):
            for block in (0, 1):
                names += [f"layer{i}.{block}.relu1", f"layer{i}.{block}.relu2"]
        # the pooled 512-d features (mean of the last ReLU outputs) are the penultimate layer
        return [*names, "avgpool"]


def build_resnet18(
    num_classes: int, in_channels: int, image_size: int, zero_init_residual: bool = False
) -> nn.Module:
    del image_size  # global average pooling: any size
    return ResNet18(num_classes, in_channels, zero_init_residual=zero_init_residual)


register(
    "resnet18",
    build_resnet18,
    description="ResNet-18, torchvision parameter names",
    min_image_size=32,
    recipe=dict(
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        weight_decay=1e-4,
        batch_size=128,
        epochs=30,
        schedule="cosine",
    ),
    kwargs=("zero_init_residual",),
)

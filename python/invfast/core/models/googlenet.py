"""``googlenet``: GoogLeNet / Inception v1 (Szegedy et al. 2015) with torchvision's names.

A torchvision ``googlenet`` state dict loads with ``strict=True`` (``in_channels=3``;
``aux_logits=True`` for a state dict that has the auxiliary heads). As in torchvision,
the "5×5" branch uses a 3×3 convolution (pytorch/vision#906), so pretrained weights fit.
Each ``BasicConv2d`` has its own ``nn.ReLU`` module (torchvision calls ``F.relu``), which
adds no parameters but lets hooks see every activation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from invfast.core.models import register


class BasicConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, **conv_args) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_args)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    def __init__(
        self,
        in_ch: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_ch, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_ch, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_ch, ch5x5red, kernel_size=1),
            BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_ch, pool_proj, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], 1)


class InceptionAux(nn.Module):
    def __init__(self, in_ch: int, num_classes: int) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_ch, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.adaptive_avg_pool2d(x, (4, 4)))
        return self.fc2(self.dropout(self.relu(self.fc1(torch.flatten(x, 1)))))


class GoogLeNet(nn.Module):
    """Inception v1. With ``aux_logits`` the two auxiliary classifiers run in training mode
    and their logits are left in ``last_aux_logits`` (the training loop adds 0.3 × their
    cross-entropy, as in the paper); ``forward`` always returns the main logits."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        aux_logits: bool = False,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.conv1 = BasicConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        self.aux1 = InceptionAux(512, num_classes) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)
        self.last_aux_logits: tuple[torch.Tensor, ...] = ()
        # torchvision's initialization: truncated normal (±2 std), std 0.01
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, mean=0.0, std=0.01, a=-0.02, b=0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux = []
        if self.aux1 is not None and self.training:
            aux.append(self.aux1(x))
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        if self.aux2 is not None and self.training:
            aux.append(self.aux2(x))
        self.last_aux_logits = tuple(aux)
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))

    def analysis_layers(self) -> list[str]:
        # Stem ReLUs, then each Inception block's output (the concatenation of its four
        # branches' ReLU outputs), then the pooled 1024-d features (penultimate layer).
        blocks = ["3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"]
        return [
            "conv1.relu", "conv2.relu", "conv3.relu",
            *[f"inception{b}" for b in blocks],
            "avgpool",
        ]  # fmt: skip


def build_googlenet(
    num_classes: int,
    in_channels: int,
    image_size: int,
    aux_logits: bool = False,
    dropout: float = 0.2,
) -> nn.Module:
    del image_size  # global average pooling: any size >= 32
    return GoogLeNet(num_classes, in_channels, aux_logits=aux_logits, dropout=dropout)


register(
    "googlenet",
    build_googlenet,
    description="GoogLeNet / Inception v1, torchvision parameter names, no auxiliary heads",
    min_image_size=32,
    recipe=dict(
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        weight_decay=2e-4,
        batch_size=64,
        epochs=30,
        schedule="cosine",
    ),
    kwargs=("aux_logits", "dropout"),
)

"""``alexnet-p1``: P1's modified AlexNet (Appendix B).

Five convolutional layers and two fully connected layers of 4096 units before the
classifier, as AlexNet (Krizhevsky et al. 2012: 96-256-384-384-256 filters, ReLU, local
response normalization after conv1 and conv2, dropout 0.5 on the hidden FC layers, the
paper's initialization), except that the max-pooling after conv1 and conv2 is removed to
keep resolution (P1 Appendix B). An adaptive average pooling to 6×6 before the FC layers
makes the network work at any input size of 64 px or more.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from invfast.core.models import register


class AlexNetP1(nn.Module):
    def __init__(
        self, num_classes: int, in_channels: int = 3, dropout: float = 0.5, init: str = "alexnet"
    ) -> None:
        super().__init__()
        # torch's LocalResponseNorm divides alpha by the window size; AlexNet's k=2,
        # n=5, alpha=1e-4 (applied to the plain sum), beta=0.75 is alpha=5e-4 here.
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(in_channels, 96, kernel_size=11, stride=4, padding=2),
                relu1=nn.ReLU(),
                lrn1=nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0),
                conv2=nn.Conv2d(96, 256, kernel_size=5, padding=2),
                relu2=nn.ReLU(),
                lrn2=nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0),
                conv3=nn.Conv2d(256, 384, kernel_size=3, padding=1),
                relu3=nn.ReLU(),
                conv4=nn.Conv2d(384, 384, kernel_size=3, padding=1),
                relu4=nn.ReLU(),
                conv5=nn.Conv2d(384, 256, kernel_size=3, padding=1),
                relu5=nn.ReLU(),
                pool5=nn.MaxPool2d(kernel_size=3, stride=2),
            )
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            OrderedDict(
                fc6=nn.Linear(256 * 6 * 6, 4096),
                relu6=nn.ReLU(),
                drop6=nn.Dropout(dropout),
                fc7=nn.Linear(4096, 4096),
                relu7=nn.ReLU(),
                drop7=nn.Dropout(dropout),
                fc8=nn.Linear(4096, num_classes),
            )
        )
        if init == "alexnet":
            self._alexnet_init()
        elif init != "default":
            raise ValueError(f"alexnet-p1: init must be 'alexnet' or 'default', got {init!r}")

    def _alexnet_init(self) -> None:
        # Krizhevsky et al. 2012 §5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5
        # and the hidden FC layers (so ReLUs start in their active range), 0 elsewhere.
        ones = {"features.conv2", "features.conv4", "features.conv5"}
        ones |= {"classifier.fc6", "classifier.fc7"}
        for name, module in self.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(module.weight, mean=0.0, std=0.01)
                nn.init.constant_(module.bias, 1.0 if name in ones else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))

    def analysis_layers(self) -> list[str]:
        return [f"features.relu{i}" for i in range(1, 6)] + ["classifier.relu6", "classifier.relu7"]


def build_alexnet_p1(
    num_classes: int, in_channels: int, image_size: int, dropout: float = 0.5, init: str = "alexnet"
) -> nn.Module:
    del image_size  # adaptive pooling: any size >= 64 px
    return AlexNetP1(num_classes, in_channels, dropout=dropout, init=init)


register(
    "alexnet-p1",
    build_alexnet_p1,
    description="P1's AlexNet: 5 conv + 2 FC-4096, no max-pool after conv1/conv2, LRN, dropout",
    min_image_size=64,
    # P1 Appendix B: SGD, momentum 0.9, lr 1e-4, weight decay 5e-4, batch 32, <= 45 epochs.
    recipe=dict(
        optimizer="sgd",
        lr=1e-4,
        momentum=0.9,
        weight_decay=5e-4,
        batch_size=32,
        epochs=45,
        schedule="constant",
    ),
    kwargs=("dropout", "init"),
)

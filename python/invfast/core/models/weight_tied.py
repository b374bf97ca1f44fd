"""P3's weight-tied group-invariant 5-layer MLP (docs/p3.md, P3 §4.1 "Models").

The first layer is shared by every element of the group orbit — it sees ``g x`` for
every g, applies the same weights and ReLU, and the results are averaged (or maxed) over
the group — and the remaining four layers act on that pooled, already invariant code:

    h1(x) = pool_{g ∈ G} ReLU(W1 · vec(g x) + b1)
    f(x)  = W5 ReLU(W4 ReLU(W3 ReLU(W2 h1 + b2) + b3) + b4) + b5

The orbit of ``g' x`` is the orbit of ``x`` in another order and pooling ignores the
order, so ``f(g' x) = f(x)`` exactly (up to the float rounding of the pooled sum):
invariance holds by construction, for any weights, trained or not.
"""

from __future__ import annotations

import torch
from torch import nn

from invfast.core import groups
from invfast.core.models import register

__all__ = ["GroupPooledLinear", "MLP5WeightTied"]


class GroupPooledLinear(nn.Module):
    """``pool_g ReLU(W vec(g x) + b)``: one linear layer tied over the group orbit.

    Its output (non-negative, [B, out_features]) is the first post-ReLU representation.
    """

    def __init__(self, in_features: int, out_features: int, group: str, pool: str = "mean"):
        super().__init__()
        if pool not in ("mean", "max"):
            raise ValueError(f"pool must be 'mean' or 'max', got {pool!r}")
        self.group_name = groups.get(group).name
        self.pool = pool
        self.linear = nn.Linear(in_features, out_features)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        group = groups.get(self.group_name)
        orbit = group.orbit(x)  # [|G|, B, C, H, W]
        z = self.relu(self.linear(orbit.flatten(2)))  # [|G|, B, out]
        return z.mean(dim=0) if self.pool == "mean" else z.amax(dim=0)

    def extra_repr(self) -> str:
        return f"group={self.group_name}, pool={self.pool}"


class MLP5WeightTied(nn.Module):
    """5 linear layers with ReLU, hidden width 128, first layer tied over ``group``.

    Input ``[B, in_channels, image_size, image_size]`` float (standardized images);
    output ``[B, num_classes]`` logits, exactly invariant to ``group`` (``"R4"``/``"T3"``).
    About 217k parameters for 1×36×36 inputs and 10 classes, as P3's ~230k MLP.
    ``analysis_layers()`` names the modules whose outputs are the post-ReLU codes.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        image_size: int = 36,
        *,
        group: str = "R4",
        hidden: int = 128,
        pool: str = "mean",
    ):
        super().__init__()
        for name, value in (
            ("num_classes", num_classes),
            ("in_channels", in_channels),
            ("image_size", image_size),
            ("hidden", hidden),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MLP5WeightTied: {name} must be a positive int, got {value!r}")
        groups.get(group).check_image_shape(image_size, image_size)
        self.group_name = groups.get(group).name
        self.input_shape = (in_channels, image_size, image_size)
        features = in_channels * image_size * image_size
        self.layer1 = GroupPooledLinear(features, hidden, self.group_name, pool)
        self.fc2, self.act2 = nn.Linear(hidden, hidden), nn.ReLU()
        self.fc3, self.act3 = nn.Linear(hidden, hidden), nn.ReLU()
        self.fc4, self.act4 = nn.Linear(hidden, hidden), nn.ReLU()
        self.fc5 = nn.Linear(hidden, num_classes)

    @property
    def invariant_group(self) -> str:
        """The group the outputs are exactly invariant to."""
        return self.group_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"MLP5WeightTied: input must be [B, {', '.join(map(str, self.input_shape))}], "
                f"got {tuple(x.shape)}"
            )
        h = self.layer1(x)
        h = self.act2(self.fc2(h))
        h = self.act3(self.fc3(h))
        h = self.act4(self.fc4(h))
        return self.fc5(h)

    def analysis_layers(self) -> list[str]:
        """Modules whose outputs are post-ReLU activations, in forward order, penultimate last."""
        return ["layer1", "act2", "act3", "act4"]


def build_mlp5_wt(
    num_classes: int,
    in_channels: int,
    image_size: int,
    group: str = "R4",
    hidden: int = 128,
    pool: str = "mean",
) -> MLP5WeightTied:
    """Registry builder of ``mlp5-wt`` (checkpoints store group, hidden and pool)."""
    return MLP5WeightTied(
        num_classes, in_channels, image_size, group=group, hidden=hidden, pool=pool
    )


register(
    "mlp5-wt",
    build_mlp5_wt,
    description="P3's 5-layer MLP, first layer weight-tied over a group (exactly invariant)",
    min_image_size=1,
    # P3's recipe, as mlp5: Adam, lr 8e-4, batch 512, model selection by validation accuracy.
    recipe=dict(optimizer="adam", lr=8e-4, weight_decay=0.0, batch_size=512, epochs=30),
    kwargs=("group", "hidden", "pool"),
)

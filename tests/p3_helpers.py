"""Small models and data for the P3 tests (metrics, regularization, drift)."""

from __future__ import annotations

import torch
from torch import nn


class TinyMLP(nn.Module):
    """Flatten → Linear → activation → Linear → activation → Linear, any input shape."""

    def __init__(self, shape, classes=5, hidden=16, activation="relu", dtype=torch.float32, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        features = int(torch.Size(shape).numel())
        act = {"relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus}[activation]
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(features, hidden),
            act(),
            nn.Linear(hidden, hidden),
            act(),
            nn.Linear(hidden, classes),
        ).to(dtype)

    def forward(self, x):
        return self.net(x)


class LinearModel(nn.Module):
    """f(x) = W vec(x) + b: the Jacobian is W and integrated gradients are exact."""

    def __init__(self, shape, classes=4, dtype=torch.float64, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        features = int(torch.Size(shape).numel())
        self.weight = nn.Parameter(torch.randn(classes, features, generator=gen, dtype=dtype))
        self.bias = nn.Parameter(torch.randn(classes, generator=gen, dtype=dtype))

    def forward(self, x):
        return x.flatten(1) @ self.weight.t() + self.bias


def weight_tied(group, classes=6, size=6, seed=0, logit_scale=20.0):
    """An untrained MLP5WeightTied with logits scaled up so invariance errors are not
    trivially small."""
    from invfast.core.models.weight_tied import MLP5WeightTied

    torch.manual_seed(seed)
    model = MLP5WeightTied(classes, 1, size, group=group, hidden=32)
    with torch.no_grad():
        model.fc5.weight.mul_(logit_scale)
    return model


def images(n, size=6, channels=1, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, size, size, generator=gen, dtype=dtype)


def labels(n, classes=6, seed=0):
    gen = torch.Generator().manual_seed(seed + 1)
    return torch.randint(0, classes, (n,), generator=gen)


def chunks(x, y, sizes):
    """Split (x, y) into consecutive batches of the given sizes (the rest in one batch)."""
    out, start = [], 0
    for size in sizes:
        out.append((x[start : start + size], y[start : start + size]))
        start += size
    if start < x.shape[0]:
        out.append((x[start:], y[start:]))
    return out

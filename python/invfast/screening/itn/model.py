"""The Invariant Transformer Net (P2 §3.4; docs/p2-screening-itn.md): the spatial and colour
transformers, their standardization and their losses. The method is described in
:mod:`invfast.screening.itn`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from invfast.kernels.reference.transforms import standardize_images

_OP = "itn"
INITS = ("random", "identity")
BRANCH_MAGNITUDE = "magnitude"
BRANCH_CLASSIFICATION = "classification"
FORMAT = "invfast-itn-transformers"
StandardizeFn = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- config
@dataclass
class ITNConfig:
    """Hyperparameters of one ITN run (defaults: P2 §3.4 and the ``invfast itn`` command)."""

    epochs: int = 20
    target_accuracy: float = 0.9
    color_weight: float = 5.0  # λ
    diversity_weight: float = 1.0  # μ
    hidden: int = 32
    unit_vectors: int = 16
    lr: float = 1e-3
    init: str = "random"
    seed: int = 0
    sweep_points: int = 11
    grid_points: int = 6

    def validate(self) -> ITNConfig:
        checks = [
            ("epochs", self.epochs >= 0, "a non-negative integer (0: measure the initial net)"),
            ("target_accuracy", 0.0 <= self.target_accuracy <= 1.0, "in [0, 1]"),
            ("color_weight", self.color_weight >= 0.0, "non-negative"),
            ("diversity_weight", self.diversity_weight >= 0.0, "non-negative"),
            ("hidden", self.hidden >= 1, "a positive integer"),
            ("unit_vectors", self.unit_vectors >= 1, "a positive integer"),
            ("lr", self.lr > 0.0, "positive"),
            ("init", self.init in INITS, f"one of {', '.join(INITS)}"),
            ("sweep_points", self.sweep_points >= 2, "at least 2"),
            ("grid_points", self.grid_points >= 2, "at least 2"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{_OP}: {name} must be {expected}, got {getattr(self, name)!r}")
        return self


# --------------------------------------------------------------------------- standardization
def per_image_standardize(x: torch.Tensor) -> torch.Tensor:
    """(x − mean) / max(std, 1/√N) per image, as tf.image.per_image_standardization.

    The same arithmetic as ``invfast.core.transforms`` (statistics in float64, then
    (x − float32(mean)) · float32(1 / adjusted std)), so that a classifier sees the values it
    was trained and evaluated on, bit for bit, and gradients flow through it."""
    return standardize_images(x, "per-image")


def make_standardizer(
    spec: str | tuple[Sequence[float], Sequence[float]],
) -> StandardizeFn:
    """Differentiable standardization of float images in [0, 255]: ``"per-image"``,
    ``"none"``, or ``(mean, std)`` per channel in pixel units — the ``standardize`` argument
    of ``invfast.core.transforms`` and ``invfast.core.checkpoint.standardization(ckpt)``,
    computed with the same formulas."""
    if spec == "per-image":
        return per_image_standardize
    if spec == "none":
        return lambda x: x
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        mean = torch.as_tensor(spec[0], dtype=torch.float32).flatten()
        std = torch.as_tensor(spec[1], dtype=torch.float32).flatten()
        if mean.numel() == 0 or std.numel() == 0 or not bool((std > 0).all()):
            raise ValueError(f"{_OP}: standardize std must be positive, got {spec[1]}")

        def standardize(x: torch.Tensor) -> torch.Tensor:
            c = x.shape[1]
            if mean.numel() not in (1, c) or std.numel() not in (1, c):
                raise ValueError(
                    f"{_OP}: standardize needs 1 or {c} mean/std values for {c} channels, "
                    f"got {mean.numel()} and {std.numel()}"
                )
            return standardize_images(x, (mean.expand(c), std.expand(c)))

        return standardize
    raise ValueError(f"{_OP}: standardize must be 'per-image', 'none' or (mean, std), got {spec!r}")


# --------------------------------------------------------------------------- transformers
def _init_linear(layer: nn.Linear, generator: torch.Generator, scale: float) -> None:
    bound = scale / math.sqrt(layer.in_features)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(layer.weight.shape, generator=generator) * 2 - 1)
        layer.bias.copy_(torch.rand(layer.bias.shape, generator=generator) * 2 - 1)
        layer.weight.mul_(bound)
        layer.bias.mul_(bound)


class _ControlMLP(nn.Module):
    """c [B] → matrix [B, rows, cols] = [I | 0] + W₂ relu(W₁ c + b₁) + b₂."""

    def __init__(self, rows: int, cols: int, hidden: int, init: str, generator: torch.Generator):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"{_OP}: init must be one of {', '.join(INITS)}, got {init!r}")
        self.rows, self.cols = rows, cols
        self.hidden = nn.Linear(1, hidden)
        self.out = nn.Linear(hidden, rows * cols)
        _init_linear(self.hidden, generator, 1.0)
        _init_linear(self.out, generator, 0.1)
        if init == "identity":
            with torch.no_grad():
                self.out.weight.zero_()
                self.out.bias.zero_()
        self.register_buffer("identity", torch.eye(rows, cols), persistent=False)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        if c.dim() != 1:
            raise ValueError(
                f"{_OP}: control parameters must be a [B] tensor, got {tuple(c.shape)}"
            )
        delta = self.out(torch.relu(self.hidden(c[:, None].to(self.identity.dtype))))
        return self.identity + delta.view(-1, self.rows, self.cols)

    def extended(self, c: torch.Tensor) -> torch.Tensor:
        """The square extension [M ; 0 … 0 1] (P2 §3.4)."""
        return extend(self(c))


class SpatialTransformer(_ControlMLP):
    """θ(c_s): 2×3 affine matrix in ``affine_grid`` convention."""

    def __init__(self, hidden: int = 32, init: str = "random", generator=None):
        super().__init__(2, 3, hidden, init, generator or torch.Generator().manual_seed(0))


class ColorTransformer(_ControlMLP):
    """K(c_c): C×(C+1) affine matrix on homogeneous colour (3×4 for RGB)."""

    def __init__(self, channels: int = 3, hidden: int = 32, init: str = "random", generator=None):
        super().__init__(
            channels, channels + 1, hidden, init, generator or torch.Generator().manual_seed(0)
        )


def extend(matrix: torch.Tensor) -> torch.Tensor:
    """[B, r, r+1] → [B, r+1, r+1] with last row (0, …, 0, 1)."""
    cols = matrix.shape[-1]
    last = torch.zeros(cols, dtype=matrix.dtype, device=matrix.device)
    last[-1] = 1
    return torch.cat([matrix, last.expand(*matrix.shape[:-2], 1, cols)], dim=-2)


def warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Bilinear, zero-filled affine warp; rows with θ exactly [I | 0] are returned unchanged."""
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    sampled = F.grid_sample(
        images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    identity = torch.eye(2, 3, dtype=theta.dtype, device=theta.device)
    exact = (theta == identity).flatten(1).all(dim=1)
    if not bool(exact.any()):
        return sampled
    # Value x exactly (x + 0), gradient of the sampled path (for θ and for x).
    straight = images.detach() + (sampled - sampled.detach())
    return torch.where(exact[:, None, None, None], straight, sampled)


def recolor(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """clamp(G x + 255 b, 0, 255) per pixel, K = [G | b] of shape [B, C, C+1]."""
    gain, bias = matrix[:, :, :-1], matrix[:, :, -1]
    mixed = torch.einsum("bkc,bchw->bkhw", gain, images) + 255.0 * bias[:, :, None, None]
    return mixed.clamp(0.0, 255.0)


class InvariantTransformerNet(nn.Module):
    """The trainable part of the ITN: the spatial and the colour transformer (module doc)."""

    def __init__(
        self,
        channels: int,
        *,
        hidden: int = 32,
        init: str = "random",
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if channels < 1:
            raise ValueError(f"{_OP}: channels must be a positive integer, got {channels}")
        generator = generator or torch.Generator().manual_seed(0)
        self.channels, self.hidden_width, self.init = channels, hidden, init
        self.spatial = SpatialTransformer(hidden, init, generator)
        self.color = ColorTransformer(channels, hidden, init, generator)

    def transform(
        self,
        images: torch.Tensor,
        c_s: torch.Tensor | None,
        c_c: torch.Tensor | None,
    ) -> torch.Tensor:
        """Images [B, C, H, W] in [0, 255] → transformed float images in [0, 255].

        ``None`` for a control parameter switches that transformer off (identity)."""
        x = images.float()
        if c_c is not None:
            x = recolor(x, self.color(c_c))
        if c_s is not None:
            x = warp(x, self.spatial(c_s))
        return x


# --------------------------------------------------------------------------- losses
def random_unit_vectors(count: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` vectors uniform on the unit sphere of R^dim (normalized Gaussians)."""
    v = torch.randn(count, dim, generator=generator, dtype=torch.float64)
    return (v / v.norm(dim=1, keepdim=True)).float()


def displacement(
    extended: torch.Tensor, vectors: torch.Tensor, subgradient: torch.Tensor
) -> torch.Tensor:
    """m_i = mean_j ‖Ā_i v_j − v_j‖ → [B]; at exactly zero displacement the gradient is u_j."""
    eye = torch.eye(extended.shape[-1], dtype=extended.dtype, device=extended.device)
    d = torch.einsum("brc,jc->bjr", extended - eye, vectors)  # [B, n, dim]
    squared = (d * d).sum(dim=-1)
    zero = squared == 0
    norm = torch.where(zero, torch.ones_like(squared), squared).sqrt()
    value = torch.where(zero, (d * subgradient[None]).sum(dim=-1), norm)
    return value.mean(dim=1)


def transformer_loss(
    extended: torch.Tensor,
    c: torch.Tensor,
    vectors: torch.Tensor,
    subgradient: torch.Tensor,
    diversity_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """L_mag, L_div, L_T = L_mag + μ L_div and the mean displacement (module doc)."""
    m = displacement(extended, vectors, subgradient)
    magnitude = -m.mean()
    diversity = ((1.0 - c) * m).mean()
    return {
        "magnitude": magnitude,
        "diversity": diversity,
        "loss": magnitude + diversity_weight * diversity,
        "displacement": m.mean(),
    }


def choose_branch(batch_accuracy: float, target_accuracy: float) -> str:
    """P2 §3.4 switch: increase the magnitude when a ≥ a_target, else restore classification."""
    return BRANCH_MAGNITUDE if batch_accuracy >= target_accuracy else BRANCH_CLASSIFICATION

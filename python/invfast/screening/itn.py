r"""The Invariant Transformer Net (P2 §3.4 "Strategy 2", DESIGN.md §6).

A frozen classifier f sits behind a colour transformer and a spatial transformer whose
matrices are small MLPs of control parameters; training makes the transformations as large
as possible while f still classifies the transformed images at the target accuracy.

The formulas implemented (x ∈ [0, 255]^{C×H×W} an image, y its label, s the classifier's
standardization, B the batch size, i indexes the samples of a batch):

Control parameters: c_s,i and c_c,i ~ U[0, 1], independent, one pair per sample.

Transformers (P2 §3.4: "two fully connected layers with rectified linear activation"), hidden
width h, residual around the identity:
    θ(c_s) = [I_2 | 0] + W_2^s relu(W_1^s c_s + b_1^s) + b_2^s      reshaped 2×3
    K(c_c) = [I_C | 0] + W_2^c relu(W_1^c c_c + b_1^c) + b_2^c      reshaped C×(C+1)
With C = 3 channels K is P2's 3×4 colour matrix; a 1-channel image gets a 1×2 matrix
(contrast and brightness). ``init="identity"`` sets W_2 = 0 and b_2 = 0, so both matrices
are exactly the identity for every c; ``init="random"`` draws every layer like
``nn.Linear`` (U(±1/√fan_in)) with the last layer scaled by 0.1, close to the identity.

Transformed image, colour first so that the spatial zero fill stays black:
    K = [G | b]:  x'_p = clamp(G x_p + 255 b, 0, 255)                  every pixel p
    x̃ = grid_sample(x', affine_grid(θ)), bilinear, zero fill, align_corners=False
θ maps output coordinates to input coordinates in [-1, 1]² (Jaderberg et al. 2015). Rows
whose θ is exactly [I | 0] return x' bit for bit (grid_sample's identity resampling rounds
at ~1e-4) while keeping grid_sample's gradient.
    logits = f(s(x̃))

Extended matrices (P2 §3.4): Ā_s = [θ ; 0 0 1] ∈ R^{3×3}, Ā_c = [K ; 0 … 0 1] ∈ R^{(C+1)×(C+1)}.
Random unit vectors V = {v_1, …, v_n} uniform on the unit sphere of R^3 (resp. R^{C+1}),
drawn afresh each step (n = ``unit_vectors``). Displacement of sample i:
    m_i = (1/n) Σ_j ‖Ā(c_i) v_j − v_j‖_2
Magnitude term (DESIGN §6, "−mean ‖A v − v‖"):   L_mag = −(1/B) Σ_i m_i
Diversity term:                                   L_div = (1/B) Σ_i (1 − c_i) m_i
Transformer loss:  L_T = L_mag + μ L_div  (μ = ``diversity_weight``, default 1), which for
μ = 1 is L_T = −(1/B) Σ_i c_i m_i.
Per-batch switch (P2 §3.4), with batch accuracy a = (1/B) Σ_i [argmax logits_i = y_i]:
    L = L_S + λ L_C                  if a ≥ a_target   (increase the magnitude)
    L = (1/B) Σ_i −log softmax(logits_i)_{y_i}   otherwise (restore the classification)
λ = ``color_weight`` (P2: "to increase the influence of color transformations", default 5).
Only the transformers' weights are trained (Adam); f stays in eval mode and gets no gradients.

Our reading where P2's equations are lost in the text:
- the magnitude loss is the negative mean Euclidean displacement of the random unit vectors
  by the extended matrix ("the more often and the further the matrix projects one of the
  elements in V away from its original position, the more this loss decreases");
- "incorporating the parameters c to the loss, where c_i describes the i-th value of c" is
  read as weighting the displacement of sample i by its c_i: displacement is rewarded in
  proportion to c, so under the accuracy switch large c get large transformations and small
  c stay near the identity (P2 Fig. 19, "increasing magnitude for increasing c_s"). We write
  it as DESIGN's magnitude term plus the diversity term (1 − c_i) m_i, so μ = 0 gives the
  plain −mean ‖A v − v‖;
- ‖d‖ has no gradient at d = 0, so the identity would be a dead point of the magnitude
  step: at exactly d = 0 we take the subgradient u_j · d with u_j a random unit vector
  drawn with v_j (value 0, gradient u_j).

Magnitude reached (``measure_reach``): for c on a grid of [0, 1], the accuracy of f on the
evaluation data with only the spatial transformer at c_s = c (colour off), and with only the
colour transformer at c_c = c (spatial off). Each matrix is decomposed:
- spatial, θ = [A | t]: the map of image content in pixel coordinates (y down) is
  L = D A⁻¹ D⁻¹ with D = diag(W/2, H/2), its translation τ = −D A⁻¹ t. Polar decomposition
  L = R P (SVD L = U Σ Vᵀ, R = U Vᵀ): rotation = −atan2(R₁₀, R₀₀) in degrees, anticlockwise
  on screen; scale = the singular values Σ (image magnification, < 1 zooms out);
  translation = ‖τ‖ in pixels;
- colour, K = [G | b]: colour shift = 255 · max_k |b_k| (pixel units), gain = the singular
  values of G;
- both: the mean absolute pixel change |x̃ − x| over the evaluation images (pixel units), which
  unlike the matrix entries sees the clamp to [0, 255] and the zero fill.
The magnitude reached is the extreme of each quantity over the grid points whose accuracy is
at least the target (``None`` when no grid point keeps the target).
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from invfast._version import __version__
from invfast.kernels.reference.transforms import standardize_images
from invfast.screening.sensitivity import model_device, save_figure, unpack_batch, write_atomic

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

    The same arithmetic as ``invfast.transforms`` (statistics in float64, then
    (x − float32(mean)) · float32(1 / adjusted std)), so that a classifier sees the values it
    was trained and evaluated on, bit for bit, and gradients flow through it."""
    return standardize_images(x, "per-image")


def make_standardizer(
    spec: str | tuple[Sequence[float], Sequence[float]],
) -> StandardizeFn:
    """Differentiable standardization of float images in [0, 255]: ``"per-image"``,
    ``"none"``, or ``(mean, std)`` per channel in pixel units — the ``standardize`` argument
    of ``invfast.transforms`` and ``invfast.checkpoint.standardization(ckpt)``, computed with
    the same formulas."""
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


# --------------------------------------------------------------------------- training
class _Frozen:
    """Context: classifier in eval mode with no parameter gradients; restored on exit."""

    def __init__(self, classifier: nn.Module):
        self.classifier = classifier

    def __enter__(self) -> nn.Module:
        self.training = self.classifier.training
        self.flags = [(p, p.requires_grad) for p in self.classifier.parameters()]
        self.classifier.eval()
        for p, _ in self.flags:
            p.requires_grad_(False)
        return self.classifier

    def __exit__(self, *exc) -> None:
        for p, flag in self.flags:
            p.requires_grad_(flag)
        self.classifier.train(self.training)


class ITNTrainer:
    """Trains an ``InvariantTransformerNet`` in front of a frozen ``classifier``."""

    def __init__(
        self,
        classifier: nn.Module,
        *,
        channels: int,
        standardize_fn: StandardizeFn,
        config: ITNConfig | None = None,
        device: torch.device | str | None = None,
    ):
        if not isinstance(classifier, nn.Module):
            raise TypeError(f"{_OP}: classifier must be a torch.nn.Module")
        self.config = (config or ITNConfig()).validate()
        self.classifier = classifier
        self.standardize_fn = standardize_fn
        self.device = torch.device(device) if device is not None else model_device(classifier)
        self.generator = torch.Generator().manual_seed(int(self.config.seed))
        self.itn = InvariantTransformerNet(
            channels, hidden=self.config.hidden, init=self.config.init, generator=self.generator
        ).to(self.device)
        self.optimizer = torch.optim.Adam(self.itn.parameters(), lr=self.config.lr)
        self.history: list[dict] = []
        self.epoch = 0

    def _uniform(self, count: int) -> torch.Tensor:
        return torch.rand(count, generator=self.generator).to(self.device)

    def _vectors(self, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.config.unit_vectors
        v = random_unit_vectors(n, dim, self.generator).to(self.device)
        u = random_unit_vectors(n, dim, self.generator).to(self.device)
        return v, u

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> dict:
        """One optimisation step on one batch; returns the record added to ``history``."""
        cfg = self.config
        images, labels = images.to(self.device), labels.to(self.device).long()
        if images.dim() != 4 or images.shape[1] != self.itn.channels:
            raise ValueError(
                f"{_OP}: images must be [B, {self.itn.channels}, H, W], got {tuple(images.shape)}"
            )
        b = images.shape[0]
        c_s, c_c = self._uniform(b), self._uniform(b)
        v_s, u_s = self._vectors(3)
        v_c, u_c = self._vectors(self.itn.channels + 1)
        self.itn.train()
        with _Frozen(self.classifier) as classifier:
            theta, matrix = self.itn.spatial(c_s), self.itn.color(c_c)
            transformed = warp(recolor(images.float(), matrix), theta)
            logits = classifier(self.standardize_fn(transformed))
            correct = int((logits.argmax(dim=1) == labels).sum())
            accuracy = correct / b
            ce = F.cross_entropy(logits, labels)
            spatial = transformer_loss(extend(theta), c_s, v_s, u_s, cfg.diversity_weight)
            color = transformer_loss(extend(matrix), c_c, v_c, u_c, cfg.diversity_weight)
            branch = choose_branch(accuracy, cfg.target_accuracy)
            if branch == BRANCH_MAGNITUDE:
                loss = spatial["loss"] + cfg.color_weight * color["loss"]
            else:
                loss = ce
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        record = {
            "step": len(self.history),
            "epoch": self.epoch,
            "branch": branch,
            "batch_accuracy": accuracy,
            "loss": float(loss.detach()),
            "classification_loss": float(ce.detach()),
        }
        for name, terms in (("spatial", spatial), ("color", color)):
            for key, value in terms.items():
                record[f"{name}_{key}"] = float(value.detach())
        self.history.append(record)
        return record

    def fit(self, data: Iterable, epochs: int | None = None) -> list[dict]:
        """``epochs`` passes over ``data`` (re-iterable, yields (images, labels[, ids]))."""
        epochs = self.config.epochs if epochs is None else int(epochs)
        if epochs > 1 and iter(data) is data:
            raise ValueError(f"{_OP}: data must be re-iterable (a list or a DataLoader)")
        for _ in range(epochs):
            seen = 0
            for batch in data:
                images, labels, _ids = unpack_batch(batch, seen, _OP)
                seen += images.shape[0]
                if images.shape[0]:
                    self.step(images, labels)
            if seen == 0:
                raise ValueError(f"{_OP}: data yielded no images")
            self.epoch += 1
        return self.history

    def evaluate(
        self,
        data: Iterable,
        *,
        c_s: float | str | None = None,
        c_c: float | str | None = None,
        seed: int = 0,
    ) -> float:
        """Accuracy of the frozen classifier on transformed ``data``.

        Each control parameter is a float (the same c for every image), ``"random"`` (U[0, 1]
        per image, from a generator seeded with ``seed``) or ``None`` (transformer off)."""
        return self.evaluate_change(data, c_s=c_s, c_c=c_c, seed=seed)[0]

    @torch.no_grad()
    def evaluate_change(
        self,
        data: Iterable,
        *,
        c_s: float | str | None = None,
        c_c: float | str | None = None,
        seed: int = 0,
    ) -> tuple[float, float]:
        """(accuracy, mean |x̃ − x| over images and pixels in pixel units), see ``evaluate``."""
        generator = torch.Generator().manual_seed(int(seed))
        correct = count = 0
        change = 0.0
        self.itn.eval()
        with _Frozen(self.classifier) as classifier:
            for batch in data:
                images, labels, _ids = unpack_batch(batch, count, _OP)
                images, labels = images.to(self.device), labels.to(self.device)
                b = images.shape[0]
                controls = [
                    self._control(value, b, generator, name)
                    for value, name in ((c_s, "c_s"), (c_c, "c_c"))
                ]
                transformed = self.itn.transform(images, *controls)
                change += float((transformed - images.float()).abs().flatten(1).mean(1).sum())
                logits = classifier(self.standardize_fn(transformed))
                correct += int((logits.argmax(dim=1) == labels).sum())
                count += b
        if count == 0:
            raise ValueError(f"{_OP}: data yielded no images")
        return correct / count, change / count

    def _control(self, value, count: int, generator: torch.Generator, name: str):
        if value is None:
            return None
        if value == "random":
            return torch.rand(count, generator=generator).to(self.device)
        if isinstance(value, (int, float)) and 0.0 <= value <= 1.0:
            return torch.full((count,), float(value), device=self.device)
        raise ValueError(f"{_OP}: {name} must be a float in [0, 1], 'random' or None")

    @torch.no_grad()
    def matrices(self, c: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """θ(c) [n, 2, 3] and K(c) [n, C, C+1] on the CPU, for the given control values."""
        values = torch.as_tensor(list(c), dtype=torch.float32, device=self.device)
        self.itn.eval()
        return self.itn.spatial(values).cpu(), self.itn.color(values).cpu()


# --------------------------------------------------------------------------- decomposition
def decompose_spatial(theta: torch.Tensor, height: int, width: int) -> dict:
    """Rotation (degrees, anticlockwise on screen), scales and translation (pixels) of θ."""
    theta = torch.as_tensor(theta, dtype=torch.float64).reshape(2, 3)
    a, t = theta[:, :2], theta[:, 2]
    det = float(torch.linalg.det(a))
    if not math.isfinite(det) or abs(det) < 1e-12:
        return {
            "rotation_deg": None,
            "scale_max": None,
            "scale_min": None,
            "translation_px": None,
            "reflection": None,
        }
    d = torch.diag(torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64))
    a_inv = torch.linalg.inv(a)
    content = d @ a_inv @ torch.linalg.inv(d)
    shift = -(d @ a_inv @ t)
    u, sigma, vh = torch.linalg.svd(content)
    rotation = u @ vh
    reflection = bool(torch.linalg.det(rotation) < 0)
    if reflection:  # keep R a rotation; the reflection is reported apart
        u = u.clone()
        u[:, -1] = -u[:, -1]
        rotation = u @ vh
    angle = -math.degrees(math.atan2(float(rotation[1, 0]), float(rotation[0, 0])))
    return {
        "rotation_deg": angle + 0.0,
        "scale_max": float(sigma[0]),
        "scale_min": float(sigma[1]),
        "translation_px": float(shift.norm()),
        "reflection": reflection,
    }


def decompose_color(matrix: torch.Tensor) -> dict:
    """Colour shift 255·max|b| (pixel units) and the gains (singular values of G) of K."""
    matrix = torch.as_tensor(matrix, dtype=torch.float64)
    gain, bias = matrix[:, :-1], matrix[:, -1]
    sigma = torch.linalg.svdvals(gain)
    return {
        "shift": 255.0 * float(bias.abs().max()),
        "bias": [255.0 * float(v) for v in bias],
        "gain_max": float(sigma[0]),
        "gain_min": float(sigma[-1]),
    }


# (key in the sweep rows, how to take the extreme, name in the report)
_REACH = {
    "spatial": [
        ("rotation_deg", "absmax", "rotation_deg"),
        ("scale_min", "min", "scale_min"),
        ("scale_max", "max", "scale_max"),
        ("translation_px", "max", "translation_px"),
        ("pixel_change", "max", "spatial_pixel_change"),
    ],
    "color": [
        ("shift", "max", "color_shift"),
        ("gain_min", "min", "color_gain_min"),
        ("gain_max", "max", "color_gain_max"),
        ("pixel_change", "max", "color_pixel_change"),
    ],
}


def measure_reach(
    trainer: ITNTrainer, data: Iterable, *, points: int | None = None, height: int, width: int
) -> tuple[list[dict], dict]:
    """Sweep c over ``points`` values of [0, 1] for each transformer alone (module doc).

    Returns (sweep rows, magnitude reached at the target accuracy)."""
    points = trainer.config.sweep_points if points is None else int(points)
    grid = [i / (points - 1) for i in range(points)]
    thetas, matrices = trainer.matrices(grid)
    rows = []
    for c, theta, matrix in zip(grid, thetas, matrices, strict=True):
        spatial_accuracy, spatial_change = trainer.evaluate_change(data, c_s=c)
        color_accuracy, color_change = trainer.evaluate_change(data, c_c=c)
        rows.append(
            {
                "c": c,
                "spatial_accuracy": spatial_accuracy,
                "color_accuracy": color_accuracy,
                "spatial": {
                    **decompose_spatial(theta, height, width),
                    "pixel_change": spatial_change,
                },
                "color": {**decompose_color(matrix), "pixel_change": color_change},
                "theta": theta.tolist(),
                "color_matrix": matrix.tolist(),
            }
        )
    target = trainer.config.target_accuracy
    reach: dict[str, float | None] = {}
    for part, quantities in _REACH.items():
        kept = [r[part] for r in rows if r[f"{part}_accuracy"] >= target]
        reach[f"{part}_c_max"] = max(
            (r["c"] for r in rows if r[f"{part}_accuracy"] >= target), default=None
        )
        for key, how, name in quantities:
            values = [k[key] for k in kept if k[key] is not None]
            if not values:
                reach[name] = None
            elif how == "absmax":
                reach[name] = max(values, key=abs)
            else:
                reach[name] = (max if how == "max" else min)(values)
    return rows, reach


# --------------------------------------------------------------------------- results
@dataclass
class ITNResult:
    """What one ITN run measured; ``to_dict()`` is plain JSON (the trained net is apart)."""

    config: dict
    image_size: list[int]
    channels: int
    clean_accuracy: float
    final_accuracy: float  # random c_s, c_c per image, after training
    steps: int
    magnitude_steps: int
    history: list[dict] = field(repr=False)
    sweep: list[dict] = field(repr=False)
    reach: dict
    source: dict = field(default_factory=dict)  # where classifier and data came from (CLI)

    def to_dict(self, *, history: bool = True) -> dict:
        data = asdict(self)
        if not history:
            data.pop("history")
        return data


def run_itn(
    classifier: nn.Module,
    data: Iterable,
    *,
    standardize_fn: StandardizeFn,
    config: ITNConfig | None = None,
    eval_data: Iterable | None = None,
    device: torch.device | str | None = None,
    out_dir: str | os.PathLike | None = None,
) -> tuple[ITNTrainer, ITNResult]:
    """Train the ITN on ``data``, measure the magnitude reached on ``eval_data`` (default
    ``data``) and, with ``out_dir``, write every output (``write_outputs``)."""
    config = (config or ITNConfig()).validate()
    eval_data = data if eval_data is None else eval_data
    first = next(iter(data), None)
    if first is None:
        raise ValueError(f"{_OP}: data yielded no images")
    images, _labels, _ids = unpack_batch(first, 0, _OP)
    channels, height, width = (int(s) for s in images.shape[1:])
    trainer = ITNTrainer(
        classifier, channels=channels, standardize_fn=standardize_fn, config=config, device=device
    )
    clean = trainer.evaluate(eval_data)
    trainer.fit(data)
    sweep, reach = measure_reach(trainer, eval_data, height=height, width=width)
    result = ITNResult(
        config=asdict(config),
        image_size=[height, width],
        channels=channels,
        clean_accuracy=clean,
        final_accuracy=trainer.evaluate(eval_data, c_s="random", c_c="random", seed=config.seed),
        steps=len(trainer.history),
        magnitude_steps=sum(r["branch"] == BRANCH_MAGNITUDE for r in trainer.history),
        history=trainer.history,
        sweep=sweep,
        reach=reach,
    )
    if out_dir is not None:
        write_outputs(trainer, result, out_dir, images[0])
    return trainer, result


def save_transformers(trainer: ITNTrainer, result: ITNResult, path: str | os.PathLike) -> Path:
    """Plain-data file (``torch.load(weights_only=True)``): config and both state dicts."""
    payload = {
        "format": FORMAT,
        "invfast_version": __version__,
        "config": dict(result.config),
        "channels": result.channels,
        "image_size": list(result.image_size),
        "spatial": {k: v.detach().cpu() for k, v in trainer.itn.spatial.state_dict().items()},
        "color": {k: v.detach().cpu() for k, v in trainer.itn.color.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_atomic(path, buffer.getvalue())


def load_transformers(path: str | os.PathLike) -> InvariantTransformerNet:
    """Rebuild the trained transformers written by ``save_transformers``."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{_OP}: {path} is not an invfast ITN transformer file")
    config = payload["config"]
    net = InvariantTransformerNet(payload["channels"], hidden=config["hidden"], init=config["init"])
    net.spatial.load_state_dict(payload["spatial"])
    net.color.load_state_dict(payload["color"])
    return net.eval()


# --------------------------------------------------------------------------- figures
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_losses(history: list[dict], target_accuracy: float, path: str | os.PathLike) -> Path:
    """Batch accuracy (per branch), classification loss, transformer losses per step."""
    plt = _pyplot()
    steps = [r["step"] for r in history]
    figure, (top, middle, bottom) = plt.subplots(
        3, 1, figsize=(7, 8), sharex=True, layout="constrained"
    )
    for branch, color in ((BRANCH_MAGNITUDE, "C2"), (BRANCH_CLASSIFICATION, "C3")):
        picked = [r for r in history if r["branch"] == branch]
        top.scatter(
            [r["step"] for r in picked],
            [r["batch_accuracy"] for r in picked],
            s=6,
            color=color,
            label=f"{branch} step",
        )
    top.axhline(target_accuracy, color="k", linestyle="--", linewidth=1, label="target")
    top.set_ylabel("batch accuracy")
    top.set_ylim(-0.02, 1.02)
    top.legend(fontsize=7, loc="lower left")
    middle.plot(steps, [r["classification_loss"] for r in history], color="C0")
    middle.set_ylabel("classifier CE")
    bottom.plot(steps, [r["spatial_loss"] for r in history], color="C1", label="L_S")
    bottom.plot(steps, [r["color_loss"] for r in history], color="C4", label="L_C")
    bottom.set_ylabel("transformer loss")
    bottom.set_xlabel("step")
    bottom.legend(fontsize=7)
    figure.suptitle("Invariant Transformer Net training")
    return save_figure(figure, path)


@torch.no_grad()
def plot_grid(
    trainer: ITNTrainer, image: torch.Tensor, path: str | os.PathLike, points: int | None = None
) -> Path:
    """One image under increasing c_s (rows) and c_c (columns), P2 Fig. 19.

    Row 0 is the colour transformer alone, column 0 the spatial transformer alone, the
    top-left cell the original image."""
    plt = _pyplot()
    points = trainer.config.grid_points if points is None else int(points)
    grid = [i / (points - 1) for i in range(points)]
    image = image.to(trainer.device)[None]
    trainer.itn.eval()
    n = points + 1
    figure, axes = plt.subplots(
        n, n, figsize=(1.3 * n, 1.3 * n), squeeze=False, layout="constrained"
    )
    for row in range(n):
        for col in range(n):
            c_s = None if row == 0 else torch.tensor([grid[row - 1]], device=trainer.device)
            c_c = None if col == 0 else torch.tensor([grid[col - 1]], device=trainer.device)
            picture = trainer.itn.transform(image, c_s, c_c)[0].cpu() / 255.0
            ax = axes[row, col]
            if picture.shape[0] == 1:
                ax.imshow(picture[0].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(picture[:3].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title("original" if col == 0 else f"c_c={grid[col - 1]:.2f}", fontsize=7)
            if col == 0 and row > 0:
                ax.set_ylabel(f"c_s={grid[row - 1]:.2f}", fontsize=7)
    figure.suptitle("ITN: rows c_s (spatial), columns c_c (colour)", fontsize=9)
    return save_figure(figure, path)


def write_outputs(
    trainer: ITNTrainer, result: ITNResult, out_dir: str | os.PathLike, image: torch.Tensor
) -> dict[str, Path]:
    """``itn_transformers.pt``, ``itn_losses.json/.png``, ``itn_grid.png``, ``itn_result.json``."""
    out_dir = Path(out_dir)
    losses = {"target_accuracy": result.config["target_accuracy"], "steps": result.history}
    return {
        "transformers": save_transformers(trainer, result, out_dir / "itn_transformers.pt"),
        "losses_json": write_atomic(
            out_dir / "itn_losses.json", json.dumps(losses, indent=1).encode()
        ),
        "losses_png": plot_losses(
            result.history, result.config["target_accuracy"], out_dir / "itn_losses.png"
        ),
        "grid": plot_grid(trainer, image, out_dir / "itn_grid.png"),
        "result": write_atomic(
            out_dir / "itn_result.json",
            json.dumps(result.to_dict(history=False), indent=2).encode(),
        ),
    }


def format_reach(result: ITNResult) -> str:
    """Terminal summary: accuracies and the magnitude reached per parameter."""
    target = result.config["target_accuracy"]
    lines = [
        f"clean accuracy {result.clean_accuracy:.4f}; after ITN (random c) "
        f"{result.final_accuracy:.4f}; {result.magnitude_steps}/{result.steps} magnitude steps",
        f"magnitude reached at accuracy >= {target:g} (c on a {len(result.sweep)}-point grid):",
    ]
    for key, value in result.reach.items():
        shown = "none" if value is None else f"{value:.4g}"
        lines.append(f"  {key:<22}{shown:>12}")
    return "\n".join(lines)

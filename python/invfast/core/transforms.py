"""Image transformations of the three papers, fused and deterministic (DESIGN.md §4).

>>> from invfast import transforms
>>> T = transforms.get("blur", sigma=2.0)
>>> y = T(x_uint8, seed=0, index=ids, standardize="per-image")   # float32 [B, C, H, W]

Every transformation reads uint8 (or float32 in [0, 255]) images [B, C, H, W], transforms
them, clamps to [0, 255] and standardizes ("per-image" like
tf.image.per_image_standardization, "none", or a fixed per-channel (mean, std) in pixel
units) in one kernel launch per batch; ``apply`` ([B] bool) transforms only some rows.
Random transformations are pure functions of (seed, image index, pixel position), so the
same image gets the same noise on every backend, pass and run.

The set: P1 Appendix A (grayscale, hue180, blur, highpass, hfilter, vfilter, invert, noise,
saltpepper, rot90, rot180, thin), P2 §3.3 (translate, rotate, scale, zoom, brightness,
contrast, grayscale-blend, blur σ, noise σ; every parameter a float or a [B] tensor), the
groups of P3 §5 (R4, T3 with ``element=k``, ``orbit``) and ``identity``. See
docs/transforms.md for the exact definitions, borders and the shape rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from invfast.kernels.reference.transforms import MAX_BLUR_SIGMA, group_action
from invfast.kernels.transforms import image_transform


@dataclass(frozen=True)
class Param:
    name: str
    default: float
    low: float = -math.inf
    high: float = math.inf
    integer: bool = False
    doc: str = ""


@dataclass(frozen=True)
class Spec:
    name: str
    family: str
    paper: str
    doc: str
    params: tuple[Param, ...] = ()
    channels: str = "any"  # "any", "rgb" (C = 3) or "rgb-or-gray" (C = 1 or 3)
    group_order: int | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)


_SIGMA_BLUR = Param("sigma", 2.0, 0.0, MAX_BLUR_SIGMA, doc="Gaussian σ in pixels")
_SPECS = [
    Spec("identity", "identity", "-", "no transformation: clamp + standardize only"),
    # P1 Appendix A
    Spec(
        "grayscale",
        "color",
        "P1",
        "luma 0.299 R + 0.587 G + 0.114 B in every channel",
        channels="rgb-or-gray",
    ),
    Spec("hue180", "color", "P1", "hue rotated by 180° in HSV, S and V kept", channels="rgb"),
    Spec(
        "blur",
        "convolutional",
        "P1/P2",
        "separable Gaussian, radius ceil(3σ), reflect border",
        (_SIGMA_BLUR,),
    ),
    Spec("highpass", "convolutional", "P1", "5×5 high-pass [-1,2,4,2,-1] kernel, reflect border"),
    Spec("hfilter", "convolutional", "P1", "3×3 kernel with rows [-1,0,1], reflect border"),
    Spec("vfilter", "convolutional", "P1", "3×3 kernel with columns [-1,0,1], reflect border"),
    Spec("invert", "convolutional", "P1", "255 − x"),
    Spec(
        "noise",
        "noise",
        "P1/P2",
        "additive Gaussian noise, σ in pixel units",
        (Param("sigma", 25.0, 0.0, doc="noise σ in pixel units"),),
    ),
    Spec("saltpepper", "noise", "P1", "each pixel position, with p = 1/2, set to 0 or 255"),
    Spec("rot90", "geometric", "P1", "90° anticlockwise about the centre, H×W kept, zero fill"),
    Spec("rot180", "geometric", "P1", "180° rotation"),
    Spec("thin", "geometric", "P1", "width halved by area average, zero-padded on both sides"),
    # P2 §3.3
    Spec(
        "translate",
        "geometric",
        "P2",
        "shift by (dx, dy) pixels (right, down), bilinear",
        (Param("dx", 4.0, doc="pixels to the right"), Param("dy", 0.0, doc="pixels down")),
    ),
    Spec(
        "rotate",
        "geometric",
        "P2",
        "rotation by angle degrees anticlockwise, bilinear",
        (Param("angle", 30.0, doc="degrees, anticlockwise"),),
    ),
    Spec(
        "scale",
        "geometric",
        "P2",
        "scale x by sx and y by sy about the centre, bilinear",
        (Param("sx", 1.25, 1e-3, 1e3), Param("sy", 1.0, 1e-3, 1e3)),
    ),
    Spec(
        "zoom",
        "geometric",
        "P2",
        "scale both axes by factor about the centre, bilinear",
        (Param("factor", 1.25, 1e-3, 1e3),),
    ),
    Spec(
        "brightness",
        "color",
        "P2",
        "x + delta in every channel",
        (Param("delta", 40.0, doc="pixel units"),),
    ),
    Spec("contrast", "color", "P2", "x · factor in every channel", (Param("factor", 0.5, 0.0),)),
    Spec(
        "grayscale-blend",
        "color",
        "P2",
        "(1 − α)·x + α·grayscale(x)",
        (Param("alpha", 0.5, 0.0, 1.0),),
        channels="rgb-or-gray",
        aliases=("grayscale_blend",),
    ),
    # P3 §5
    Spec(
        "R4",
        "group",
        "P3",
        "rotation by element·90° anticlockwise (element 0..3)",
        (Param("element", 1, 0, 3, integer=True),),
        group_order=4,
    ),
    Spec(
        "T3",
        "group",
        "P3",
        "cyclic shift right by element·W/3 pixels (element 0..2)",
        (Param("element", 1, 0, 2, integer=True),),
        group_order=3,
    ),
]
_BY_NAME = {s.name: s for s in _SPECS}
_ALIASES = {a: s.name for s in _SPECS for a in s.aliases}


def names() -> list[str]:
    """Every transformation name, in the order of the papers."""
    return [s.name for s in _SPECS]


def describe() -> dict[str, dict[str, Any]]:
    """name → {"family", "paper", "doc", "params": {name: default}, "group_order"}."""
    return {
        s.name: {
            "family": s.family,
            "paper": s.paper,
            "doc": s.doc,
            "params": {p.name: p.default for p in s.params},
            "group_order": s.group_order,
        }
        for s in _SPECS
    }


def _spec(name: object) -> Spec:
    if isinstance(name, str):
        name = _ALIASES.get(name, name)
        if name in _BY_NAME:
            return _BY_NAME[name]
    raise ValueError(f"unknown transformation {name!r}; valid: {', '.join(names())}")


def _check_value(spec: Spec, p: Param, value: object) -> float | int | torch.Tensor:
    where = f"{spec.name}: {p.name}"
    rng = f"[{p.low:g}, {p.high:g}]"
    if isinstance(value, torch.Tensor):
        if value.dim() != 1:
            raise ValueError(
                f"{where} must be a number or a [B] tensor, got shape {tuple(value.shape)}"
            )
        if p.integer and (value.dtype.is_floating_point or value.dtype == torch.bool):
            raise ValueError(f"{where} must be an integer tensor, got {value.dtype}")
        if value.is_complex() or value.dtype == torch.bool:
            raise ValueError(f"{where} must be a real tensor, got {value.dtype}")
        v = value.detach().to("cpu", torch.float64)
        if not bool(torch.isfinite(v).all()) or bool((v < p.low).any() | (v > p.high).any()):
            raise ValueError(
                f"{where} must be finite and in {rng}, got values "
                f"{v.min().item():g}..{v.max().item():g}"
            )
        return value.detach()
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "an int" if p.integer else "a number"
        raise ValueError(f"{where} must be {kind} or a [B] tensor, got {value!r}")
    if p.integer and not float(value).is_integer():
        raise ValueError(f"{where} must be an integer in {rng}, got {value!r}")
    if not math.isfinite(value) or not p.low <= value <= p.high:
        raise ValueError(f"{where} must be finite and in {rng}, got {value!r}")
    return int(value) if p.integer else float(value)


def _json_value(value: float | int | torch.Tensor) -> float | int | list:
    return value.tolist() if isinstance(value, torch.Tensor) else value


class Transform:
    """A transformation with fixed parameters; call it on a batch of images."""

    def __init__(self, spec: Spec, values: dict[str, float | int | torch.Tensor]):
        self._spec = spec
        self._values = values

    name = property(lambda self: self._spec.name)
    family = property(lambda self: self._spec.family)
    paper = property(lambda self: self._spec.paper)
    group_order = property(lambda self: self._spec.group_order)

    @property
    def params(self) -> dict[str, Any]:
        """The parameters as plain JSON data ([B] tensors become lists)."""
        return {k: _json_value(v) for k, v in self._values.items()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"transforms.get({self.name!r}{', ' if args else ''}{args})"

    def _check_shape(self, x: object) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            return  # the ops layer reports the exact problem
        c, w = x.shape[1], x.shape[3]
        if self._spec.channels == "rgb" and c != 3:
            raise ValueError(f"{self.name} needs RGB images (C = 3), got C = {c}")
        if self._spec.channels == "rgb-or-gray" and c not in (1, 3):
            raise ValueError(f"{self.name} needs C = 1 or C = 3 images, got C = {c}")
        if self.name == "T3" and w % 3 != 0:
            raise ValueError(f"T3 needs a width divisible by 3 (shifts of W/3), got W = {w}")
        for k, v in self._values.items():
            if isinstance(v, torch.Tensor) and v.shape[0] != x.shape[0]:
                raise ValueError(
                    f"{self.name}: {k} has {v.shape[0]} values, expected one per "
                    f"image (B = {x.shape[0]})"
                )

    def __call__(
        self,
        x: torch.Tensor,
        *,
        seed: int = 0,
        index: torch.Tensor | None = None,
        apply: torch.Tensor | None = None,
        standardize: str | tuple = "per-image",
        backend: str | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Transform → clamp [0, 255] → standardize; float32 [B, C, H, W] on x.device.

        ``index`` [B] int64 image ids (default arange(B)) and ``seed`` drive the random
        transformations; ``apply`` [B] bool leaves rows with False untransformed; ``out``
        (float32, x's shape) is filled and returned instead of a new tensor.
        """
        self._check_shape(x)
        return image_transform(
            x,
            self.name,
            self._values,
            seed=seed,
            index=index,
            apply=apply,
            standardize=standardize,
            backend=backend,
            out=out,
        )

    # ---------------------------------------------------------------- groups (P3)
    def _require_group(self, what: str) -> int:
        if self.group_order is None:
            groups = ", ".join(s.name for s in _SPECS if s.group_order)
            raise ValueError(f"{what} is defined for the groups {groups}, not {self.name}")
        return self.group_order

    def element(self, k: int | torch.Tensor) -> Transform:
        """The group element k (an int or a [B] int tensor) of this group."""
        self._require_group("element")
        return get(self.name, element=k)

    def inverse(self) -> Transform:
        """The inverse group element, (|G| − k) mod |G|."""
        order = self._require_group("inverse")
        k = self._values["element"]
        return get(self.name, element=(order - k) % order)

    def act(self, x: torch.Tensor) -> torch.Tensor:
        """This group element on any tensor [..., H, W] (a saliency map, logits-free data):
        the same pixel permutation as ``__call__``, without clamping or standardization.
        A [B] tensor element acts row by row on dimension 0."""
        self._require_group("act")
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise ValueError(f"{self.name}.act: x must be a tensor [..., H, W]")
        if self.name == "T3" and x.shape[-1] % 3 != 0:
            raise ValueError(
                f"T3 needs a width divisible by 3 (shifts of W/3), got W = {x.shape[-1]}"
            )
        k = self._values["element"]
        if not isinstance(k, torch.Tensor):
            return group_action(self.name, int(k), x)
        if x.dim() < 3 or k.shape[0] != x.shape[0]:
            raise ValueError(
                f"{self.name}.act: a per-image element needs x [B, ..., H, W] with "
                f"B = {k.shape[0]}, got shape {tuple(x.shape)}"
            )
        return torch.stack(
            [group_action(self.name, int(e), row) for e, row in zip(k, x, strict=True)]
        )

    def orbit(
        self,
        x: torch.Tensor,
        *,
        seed: int = 0,
        index: torch.Tensor | None = None,
        standardize: str | tuple = "per-image",
        backend: str | None = None,
    ) -> torch.Tensor:
        """Every group element applied to x: [|G|, B, C, H, W], element k at position k."""
        order = self._require_group("orbit")
        return torch.stack(
            [
                get(self.name, element=k)(
                    x, seed=seed, index=index, standardize=standardize, backend=backend
                )
                for k in range(order)
            ]
        )


def get(name: str, **params: float | int | torch.Tensor) -> Transform:
    """The transformation ``name`` with ``params`` (defaults from ``describe()``).

    P2 parameters (and blur/noise σ, the group element) accept a float or a [B] tensor
    of per-image values. Unknown names or parameters raise ValueError listing the valid ones.
    """
    spec = _spec(name)
    valid = {p.name: p for p in spec.params}
    unknown = sorted(set(params) - set(valid))
    if unknown:
        listing = ", ".join(valid) if valid else "none"
        raise ValueError(f"{spec.name}: unknown parameter {unknown[0]!r}; valid: {listing}")
    values = {p.name: _check_value(spec, p, params.get(p.name, p.default)) for p in spec.params}
    return Transform(spec, values)


__all__ = ["Param", "Spec", "Transform", "describe", "get", "names"]

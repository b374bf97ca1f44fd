"""The built-in ``synthetic`` dataset: procedurally drawn RGB shapes.

Each category is a shape. Everything else varies from image to image and carries no class
information: position, scale, aspect ratio, rotation (±20°, small enough that no two
shapes turn into each other), foreground and background colours (random, with a minimum
luminance contrast), the fill texture of the shape (solid, stripes, checks or speckles),
a smooth background gradient and pixel noise. Shapes are rasterized from signed distance
functions with one pixel of anti-aliasing, so any image size works.

Deterministic: image ``i`` of class ``c`` depends only on (seed, c, i), and the images of a
class are drawn together in one vectorized batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Tensor = torch.Tensor


def _length(u: Tensor, v: Tensor) -> Tensor:
    return torch.sqrt(u * u + v * v)


def _box(u: Tensor, v: Tensor, half_w: float, half_h: float) -> Tensor:
    return torch.maximum(u.abs() - half_w, v.abs() - half_h)


def _disk(u: Tensor, v: Tensor, r: float = 0.9, cu: float = 0.0, cv: float = 0.0) -> Tensor:
    return _length(u - cu, v - cv) - r


def _triangle(u: Tensor, v: Tensor, flip: bool = False) -> Tensor:
    # apex up (v grows downwards in image coordinates); edges as half-planes
    if flip:
        v = -v
    s = math.sqrt(3.0) / 2.0
    return torch.maximum(v - 0.6, (s * 2 * u.abs() - v) * 0.5 - 0.45)


def _rotate(u: Tensor, v: Tensor, degrees: float) -> tuple[Tensor, Tensor]:
    a = math.radians(degrees)
    return u * math.cos(a) + v * math.sin(a), -u * math.sin(a) + v * math.cos(a)


def _plus(u: Tensor, v: Tensor) -> Tensor:
    return torch.minimum(_box(u, v, 0.28, 0.9), _box(u, v, 0.9, 0.28))


def _star(u: Tensor, v: Tensor) -> Tensor:
    theta = torch.atan2(u, -v)
    radius = 0.6 + 0.32 * torch.cos(5 * theta)
    return (_length(u, v) - radius) * 0.7


SHAPES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "disk": lambda u, v: _disk(u, v),
    "square": lambda u, v: _box(u, v, 0.75, 0.75),
    "triangle": lambda u, v: _triangle(u, v),
    "ring": lambda u, v: (_length(u, v) - 0.66).abs() - 0.24,
    "plus": _plus,
    "x-cross": lambda u, v: _plus(*_rotate(u, v, 45.0)),
    "star": _star,
    "crescent": lambda u, v: torch.maximum(_disk(u, v), -_disk(u, v, 0.72, 0.42, -0.12)),
    "frame": lambda u, v: (torch.maximum(u.abs(), v.abs()) - 0.62).abs() - 0.2,
    "bar": lambda u, v: _box(u, v, 0.95, 0.26),
    "two-dots": lambda u, v: torch.minimum(_disk(u, v, 0.4, -0.5), _disk(u, v, 0.4, 0.5)),
    "three-dots": lambda u, v: torch.minimum(
        torch.minimum(_disk(u, v, 0.34, 0.0, -0.55), _disk(u, v, 0.34, -0.5, 0.4)),
        _disk(u, v, 0.34, 0.5, 0.4),
    ),
    "tee": lambda u, v: torch.minimum(_box(u, v + 0.62, 0.9, 0.24), _box(u, v - 0.12, 0.24, 0.78)),
    "ell": lambda u, v: torch.minimum(_box(u + 0.55, v, 0.24, 0.9), _box(u, v - 0.66, 0.8, 0.24)),
    "half-disk": lambda u, v: torch.maximum(_disk(u, v - 0.3), v - 0.3),
    "bowtie": lambda u, v: (
        torch.minimum(
            _triangle(*_rotate(u + 0.45, v, -90.0), flip=True),
            _triangle(*_rotate(u - 0.45, v, 90.0), flip=True),
        )
        * 1.0
    ),
}

MAX_CLASSES = len(SHAPES)


def _uniform(g: torch.Generator, n: int, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64).float()


def _luma(rgb: Tensor) -> Tensor:
    return rgb @ torch.tensor([0.299, 0.587, 0.114])


def _colours(g: torch.Generator, n: int) -> tuple[Tensor, Tensor]:
    """Foreground and background colours in [0, 1] with luma contrast >= 0.3."""
    fg = torch.rand(n, 3, generator=g)
    bg = torch.rand(n, 3, generator=g)
    for _ in range(16):  # resample the low-contrast pairs (a fixed number of rounds)
        low = (_luma(fg) - _luma(bg)).abs() < 0.3
        if not low.any():
            break
        fg[low] = torch.rand(int(low.sum()), 3, generator=g)
    low = (_luma(fg) - _luma(bg)).abs() < 0.3
    fg[low] = (_luma(bg[low]) < 0.5).float()[:, None].expand(-1, 3)  # white or black
    return fg, bg


def _texture(g: torch.Generator, n: int, x: Tensor, y: Tensor) -> Tensor:
    """Per-image fill modulation in [0, 1]: solid, stripes, checks or speckles."""
    kind = torch.randint(0, 4, (n,), generator=g)
    period = _uniform(g, n, 3.0, 6.0)[:, None, None]
    angle = _uniform(g, n, 0.0, math.pi)[:, None, None]
    phase = _uniform(g, n, 0.0, 2 * math.pi)[:, None, None]
    along = x * torch.cos(angle) + y * torch.sin(angle)
    stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * along / period + phase)
    checks = ((torch.floor(x / period) + torch.floor(y / period)) % 2).float()
    speckle = (torch.rand(x.shape, generator=g) < 0.3).float()
    out = torch.zeros_like(stripes)
    out = torch.where((kind == 1)[:, None, None], stripes, out)
    out = torch.where((kind == 2)[:, None, None], checks, out)
    return torch.where((kind == 3)[:, None, None], speckle, out)


def class_names(num_classes: int) -> list[str]:
    return list(SHAPES)[:num_classes]


def draw_class(class_index: int, count: int, size: int, seed: int) -> Tensor:
    """``count`` uint8 images [count, 3, size, size] of class ``class_index``."""
    shape_fn = list(SHAPES.values())[class_index]
    g = torch.Generator().manual_seed((seed * 1_000_003 + class_index * 7_919) % (2**63))
    n = count
    pixel = torch.arange(size, dtype=torch.float32) + 0.5
    y, x = torch.meshgrid(pixel, pixel, indexing="ij")
    x, y = x.expand(n, size, size), y.expand(n, size, size)

    scale = _uniform(g, n, 0.28, 0.42) * size  # half extent of the shape, pixels
    aspect = _uniform(g, n, 0.85, 1.15)
    angle = _uniform(g, n, -20.0, 20.0) * (math.pi / 180.0)
    room = (size / 2 - scale).clamp_min(0) * 0.7
    cx = size / 2 + _uniform(g, n, -1.0, 1.0) * room
    cy = size / 2 + _uniform(g, n, -1.0, 1.0) * room
    dx, dy = x - cx[:, None, None], y - cy[:, None, None]
    cos_a, sin_a = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    su = (scale * aspect)[:, None, None]
    sv = (scale / aspect)[:, None, None]
    u = (dx * cos_a + dy * sin_a) / su
    v = (-dx * sin_a + dy * cos_a) / sv
    # distance in shape units -> pixels (approximately), then 1-pixel anti-aliased coverage
    coverage = (0.5 - shape_fn(u, v) * torch.minimum(su, sv)).clamp(0.0, 1.0)

    fg, bg = _colours(g, n)
    fg2 = (fg + 0.45 * (torch.rand(n, 3, generator=g) - 0.5)).clamp(0, 1)
    bg2 = (bg + 0.3 * (torch.rand(n, 3, generator=g) - 0.5)).clamp(0, 1)
    grad_angle = _uniform(g, n, 0.0, 2 * math.pi)[:, None, None]
    ramp = ((x * torch.cos(grad_angle) + y * torch.sin(grad_angle)) / size + 0.7) / 1.4
    ramp = ramp.clamp(0, 1)[:, None]
    background = bg[:, :, None, None] * (1 - ramp) + bg2[:, :, None, None] * ramp
    fill = _texture(g, n, x, y)[:, None]
    foreground = fg[:, :, None, None] * (1 - fill) + fg2[:, :, None, None] * fill
    image = background + coverage[:, None] * (foreground - background)
    image = image * 255.0 + 6.0 * torch.randn(image.shape, generator=g)
    return image.round().clamp(0, 255).to(torch.uint8)


def generate(num_classes: int, per_class: int, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """All images, class by class: uint8 [num_classes * per_class, 3, size, size], labels."""
    images = torch.cat([draw_class(c, per_class, size, seed) for c in range(num_classes)])
    labels = torch.arange(num_classes, dtype=torch.int64).repeat_interleave(per_class)
    return images, labels

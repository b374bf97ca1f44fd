"""Reference image transformations (DESIGN.md §4; P1 Appendix A, P2 §3.3, P3 §5).

Plain PyTorch, the test oracle of ``invfast.ops.transforms`` and the baseline of its
benchmark. Every transformation is one *kernel op* (``KERNEL_OPS``) driven by a per-image
parameter table that ``kernel_plan`` builds once, in float64, for every backend alike:
the kernels and this module read the same float32 numbers (affine matrices, Gaussian
weights, blend coefficients), so they differ only by float rounding inside the maths.

Conventions (docs/transforms.md has the full text):
- images are in [0, 255]; the result is clamped to [0, 255], then standardized;
- stencils (blur, highpass, hfilter, vfilter) are correlations with *reflect* borders
  (``reflect_index``: mirror without repeating the edge pixel, periodic for any offset);
- geometric ops keep H×W: rot90/rot270 rotate about the centre and fill with zeros;
- randomness is a counter-based hash of (seed, image index, position) in 32-bit integer
  arithmetic, written here with int64 tensors masked to 32 bits (``hash32``), so it is
  bit-identical to csrc/common/rng.h.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Copies of constants of csrc/common/ (the compiled modules export them as TRANSFORM_OPS,
# TRANSFORM_TABLE_WIDTH, RNG_STREAM_*; the reference works without them).
# tests/test_backends.py asserts they are equal.
KERNEL_OPS = {
    "identity": 0,
    "grayscale": 1,
    "hue180": 2,
    "blur": 3,
    "highpass": 4,
    "hfilter": 5,
    "vfilter": 6,
    "invert": 7,
    "noise": 8,
    "saltpepper": 9,
    "quarter_turn": 10,
    "thin": 11,
    "affine": 12,
    "intensity": 13,
    "gray_blend": 14,
    "cyclic_shift": 15,
}
TABLE_WIDTH = 8  # floats per image in the parameter table
MAX_BLUR_SIGMA = 1000.0

# Streams of the counter-based RNG (csrc/common/rng.h): one per random transformation.
STREAM_NOISE = 0x6E6F6973  # "nois"
STREAM_SALTPEPPER = 0x73616C74  # "salt"

LUMA = (0.299, 0.587, 0.114)
HIGHPASS_5X5 = (
    (-1.0, -1.0, -1.0, -1.0, -1.0),
    (-1.0, 1.0, 2.0, 1.0, -1.0),
    (-1.0, 2.0, 4.0, 2.0, -1.0),
    (-1.0, 1.0, 2.0, 1.0, -1.0),
    (-1.0, -1.0, -1.0, -1.0, -1.0),
)
HFILTER_3X3 = ((-1.0, 0.0, 1.0),) * 3

_MASK32 = 0xFFFFFFFF


# ------------------------------------------------------------------ counter-based RNG
def _mul32(x, c: int):
    """(x * c) mod 2^32 for 0 <= x < 2^32, without leaving int64 (16-bit halves of c)."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _MASK32


def hash32(x):
    """A 32-bit integer permutation (xorshift-multiply, constants of Wellons' lowbias32).

    Works on Python ints and on int64 tensors holding values in [0, 2^32).
    """
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def image_keys(seed: int, index: torch.Tensor, stream: int) -> torch.Tensor:
    """Per-image 32-bit keys [B] (int64 tensor) from (seed, image index, stream)."""
    seed %= 1 << 64
    key = hash32((seed & _MASK32) ^ stream)
    key = hash32(key ^ (seed >> 32))
    index = index.to(torch.int64)
    keys = hash32((index & _MASK32) ^ key)
    return hash32(keys ^ ((index >> 32) & _MASK32))


# float32 constants, written in hex so that C++ and Python read the same bits.
_LN2_HI = float.fromhex("0x1.62e4p-1")
_LN2_LO = float.fromhex("0x1.7f7d1cp-20")
_LOG_POLY = [
    float.fromhex(h)
    for h in ("0x1.c71c72p-3", "0x1.24924ap-2", "0x1.99999ap-2", "0x1.555556p-1", "0x1p+1")
]  # 2/9, 2/7, 2/5, 2/3, 2
_SIN_POLY = [
    float.fromhex(h)
    for h in (
        "0x1.e8f434p+1",
        "-0x1.e30750p+3",
        "0x1.507834p+5",
        "-0x1.32d2ccp+6",
        "0x1.466bc6p+6",
        "-0x1.4abbcep+5",
        "0x1.921fb6p+2",
    )
]  # (2π)^(2n+1)/(2n+1)!, n = 6..0
_TWO_POW_M24 = 2.0**-24


def log_unit(u: torch.Tensor) -> torch.Tensor:
    """ln(u) for float32 u in (0, 1]: u = m·2^e, m in [√½, √2), ln m = 2 atanh((m-1)/(m+1))."""
    bits = u.view(torch.int32)
    mantissa = bits & 0x7FFFFF
    adjust = (mantissa > 0x3504F3).to(torch.int32)
    m = (mantissa | ((127 - adjust) << 23)).view(torch.float32)
    e = ((bits >> 23) - 127 + adjust).to(torch.float32)
    t = (m - 1.0) / (m + 1.0)
    t2 = t * t
    poly = torch.full_like(t, _LOG_POLY[0])
    for c in _LOG_POLY[1:]:
        poly = poly * t2 + c
    return e * _LN2_HI + (e * _LN2_LO + t * poly)


def sin_two_pi(b: torch.Tensor) -> torch.Tensor:
    """sin(2π b) for float32 b in [-1/4, 1/4] (odd Taylor polynomial to degree 13)."""
    b2 = b * b
    poly = torch.full_like(b, _SIN_POLY[0])
    for c in _SIN_POLY[1:]:
        poly = poly * b2 + c
    return poly * b


def sqrt_nonneg(x: torch.Tensor) -> torch.Tensor:
    """sqrt for float32 x >= +0: bit estimate of 1/sqrt, three Newton steps, times x."""
    r = (0x5F3759DF - (x.view(torch.int32) >> 1)).view(torch.float32)
    half = x * 0.5
    for _ in range(3):
        r = r * (1.5 - (half * r) * r)
    return x * r


def uniform_pair(keys: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Two 32-bit hashes per (image, position): [B, N] int64 each."""
    k = keys.view(-1, 1)
    p2 = (positions.view(1, -1) * 2) & _MASK32
    return hash32(k ^ p2), hash32(k ^ (p2 + 1))


def standard_normal(keys: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """N(0, 1) samples [B, N] by Box–Muller from the two hashes of each (image, position).

    u1 = (h1>>8 + 1)·2^-24 in (0, 1], b = 1/4 − |(h2>>8)·2^-24 − 1/2|,
    z = sqrt(−2 ln u1) · sin(2π b)  (= −sqrt(−2 ln u1) cos(2π u2); |z| <= 5.77).
    """
    h1, h2 = uniform_pair(keys, positions)
    u1 = ((h1 >> 8) + 1).to(torch.float32) * _TWO_POW_M24
    u2 = (h2 >> 8).to(torch.float32) * _TWO_POW_M24
    b = 0.25 - (u2 - 0.5).abs()
    radius = sqrt_nonneg((log_unit(u1) * -2.0).abs())  # abs: −0 → +0
    return radius * sin_two_pi(b)


def salt_pepper_hashes(keys: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """One 32-bit hash per (image, pixel position) [B, N]: bit 31 = hit, bit 30 = white."""
    return hash32(keys.view(-1, 1) ^ (positions.view(1, -1) & _MASK32))


# ------------------------------------------------------------------ shared index rules
def reflect_index(i: torch.Tensor, n: int) -> torch.Tensor:
    """Reflect border: -1 → 1, n → n-2, extended periodically (period 2n-2); n = 1 → 0."""
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * n - 2
    m = torch.remainder(i, period)
    return torch.where(m < n, m, period - m)


def centre_offsets(h: int, w: int) -> tuple[int, int]:
    """Top/left offset of a W×H (rotated) image inside the H×W canvas (floor division)."""
    return (h - w) // 2, (w - h) // 2


def thin_width(w: int) -> int:
    return max(1, w // 2)


# ------------------------------------------------------------------ per-image tables
def _per_image(value, batch: int) -> torch.Tensor:
    """A float or [B] tensor parameter as a float64 CPU tensor [B]."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64).reshape(-1).expand(batch)
    return torch.full((batch,), float(value), dtype=torch.float64)


def blur_radius(sigma: torch.Tensor) -> torch.Tensor:
    """ceil(3σ) per image (int64), 0 for σ = 0."""
    return torch.ceil(sigma * 3.0).to(torch.int64)


def gaussian_weights(sigma: torch.Tensor) -> torch.Tensor:
    """[B, 2R+1] float32, R = max radius: normalized exp(-k²/2σ²) centred, zero outside ceil(3σ)."""
    radius = blur_radius(sigma)
    r_max = int(radius.max()) if radius.numel() else 0
    k = torch.arange(-r_max, r_max + 1, dtype=torch.float64).view(1, -1)
    s = sigma.view(-1, 1)
    safe = torch.where(s > 0, s, torch.ones_like(s))
    w = torch.exp(-0.5 * (k / safe) ** 2)  # k/σ first: no 0/0 for tiny σ
    w = torch.where(k.abs() <= radius.view(-1, 1), w, torch.zeros_like(w))
    w = torch.where(s > 0, w, (k == 0).to(torch.float64).expand_as(w))
    return (w / w.sum(dim=1, keepdim=True)).to(torch.float32)


def affine_matrix(name: str, p: dict[str, torch.Tensor], h: int, w: int) -> torch.Tensor:
    """[B, 6] float64 (m00, m01, m02, m10, m11, m12): output pixel (x, y) samples the input
    at (m00 x + m01 y + m02, m10 x + m11 y + m12); centre ((W-1)/2, (H-1)/2)."""
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    batch = next(iter(p.values())).shape[0]
    one, zero = torch.ones(batch, dtype=torch.float64), torch.zeros(batch, dtype=torch.float64)
    if name == "translate":
        # content moves by (+dx, +dy): right and down
        return torch.stack([one, zero, -p["dx"], zero, one, -p["dy"]], dim=1)
    if name == "rotate":
        # anticlockwise on screen (y down): output offset o samples R(-θ)·o
        theta = p["angle"] * (math.pi / 180.0)
        c, s = torch.cos(theta), torch.sin(theta)
        return torch.stack([c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy], dim=1)
    if name in ("scale", "zoom"):
        sx, sy = (p["factor"], p["factor"]) if name == "zoom" else (p["sx"], p["sy"])
        return torch.stack([1.0 / sx, zero, cx - cx / sx, zero, 1.0 / sy, cy - cy / sy], dim=1)
    raise ValueError(f"affine_matrix: unknown transform {name!r}")


def kernel_plan(
    name: str, params: dict, batch: int, channels: int, height: int, width: int
) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(kernel op code, table [B, 8] float32, weights [B, K] float32) on the CPU.

    ``params`` holds floats or [B] tensors, already validated by ``invfast.transforms``.
    """
    p = {k: _per_image(v, batch) for k, v in params.items()}
    table = torch.zeros(batch, TABLE_WIDTH, dtype=torch.float64)
    weights = torch.ones(batch, 1, dtype=torch.float32)
    op = name
    if name in ("grayscale", "grayscale-blend") and channels == 1:
        op = "identity"  # a one-channel image is already gray
    elif name == "grayscale-blend":
        op = "gray_blend"
        table[:, 0], table[:, 1] = 1.0 - p["alpha"], p["alpha"]
    elif name in ("rot90", "rot180", "R4"):
        op = "quarter_turn"
        table[:, 0] = {"rot90": 1.0, "rot180": 2.0}.get(name, 0.0) if name != "R4" else p["element"]
    elif name == "T3":
        op = "cyclic_shift"
        table[:, 0] = p["element"] * (width // 3)
    elif name in ("translate", "rotate", "scale", "zoom"):
        op = "affine"
        table[:, :6] = affine_matrix(name, p, height, width)
    elif name == "brightness":
        op = "intensity"
        table[:, 0], table[:, 1] = 1.0, p["delta"]
    elif name == "contrast":
        op = "intensity"
        table[:, 0], table[:, 1] = p["factor"], 0.0
    elif name == "blur":
        table[:, 0] = blur_radius(p["sigma"]).to(torch.float64)
        weights = gaussian_weights(p["sigma"]) if batch else weights
    elif name == "noise":
        table[:, 0] = p["sigma"]
    if op not in KERNEL_OPS:
        raise ValueError(f"kernel_plan: unknown transform {name!r}")
    return KERNEL_OPS[op], table.to(torch.float32), weights


# ------------------------------------------------------------------ the kernel ops
def _depthwise(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlation of every channel with ``kernel`` [kh, kw], reflect border."""
    c, h, w = x.shape[1:]
    rh, rw = kernel.shape[0] // 2, kernel.shape[1] // 2
    rows = reflect_index(torch.arange(-rh, h + rh, device=x.device), h)
    cols = reflect_index(torch.arange(-rw, w + rw, device=x.device), w)
    padded = x.index_select(2, rows).index_select(3, cols)
    weight = kernel.to(x.device, x.dtype).expand(c, 1, *kernel.shape)
    return F.conv2d(padded, weight, groups=c)


def gaussian_blur(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Separable: vertical then horizontal pass with per-image weights [B, K], reflect border.

    Written as a sum of shifted copies, tap by tap in ascending order — the order of the
    kernels, so the result is bit-identical to them (taps beyond an image's own radius
    have weight 0 and add exactly nothing).
    """
    b, _, h, w = x.shape
    k = weights.shape[1]
    r = k // 2
    wk = weights.to(x.device)
    rows = reflect_index(torch.arange(-r, h + r, device=x.device), h)
    padded = x.index_select(2, rows)
    vertical = torch.zeros_like(x)
    for t in range(k):
        vertical = vertical + wk[:, t].view(b, 1, 1, 1) * padded[:, :, t : t + h, :]
    cols = reflect_index(torch.arange(-r, w + r, device=x.device), w)
    padded = vertical.index_select(3, cols)
    out = torch.zeros_like(x)
    for t in range(k):
        out = out + wk[:, t].view(b, 1, 1, 1) * padded[:, :, :, t : t + w]
    return out


def luma(x: torch.Tensor) -> torch.Tensor:
    """0.299 R + 0.587 G + 0.114 B, [B, 1, H, W] (same operation order as the kernels)."""
    return LUMA[0] * x[:, 0:1] + LUMA[1] * x[:, 1:2] + LUMA[2] * x[:, 2:3]


def hue180(x: torch.Tensor) -> torch.Tensor:
    """Hue rotated by 180° in HSV with S and V kept: c' = max(R,G,B) + min(R,G,B) − c.

    (The complementary colour with the same max and min; equal to the HSV round trip.)
    """
    return (x.amax(dim=1, keepdim=True) + x.amin(dim=1, keepdim=True)) - x


def quarter_turn(x: torch.Tensor, k: int) -> torch.Tensor:
    """k·90° anticlockwise, H×W kept: a W×H result is centred in the canvas, zero fill."""
    k %= 4
    y = torch.rot90(x, k, dims=(-2, -1))
    h, w = x.shape[-2], x.shape[-1]
    if k % 2 == 0 or h == w:
        return y
    top, left = centre_offsets(h, w)
    return F.pad(y, (left, w - h - left, top, h - w - top))


def group_action(name: str, element: int, x: torch.Tensor) -> torch.Tensor:
    """Element ``element`` of R4 or T3 on any tensor [..., H, W]: a pure pixel permutation
    (zero fill for R4 on non-square images), no clamping — e.g. for saliency maps (P3 SI)."""
    if name == "R4":
        return quarter_turn(x, element)
    if name == "T3":
        return torch.roll(x, (element % 3) * (x.shape[-1] // 3), dims=-1)
    raise ValueError(f"group_action: {name!r} is not a group (R4, T3)")


def thin(x: torch.Tensor) -> torch.Tensor:
    """Width resized to max(1, W//2) by area average, zero-padded on both sides (left floor)."""
    h, w = x.shape[2], x.shape[3]
    wn = thin_width(w)
    y = F.adaptive_avg_pool2d(x, (h, wn))
    left = (w - wn) // 2
    return F.pad(y, (left, w - wn - left))


def bilinear_affine(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Bilinear sampling at the affine source coordinates [B, 6] (float32), zero outside."""
    b, c, h, w = x.shape
    dev = x.device
    m = matrix.to(dev, torch.float32).view(b, 6, 1, 1)
    gy, gx = torch.meshgrid(
        torch.arange(h, device=dev, dtype=torch.float32),
        torch.arange(w, device=dev, dtype=torch.float32),
        indexing="ij",
    )
    sx = (m[:, 0] * gx + m[:, 1] * gy) + m[:, 2]
    sy = (m[:, 3] * gx + m[:, 4] * gy) + m[:, 5]
    # Far-away coordinates cannot contribute; clamping keeps the int conversion defined.
    sx = sx.clamp(-2.0, w + 1.0)
    sy = sy.clamp(-2.0, h + 1.0)
    x0, y0 = torch.floor(sx), torch.floor(sy)
    fx, fy = sx - x0, sy - y0
    x0, y0 = x0.to(torch.int64), y0.to(torch.int64)
    flat = x.reshape(b, c, h * w)

    def tap(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).view(b, 1, h * w).expand(b, c, h * w)
        v = torch.gather(flat, 2, idx).view(b, c, h, w)
        return torch.where(inside.view(b, 1, h, w), v, torch.zeros((), device=dev))

    gx0, gy0 = (1.0 - fx).unsqueeze(1), (1.0 - fy).unsqueeze(1)
    fx, fy = fx.unsqueeze(1), fy.unsqueeze(1)
    top = gx0 * tap(y0, x0) + fx * tap(y0, x0 + 1)
    bottom = gx0 * tap(y0 + 1, x0) + fx * tap(y0 + 1, x0 + 1)
    return gy0 * top + fy * bottom


def _per_group(x: torch.Tensor, values: torch.Tensor, fn) -> torch.Tensor:
    """Apply ``fn(x_subset, value)`` to the images sharing each distinct integer value."""
    out = torch.empty_like(x)
    values = values.to(torch.int64).cpu()
    for v in torch.unique(values).tolist():
        sel = (values == v).nonzero().view(-1).to(x.device)
        out[sel] = fn(x[sel], v)
    return out


def apply_op(
    x: torch.Tensor,
    op: int,
    table: torch.Tensor,
    weights: torch.Tensor,
    seed: int,
    index: torch.Tensor,
) -> torch.Tensor:
    """The transformation of kernel op ``op`` on float32 x [B, C, H, W] (before clamping)."""
    b, c, h, w = x.shape
    t = table.to(x.device)
    col = lambda j: t[:, j].view(b, 1, 1, 1)  # noqa: E731 - per-image scalar column
    if op == KERNEL_OPS["identity"]:
        return x
    if op == KERNEL_OPS["grayscale"]:
        return luma(x).expand(b, c, h, w)
    if op == KERNEL_OPS["gray_blend"]:
        return col(0) * x + col(1) * luma(x)
    if op == KERNEL_OPS["hue180"]:
        return hue180(x)
    if op == KERNEL_OPS["invert"]:
        return 255.0 - x
    if op == KERNEL_OPS["intensity"]:
        return col(0) * x + col(1)
    if op == KERNEL_OPS["blur"]:
        return gaussian_blur(x, weights)
    if op == KERNEL_OPS["highpass"]:
        return _depthwise(x, torch.tensor(HIGHPASS_5X5))
    if op == KERNEL_OPS["hfilter"]:
        return _depthwise(x, torch.tensor(HFILTER_3X3))
    if op == KERNEL_OPS["vfilter"]:
        return _depthwise(x, torch.tensor(HFILTER_3X3).T)
    if op == KERNEL_OPS["noise"]:
        keys = image_keys(seed, index.to(x.device), STREAM_NOISE)
        z = standard_normal(keys, torch.arange(c * h * w, device=x.device))
        return x + col(0) * z.view(b, c, h, w)
    if op == KERNEL_OPS["saltpepper"]:
        keys = image_keys(seed, index.to(x.device), STREAM_SALTPEPPER)
        hashes = salt_pepper_hashes(keys, torch.arange(h * w, device=x.device)).view(b, 1, h, w)
        hit = (hashes >> 31) == 1
        white = ((hashes >> 30) & 1).to(torch.float32) * 255.0
        return torch.where(hit, white, x)
    if op == KERNEL_OPS["quarter_turn"]:
        return _per_group(x, t[:, 0], quarter_turn)
    if op == KERNEL_OPS["cyclic_shift"]:
        return _per_group(x, t[:, 0], lambda xs, s: torch.roll(xs, s, dims=3))
    if op == KERNEL_OPS["thin"]:
        return thin(x)
    if op == KERNEL_OPS["affine"]:
        return bilinear_affine(x, t[:, :6])
    raise ValueError(f"apply_op: unknown kernel op {op}")


def standardize_images(y: torch.Tensor, standardize) -> torch.Tensor:
    """Standardize: "none"; "per-image" (x − mean) / max(std, 1/sqrt(N)); or (mean, std) [C].

    Per-image statistics in float64 (population std, like tf.image.per_image_standardization);
    the result is (y − float32(mean)) · float32(1 / adjusted std), as in the kernels.
    """
    if standardize == "none":
        return y
    c = y.shape[1]
    if standardize == "per-image":
        n = y[0].numel()
        yd = y.double()
        mean = yd.mean(dim=(1, 2, 3), keepdim=True)
        std = ((yd - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
        inv = 1.0 / torch.clamp(std, min=1.0 / math.sqrt(n))
        return (y - mean.float()) * inv.float()
    mean, std = standardize
    inv = (1.0 / std.double()).float().to(y.device).view(1, c, 1, 1)
    return (y - mean.to(y.device).view(1, c, 1, 1)) * inv


def image_transform(
    x: torch.Tensor,
    name: str,
    params: dict,
    *,
    seed: int = 0,
    index: torch.Tensor | None = None,
    apply: torch.Tensor | None = None,
    standardize="per-image",
) -> torch.Tensor:
    """Transform → clamp [0, 255] → standardize, float32 out (DESIGN §4).

    ``standardize`` is "none", "per-image" or a pair of float32 tensors (mean [C], std [C])
    already checked by ``invfast.ops.transforms``; ``apply`` [B] bool selects the rows that
    are transformed (the others are only clamped and standardized).
    """
    b, c, h, w = x.shape
    xf = x.to(torch.float32)
    if index is None:
        index = torch.arange(b, device=x.device)
    if b == 0 or h == 0 or w == 0:
        return xf.clone()
    op, table, weights = kernel_plan(name, params, b, c, h, w)
    y = apply_op(xf, op, table, weights, seed, index)
    if apply is not None:
        y = torch.where(apply.to(x.device).view(b, 1, 1, 1), y, xf)
    y = y.clamp(0.0, 255.0)
    return standardize_images(y, standardize)

"""P1's twelve transformations on a [256, 3, 64, 64] uint8 batch → standardized float32.

Fused CPU kernel (``invfast.transforms``) vs the natural pure-PyTorch code a user would
write for the same pipeline (float → transform with conv2d / torch.rot90 / … → clamp →
per-image standardization), side by side in one run. Nothing is asserted about time.

    pytest bench/bench_transforms.py --benchmark-only      # pytest-benchmark tables
    python bench/bench_transforms.py                       # one markdown table + geomean
"""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F

from invfast.core import transforms

SHAPE = (256, 3, 64, 64)
BLUR_SIGMA = 2.0
NOISE_SIGMA = 25.0
P1 = ["grayscale", "hue180", "blur", "highpass", "hfilter", "vfilter", "invert", "noise",
      "saltpepper", "rot90", "rot180", "thin"]  # fmt: skip
PARAMS = {"blur": {"sigma": BLUR_SIGMA}, "noise": {"sigma": NOISE_SIGMA}}


# ------------------------------------------------------------------ natural PyTorch code
def standardize(y: torch.Tensor) -> torch.Tensor:
    """tf.image.per_image_standardization in plain torch."""
    n = y[0].numel()
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    std = y.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
    return (y - mean) / std.clamp_min(1.0 / math.sqrt(n))


def depthwise(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    ph, pw = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = F.pad(x, (pw, pw, ph, ph), mode="reflect")
    return F.conv2d(padded, kernel.expand(c, 1, *kernel.shape), groups=c)


def gaussian_1d(sigma: float) -> torch.Tensor:
    r = math.ceil(3 * sigma)
    k = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-(k**2) / (2 * sigma**2))
    return g / g.sum()


HIGHPASS = torch.tensor(
    [[-1, -1, -1, -1, -1], [-1, 1, 2, 1, -1], [-1, 2, 4, 2, -1], [-1, 1, 2, 1, -1],
     [-1, -1, -1, -1, -1]], dtype=torch.float32)  # fmt: skip
HFILTER = torch.tensor([[-1, 0, 1]] * 3, dtype=torch.float32)
GAUSS = gaussian_1d(BLUR_SIGMA)
GEN = torch.Generator().manual_seed(0)


def natural_transform(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "grayscale":
        g = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        return g.expand_as(x)
    if name == "hue180":  # closed form of the HSV rotation (cheaper than an HSV round trip)
        return x.amax(1, keepdim=True) + x.amin(1, keepdim=True) - x
    if name == "blur":  # separable: two depthwise convolutions
        return depthwise(depthwise(x, GAUSS.view(-1, 1)), GAUSS.view(1, -1))
    if name == "highpass":
        return depthwise(x, HIGHPASS)
    if name == "hfilter":
        return depthwise(x, HFILTER)
    if name == "vfilter":
        return depthwise(x, HFILTER.T.contiguous())
    if name == "invert":
        return 255.0 - x
    if name == "noise":
        return x + NOISE_SIGMA * torch.randn(x.shape, generator=GEN)
    if name == "saltpepper":
        b, _, h, w = x.shape
        hit = torch.rand((b, 1, h, w), generator=GEN) < 0.5
        white = (torch.rand((b, 1, h, w), generator=GEN) < 0.5).float() * 255.0
        return torch.where(hit, white, x)
    if name == "rot90":
        return torch.rot90(x, 1, dims=(2, 3))
    if name == "rot180":
        return torch.rot90(x, 2, dims=(2, 3))
    if name == "thin":
        w = x.shape[3]
        y = F.adaptive_avg_pool2d(x, (x.shape[2], w // 2))
        left = (w - w // 2) // 2
        return F.pad(y, (left, w - w // 2 - left))
    raise ValueError(name)


def natural(name: str, x_uint8: torch.Tensor) -> torch.Tensor:
    return standardize(natural_transform(name, x_uint8.float()).clamp(0.0, 255.0))


# ------------------------------------------------------------------ pytest-benchmark
def make_batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, SHAPE, dtype=torch.uint8, generator=g)


@pytest.fixture(scope="module")
def batch():
    return make_batch()


@pytest.mark.parametrize("path", ["fused-cpu", "torch"])
@pytest.mark.parametrize("name", P1)
def bench_p1_transform(benchmark, batch, name, path):
    benchmark.group = f"{name} {list(SHAPE)} uint8 → standardized f32"
    if path == "fused-cpu":
        t = transforms.get(name, **PARAMS.get(name, {}))
        benchmark(t, batch, backend="cpu")
    else:
        benchmark(natural, name, batch)


@pytest.mark.parametrize("name", ["noise", "saltpepper", "blur"])
def bench_reference_twin(benchmark, batch, name):
    """The invfast reference (same numbers as the kernel: hash RNG, exact tap order)."""
    benchmark.group = f"{name} {list(SHAPE)} uint8 → standardized f32"
    benchmark(transforms.get(name, **PARAMS.get(name, {})), batch, backend="reference")


# ------------------------------------------------------------------ one table
def _best_of(fn, repeat: int) -> float:
    fn()  # warm-up
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(repeat: int = 15) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeat", type=int, default=repeat)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = make_batch()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {list(SHAPE)} uint8,"
    )
    print("best of", args.repeat, "runs, output allocated by every call on both paths")
    print("| transform | fused CPU (ms) | PyTorch (ms) | speed-up |")
    print("|---|---:|---:|---:|")
    ratios = []
    for name in P1:
        t = transforms.get(name, **PARAMS.get(name, {}))
        fused = _best_of(lambda t=t: t(x, backend="cpu"), args.repeat)
        torch_path = _best_of(lambda name=name: natural(name, x), args.repeat)
        ratios.append(torch_path / fused)
        print(f"| {name} | {fused * 1e3:.2f} | {torch_path * 1e3:.2f} | {ratios[-1]:.1f}× |")
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"| **geometric mean** | | | **{geo:.1f}×** (min {min(ratios):.1f}×) |")


if __name__ == "__main__":
    main()

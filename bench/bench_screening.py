"""Screening (P2 §3.3): all magnitudes of a batch in one forward vs one forward per magnitude.

Same model, data, transform and result; only ``max_batch`` differs. Run with
``pytest bench/bench_screening.py --benchmark-only``. Nothing here is asserted about time.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from invfast import screening

IMAGES, BATCH, SIZE = 128, 32, 24
MAGNITUDES = [float(m) for m in range(0, 100, 10)]  # 10 magnitudes + the clean images


def _standardize(x: torch.Tensor) -> torch.Tensor:
    flat = x.float().flatten(1)
    std = flat.std(dim=1, unbiased=False, keepdim=True).clamp_min(flat.shape[1] ** -0.5)
    return ((flat - flat.mean(dim=1, keepdim=True)) / std).view(x.shape)


def _brightness(x: torch.Tensor, m: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    del ids
    return _standardize((x.float() + m[:, None, None, None]).clamp(0, 255))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * (SIZE // 4) ** 2, 10),
    ).eval()  # fmt: skip
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (IMAGES, 3, SIZE, SIZE), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (IMAGES,), generator=g)
    data = [(images[i : i + BATCH], labels[i : i + BATCH]) for i in range(0, IMAGES, BATCH)]
    return model, data


@pytest.mark.benchmark(group=f"screen {IMAGES} images 3x{SIZE}x{SIZE}, 10 magnitudes")
@pytest.mark.parametrize(
    "max_batch", [BATCH * (len(MAGNITUDES) + 1), BATCH], ids=["one-forward", "per-magnitude"]
)
def bench_screen(benchmark, setup, max_batch):
    model, data = setup
    benchmark.extra_info["images_per_call"] = IMAGES * (len(MAGNITUDES) + 1)
    benchmark(
        screening.screen, model, data, _brightness, MAGNITUDES,
        standardize_fn=_standardize, max_batch=max_batch,
    )  # fmt: skip

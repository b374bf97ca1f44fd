"""P3 metrics on P3's 5-layer MLP (1×36×36 → 9 classes, hidden 128), batch of 32 images.

σ_max: invfast's exact path (one backward pass per logit, then the matrix 2-norm; what
``jacobian_sigma_max`` picks for ≤ 64 outputs) and its power iteration with jvp/vjp, vs the
materialized Jacobian of ``torch.func.vmap(jacrev)`` + ``torch.linalg.svdvals``.
SI: integrated gradients (50 steps) over the R4 orbit with two internal batch sizes.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from invfast.learning import metrics

BATCH = 32


def p3_mlp() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(36 * 36, 128), nn.ReLU()]
    for _ in range(3):
        layers += [nn.Linear(128, 128), nn.ReLU()]
    layers.append(nn.Linear(128, 9))
    return nn.Sequential(*layers).eval()


@pytest.fixture(scope="module")
def setup():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 1, 36, 36, generator=gen)
    y = torch.randint(0, 9, (BATCH,), generator=gen)
    return p3_mlp(), x, y


def full_jacobian_sigma(model, x):
    jac = torch.func.vmap(torch.func.jacrev(lambda t: model(t[None])[0]))(x)
    return torch.linalg.svdvals(jac.flatten(2)).amax(dim=1)


@pytest.mark.benchmark(group=f"sigma_max P3 MLP [{BATCH}, 1, 36, 36]")
def bench_sigma_max_power_iteration(benchmark, setup):
    model, x, _ = setup
    benchmark.extra_info["images"] = BATCH
    benchmark(metrics.sigma_max_batch, model, x, max_iters=100, tol=1e-5)


@pytest.mark.benchmark(group=f"sigma_max P3 MLP [{BATCH}, 1, 36, 36]")
def bench_sigma_max_exact(benchmark, setup):
    model, x, _ = setup
    benchmark.extra_info["images"] = BATCH
    torch.testing.assert_close(
        metrics.sigma_max_exact_batch(model, x), full_jacobian_sigma(model, x).double()
    )
    benchmark(metrics.sigma_max_exact_batch, model, x)


@pytest.mark.benchmark(group=f"sigma_max P3 MLP [{BATCH}, 1, 36, 36]")
def bench_sigma_max_full_jacobian_svd(benchmark, setup):
    model, x, _ = setup
    benchmark.extra_info["images"] = BATCH
    benchmark(full_jacobian_sigma, model, x)


@pytest.mark.benchmark(group=f"SI R4, 50 steps, P3 MLP [{BATCH}, 1, 36, 36]")
@pytest.mark.parametrize("internal_batch_size", [256, 2048])
def bench_saliency_invariance(benchmark, setup, internal_batch_size):
    model, x, y = setup
    benchmark.extra_info["images"] = BATCH
    benchmark.pedantic(
        metrics.saliency_invariance,
        args=(model, (x, y), "R4"),
        kwargs={"internal_batch_size": internal_batch_size},
        rounds=3,
        iterations=1,
    )

"""Invariance statistics (DESIGN.md §2): fused kernels vs the best pure-PyTorch paths.

Pass 1 (neuron_max) and pass 2 (invariance_update) on a [256, 65536] float32 pair with
the 21-value τ grid and 2 groups, each beside the machine's read bandwidth over the same
bytes (torch.sum), in one run. Plus the peak-memory check of a streaming analysis: 20,000
vs 2,000 images. Run with ``pytest bench/bench_stats.py --benchmark-only``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from invfast import kernels as ops

SHAPE = (256, 65536)
GROUPS = 2


@pytest.fixture(scope="module")
def acts():
    return torch.rand(SHAPE, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def pair():
    """Post-ReLU activations of x and a correlated T(x): about 1/4 of the pairs are (0, 0)."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(SHAPE, generator=g).relu_()
    b = (a + 0.5 * torch.randn(SHAPE, generator=g)).relu_()
    acc = ops.invariance_accumulator(GROUPS, SHAPE[1])
    ops.neuron_max(a, acc["neuron_max"], b)
    group_ids = torch.arange(SHAPE[0]) % GROUPS
    return a, b, acc["neuron_max"], group_ids


def pytorch_pass2(a, b, neuron_max, group_ids, acc):
    """The fastest pure-PyTorch pass 2 we found: a and b transposed once to [K, B], so that
    one batched searchsorted gives the bins (exact: #{i : τ_i·M_k < m} for thresholds sorted
    per neuron) and every later step, h and s included, runs in that layout; counts by
    bincount, the float64 sums by scatter_add_ over flat (group, neuron, bin) indices, which
    in [K, B] order stay within one neuron's bins at a time."""
    k = a.shape[1]
    taus = acc["taus"]
    bins = taus.numel() + 1
    at, bt = a.T.contiguous(), b.T.contiguous()  # [K, B]
    thresholds = taus[None, :] * neuron_max[:, None]  # [K, T] float32, sorted per row
    j = torch.searchsorted(thresholds, torch.maximum(at, bt))  # [K, B]
    total = at + bt
    total += total == 0
    s = (bt - at).div_(total)
    h = torch.abs(s).neg_().add_(1.0)
    flat = (group_ids[None, :] * k + torch.arange(k)[:, None]).mul_(bins).add_(j).view(-1)
    acc["count"].view(-1).add_(torch.bincount(flat, minlength=acc["count"].numel()))
    acc["h_sum"].view(-1).scatter_add_(0, flat, h.view(-1).double())
    acc["s_sum"].view(-1).scatter_add_(0, flat, s.view(-1).double())


def pytorch_pass2_bincount(a, b, neuron_max, group_ids, acc):
    """The previous baseline, kept for comparison: only the pair maximum is transposed for
    searchsorted; h and s are computed in [B, K] and transposed for three bincounts."""
    k = a.shape[1]
    taus = acc["taus"]
    bins = taus.numel() + 1
    thresholds = taus[None, :] * neuron_max[:, None]  # [K, T] float32, sorted per row
    j = torch.searchsorted(thresholds, torch.maximum(a, b).T.contiguous())  # [K, B]
    total = a + b
    total += total == 0
    s = (b - a).div_(total)
    h = torch.abs(s).neg_().add_(1.0)
    flat = (group_ids[None, :] * k + torch.arange(k)[:, None]).mul_(bins).add_(j).view(-1)
    size = acc["count"].numel()
    acc["count"].view(-1).add_(torch.bincount(flat, minlength=size))
    acc["h_sum"].view(-1).add_(
        torch.bincount(flat, weights=h.T.reshape(-1).double(), minlength=size)
    )
    acc["s_sum"].view(-1).add_(
        torch.bincount(flat, weights=s.T.reshape(-1).double(), minlength=size)
    )


def fresh_acc():
    return ops.invariance_accumulator(GROUPS, SHAPE[1])


def check_baseline_is_exact(pair, baseline_pass2, columns=4096):
    """A baseline must compute what the kernel computes (on a slice, before timing)."""
    a, b, m, group_ids = pair
    a, b, m = a[:, :columns].contiguous(), b[:, :columns].contiguous(), m[:columns]
    kernel = ops.invariance_accumulator(GROUPS, columns)
    baseline = ops.invariance_accumulator(GROUPS, columns)
    ops.invariance_update(a, b, m, group_ids, kernel)
    baseline_pass2(a, b, m, group_ids, baseline)
    assert torch.equal(kernel["count"], baseline["count"])
    torch.testing.assert_close(kernel["h_sum"], baseline["h_sum"], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(kernel["s_sum"], baseline["s_sum"], rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------------ pass 1
@pytest.mark.benchmark(group="neuron_max [256, 65536] f32")
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def bench_neuron_max(benchmark, acts, backend):
    out = torch.zeros(SHAPE[1])
    benchmark.extra_info["bytes_read"] = acts.numel() * acts.element_size()
    benchmark(ops.neuron_max, acts, out, backend=backend)


@pytest.mark.benchmark(group="neuron_max [256, 65536] f32")
def bench_read_bandwidth_torch_sum(benchmark, acts):
    """The machine's read bandwidth over the same bytes (torch.sum), for the GB/s column."""
    benchmark.extra_info["bytes_read"] = acts.numel() * acts.element_size()
    benchmark(torch.sum, acts)


# ------------------------------------------------------------------------------ pass 2
PASS2 = "invariance_update [256, 65536] f32 pair, 21 τ, 2 groups"


@pytest.mark.benchmark(group=PASS2)
def bench_invariance_update_cpu(benchmark, pair):
    a, b, m, group_ids = pair
    acc = fresh_acc()
    benchmark.extra_info["bytes_read"] = 2 * a.numel() * a.element_size()
    benchmark(ops.invariance_update, a, b, m, group_ids, acc, backend="cpu")


@pytest.mark.benchmark(group=PASS2)
@pytest.mark.parametrize(
    "baseline", [pytorch_pass2, pytorch_pass2_bincount], ids=["best", "bincount"]
)
def bench_invariance_update_pytorch(benchmark, pair, baseline):
    check_baseline_is_exact(pair, baseline)
    a, b, m, group_ids = pair
    acc = fresh_acc()
    benchmark.extra_info["bytes_read"] = 2 * a.numel() * a.element_size()
    benchmark.pedantic(baseline, (a, b, m, group_ids, acc), rounds=3, warmup_rounds=1)


@pytest.mark.benchmark(group=PASS2)
def bench_invariance_update_read_bandwidth(benchmark, pair):
    """torch.sum over a and b: the bytes pass 2 must read, at the machine's read speed."""
    a, b, _, _ = pair
    benchmark.extra_info["bytes_read"] = 2 * a.numel() * a.element_size()
    benchmark(lambda: (torch.sum(a), torch.sum(b)))


# ------------------------------------------------------------- pass 2, where time goes
PARTS = "invariance_update: parts of a call"


@pytest.mark.benchmark(group=PARTS)
def bench_invariance_update_validation_sweep(benchmark, pair):
    """The input check alone: a NaN in the last element of b, so that the sweep reads all of
    a and b and the call then fails (leaving the accumulators as they were)."""
    a, b, m, group_ids = pair
    bad = b.clone()
    bad[-1, -1] = float("nan")
    acc = fresh_acc()

    def failing():
        with pytest.raises(ValueError):
            ops.invariance_update(a, bad, m, group_ids, acc, backend="cpu")

    benchmark.extra_info["bytes_read"] = 2 * a.numel() * a.element_size()
    benchmark(failing)
    assert int(acc["count"].sum()) == 0


@pytest.mark.benchmark(group=PARTS)
def bench_invariance_update_in_cache_one_thread(benchmark, pair):
    """The update with its data in cache: [256, 2048] (4 MB of input, 3 MB of accumulators)
    on one thread. extra_info projects it to the [256, 65536] call on all threads, with no
    memory stall: the compute floor of this kernel."""
    a, b, m, group_ids = pair
    columns = 2048
    a, b, m = a[:, :columns].contiguous(), b[:, :columns].contiguous(), m[:columns]
    acc = ops.invariance_accumulator(GROUPS, columns)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        benchmark(ops.invariance_update, a, b, m, group_ids, acc, backend="cpu")
    finally:
        torch.set_num_threads(threads)
    per_pair = benchmark.stats.stats.min / a.numel()
    benchmark.extra_info["ns_per_pair_per_core"] = round(per_pair * 1e9, 3)
    benchmark.extra_info["projected_ms_full_call_all_threads"] = round(
        per_pair * SHAPE[0] * SHAPE[1] / threads * 1e3, 2
    )


# ------------------------------------------------------------------------- peak memory
_STREAMING_RUN = textwrap.dedent(
    """
    import json, sys
    import torch
    from torch import nn
    from invfast.neurons.invariance import InvarianceAccumulator

    images, batch = int(sys.argv[1]), 100
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3), nn.ReLU(),
                          nn.Flatten(), nn.Linear(32 * 12 * 12, 256), nn.ReLU())

    def batches():  # generated on the fly: the dataset never lives in memory
        g = torch.Generator().manual_seed(1)
        for start in range(0, images, batch):
            x = torch.rand(batch, 3, 16, 16, generator=g)
            yield x, x.flip(-1), torch.arange(start, start + batch) % 2

    def peak_kib():
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child of a big
        # pytest process would report the parent's peak.
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

    before = peak_kib()
    analysis = InvarianceAccumulator(model, ["1", "3", "6"], groups=2, backend="cpu")
    results = analysis.run(batches)
    after = peak_kib()
    pairs = int(results["6"].pairs.sum())
    print(json.dumps({"images": pairs, "peak_rss_growth_kib": after - before, "peak_kib": after}))
    """
)


def _streaming_run(images: int) -> dict:
    # The child imports the same invfast as this process (installed or PYTHONPATH).
    import invfast

    package_parent = str(Path(invfast.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": package_parent}
    out = subprocess.run(
        [sys.executable, "-c", _STREAMING_RUN, str(images)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.benchmark(group="streaming peak memory")
def bench_streaming_peak_memory(benchmark):
    """Peak RSS of a 3-layer streaming analysis (unit neurons: K = 3136, 4608 and 256) over
    2,000 and 20,000 images, each in a fresh process; the numbers are in extra_info."""
    runs = {}

    def both():
        runs["small"] = _streaming_run(2_000)
        runs["large"] = _streaming_run(20_000)

    benchmark.pedantic(both, rounds=1, iterations=1)
    small, large = runs["small"], runs["large"]
    benchmark.extra_info.update(
        {
            "images_small": small["images"],
            "images_large": large["images"],
            "peak_rss_growth_small_mib": round(small["peak_rss_growth_kib"] / 1024, 1),
            "peak_rss_growth_large_mib": round(large["peak_rss_growth_kib"] / 1024, 1),
            "peak_rss_small_mib": round(small["peak_kib"] / 1024, 1),
            "peak_rss_large_mib": round(large["peak_kib"] / 1024, 1),
            "peak_rss_large_over_small": round(large["peak_kib"] / small["peak_kib"], 3),
        }
    )

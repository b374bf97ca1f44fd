"""Reference per-neuron statistics (DESIGN.md §2, P1 §2.2, Eq. 1 and Appendix D).

Plain tensor code that states each definition directly: the test oracle of the fused ops
in ``invfast.ops.stats``. Every float32 operation is the one the kernels perform
(csrc/common/stats.h), so bins agree exactly and sums up to float64 summation order.
"""

from __future__ import annotations

import math

import torch

# Copies of constants of csrc/common/ (the compiled modules export them; the reference
# works without them). tests/test_backends.py asserts they are equal.
ACTIVATION_OK, ACTIVATION_NONFINITE, ACTIVATION_NEGATIVE = 0, 1, 2
NEURON_MODES = ("unit", "channel-max", "channel-mean")  # in the order of their ids
ABLATE_MODES = ("inactive", "active")
MAX_TAUS = 1024
EXTRA_BINS = 1  # accumulators are [groups, neurons, len(taus) + EXTRA_BINS]


def activation_status(x: torch.Tensor) -> int:
    """OR of the status bits of ``x``: 1 if any value is NaN/±Inf, 2 if any is negative."""
    status = ACTIVATION_OK
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        status |= ACTIVATION_NONFINITE
    if bool((x[finite] < 0).any()):
        status |= ACTIVATION_NEGATIVE
    return status


def neuron_activities(x: torch.Tensor, neurons: str = "unit") -> torch.Tensor:
    """[B, K] float32 activity of every neuron of every image.

    ``unit``: every element after the batch dimension is a neuron. ``channel-max`` /
    ``channel-mean``: dimension 1 holds the channels and the rest is reduced; the mean is
    the float64 sum in storage order divided by the element count, rounded to float32.
    """
    batch = x.shape[0]
    if neurons == "unit":
        return x.reshape(batch, -1).float()
    values = x.reshape(batch, x.shape[1], -1).float()
    if neurons == "channel-max":
        return values.amax(dim=2)
    total = torch.zeros(values.shape[:2], dtype=torch.float64, device=x.device)
    for s in range(values.shape[2]):  # storage order, as every backend sums
        total += values[:, :, s].double()
    return (total / values.shape[2]).float()


def neuron_max(
    a: torch.Tensor, acc: torch.Tensor, b: torch.Tensor | None = None, neurons: str = "unit"
) -> int:
    """Pass 1: ``acc[k] = max(acc[k], max_x a[x, k], max_x b[x, k])`` over a [B, ...] batch.

    Returns the activation status bits; ``acc`` is left untouched unless they are 0.
    """
    status = activation_status(a) | (0 if b is None else activation_status(b))
    if status != ACTIVATION_OK or a.shape[0] == 0:
        return status
    batch_max = neuron_activities(a, neurons).amax(dim=0)
    if b is not None:
        batch_max = torch.maximum(batch_max, neuron_activities(b, neurons).amax(dim=0))
    acc.copy_(torch.maximum(acc.reshape(-1), batch_max).reshape(acc.shape))
    return status


def pair_statistics(
    va: torch.Tensor, vb: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pair activity m = max(a, b), invariance h (P1 Eq. 1) and specialization s (App. D).

    float32 as in csrc/common/stats.h: s = (b − a) / (b + a), h = 1 − |s|; a pair of zeros
    has h = 1 and s = 0.
    """
    total = vb + va
    s = (vb - va) / torch.where(total > 0, total, torch.ones_like(total))
    return torch.maximum(va, vb), 1.0 - s.abs(), s


def activity_bins(
    activity: torch.Tensor, neuron_max: torch.Tensor, taus: torch.Tensor
) -> torch.Tensor:
    """[B, K] int64 bin j = #{i : τ_i·M_k < m} (float32 product, strict <)."""
    thresholds = taus.float()[None, :] * neuron_max.float()[:, None]  # [K, T] float32
    bins = torch.empty(activity.shape, dtype=torch.int64, device=activity.device)
    # Rows in chunks, so the [rows, K, T] comparison stays below ~16M elements.
    step = max(1, (1 << 24) // max(1, thresholds.numel()))
    for r0 in range(0, activity.shape[0], step):
        chunk = activity[r0 : r0 + step]
        bins[r0 : r0 + step] = (thresholds[None] < chunk[:, :, None]).sum(dim=2)
    return bins


def invariance_update(
    a: torch.Tensor,
    b: torch.Tensor,
    neuron_max: torch.Tensor,
    group_ids: torch.Tensor,
    acc: dict[str, torch.Tensor],
    neurons: str = "unit",
    active_counts: torch.Tensor | None = None,
) -> int:
    """Pass 2: add 1, h and s of every pair to bin j of (group, neuron) (DESIGN §2).

    Returns the activation status bits; nothing is written unless they are 0.
    """
    status = activation_status(a) | activation_status(b)
    if status != ACTIVATION_OK or a.shape[0] == 0:
        return status
    va, vb = neuron_activities(a, neurons), neuron_activities(b, neurons)
    m, h, s = pair_statistics(va, vb)
    taus = acc["taus"]
    bins = activity_bins(m, neuron_max, taus)  # [B, K]
    num_bins = taus.numel() + EXTRA_BINS
    k = va.shape[1]
    neuron = torch.arange(k, device=a.device)
    flat = (group_ids.long()[:, None] * k + neuron[None, :]) * num_bins + bins
    flat = flat.reshape(-1)
    acc["count"].view(-1).index_add_(0, flat, torch.ones_like(flat))
    acc["h_sum"].view(-1).index_add_(0, flat, h.reshape(-1).double())
    acc["s_sum"].view(-1).index_add_(0, flat, s.reshape(-1).double())
    if active_counts is not None:
        # n(x, τ_i) = #{k : j > i} = a suffix sum of the per-image bin histogram.
        per_image = torch.zeros(a.shape[0], num_bins, dtype=torch.int64, device=a.device)
        per_image.scatter_add_(1, bins, torch.ones_like(bins))
        suffix = per_image.flip(1).cumsum(1).flip(1)
        active_counts += suffix[:, 1:]
    return status


def ablate(
    acts: torch.Tensor,
    neuron_max: torch.Tensor,
    tau: float,
    mode: str = "inactive",
    neurons: str = "unit",
) -> tuple[torch.Tensor | None, int]:
    """(acts with the inactive or active neurons of each image zeroed, status bits).

    Neuron k is active in image x when f_k(x) > τ, i.e. τ·M_k < â_k(x) in float32 (the
    rule of the bins). In channel modes a whole channel is kept or zeroed.
    """
    status = activation_status(acts)
    if status != ACTIVATION_OK:
        return None, status
    activity = neuron_activities(acts, neurons)
    threshold = torch.tensor(tau, dtype=torch.float32, device=acts.device) * neuron_max.float()
    active = threshold[None, :] < activity  # [B, K]
    keep = active if mode == "inactive" else ~active
    if neurons == "unit":
        keep = keep.reshape(acts.shape)
    else:
        keep = keep.reshape(acts.shape[0], acts.shape[1], *([1] * (acts.dim() - 2))).expand(
            acts.shape
        )
    return torch.where(keep, acts, torch.zeros((), dtype=acts.dtype, device=acts.device)), status


def goodfellow_invariance(
    a: torch.Tensor, b: torch.Tensor, percent: float, neurons: str = "unit"
) -> dict[str, torch.Tensor]:
    """Goodfellow et al. 2009 measure (P1 Appendix D), by sorting every neuron's activities.

    n = ceil(p/100 · N) of N images; the firing threshold t_k is the (n+1)-th largest
    â_k(x); x fires when â_k(x) > t_k; invariance = #{fires on x and on T(x)} / #{fires on x}.
    """
    va, vb = neuron_activities(a, neurons), neuron_activities(b, neurons)
    images = va.shape[0]
    top = max(1, math.ceil(percent / 100.0 * images))
    threshold = va.sort(dim=0, descending=True).values[top]
    fires = va > threshold
    still = fires & (vb > threshold)
    firing, still_firing = fires.sum(dim=0), still.sum(dim=0)
    invariance = still_firing.double() / firing.double()  # 0/0 → NaN: the neuron never fires
    return {
        "threshold": threshold,
        "firing": firing,
        "still_firing": still_firing,
        "invariance": invariance,
    }

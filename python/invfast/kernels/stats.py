"""Fused per-neuron statistics (DESIGN.md §2): the streaming passes of P1's analysis.

Pass 1 (``neuron_max``) finds M_k; pass 2 (``invariance_update``) bins every pair
(x, T(x)) by j = #{i : τ_i·M_k < max(â_k(x), â_k(T(x)))} and adds 1, h and s to that bin;
``invariance_finalize`` turns the bins into I_k(τ), S_k(τ) and #A_k(τ) for the whole
grid. ``ablate`` and ``goodfellow_invariance`` are the checks of P1 Appendix D.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

from invfast.kernels import _checks, backends, reference
from invfast.kernels import _launch as _kernels
from invfast.kernels.reference.stats import (
    ABLATE_MODES,
    ACTIVATION_NEGATIVE,
    ACTIVATION_NONFINITE,
    EXTRA_BINS,
    MAX_TAUS,
    NEURON_MODES,
)

#: The τ grid of P1 (0, 0.05, …, 1.0), float32 as every backend compares it.
DEFAULT_TAUS = tuple(i / 20 for i in range(21))
ACCUMULATOR_KEYS = ("count", "h_sum", "s_sum", "taus", "neuron_max")


def raise_for_activation_status(op: str, status: int, names: str = "a") -> None:
    """Turn kernel status bits into the documented ValueError."""
    if status & ACTIVATION_NONFINITE:
        raise ValueError(f"{op}: activations {names} contain NaN or Inf")
    if status & ACTIVATION_NEGATIVE:
        raise ValueError(
            f"{op}: activations {names} must be non-negative (apply relu or abs first, "
            "e.g. --activation relu)"
        )


def check_activation_pair(
    op: str, a: object, b: object | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate a [B, ...] activation batch and its optional transformed twin."""
    a = _checks.tensor(op, "a", a)
    _checks.dtype(op, "a", a, _checks.ACTIVATION_DTYPES)
    _checks.min_ndim(op, "a", a, 2, "[B, K] or [B, C, H, W]")
    if b is not None:
        b = _checks.tensor(op, "b", b)
        _checks.same_device(op, "b", b, a.device)
        _checks.same_shape(op, "b", b, a.shape, "a")
        if b.dtype != a.dtype:
            raise ValueError(f"{op}: b has dtype {b.dtype}, expected {a.dtype} like a")
    return a, b


def neuron_layout(op: str, a: torch.Tensor, neurons: str) -> tuple[int, int]:
    """(channels K, spatial S) of a [B, ...] batch viewed as [B, K, S]."""
    if neurons not in NEURON_MODES:
        raise ValueError(f"{op}: neurons must be one of {', '.join(NEURON_MODES)}, got {neurons!r}")
    per_image = int(torch.Size(a.shape[1:]).numel())
    if neurons == "unit":
        return per_image, 1
    channels = a.shape[1]
    if channels == 0 or per_image == 0:
        raise ValueError(f"{op}: {neurons} neurons need a non-empty [B, C, ...] batch")
    return channels, per_image // channels


def num_neurons(shape: Sequence[int], neurons: str = "unit") -> int:
    """K of a layer whose activations have ``shape`` ([B, ...]) for a neuron mode."""
    if neurons not in NEURON_MODES:
        raise ValueError(f"neurons must be one of {', '.join(NEURON_MODES)}, got {neurons!r}")
    if neurons == "unit":
        return int(torch.Size(shape[1:]).numel())
    return int(shape[1])


def neuron_max(
    a: torch.Tensor,
    out: torch.Tensor,
    b: torch.Tensor | None = None,
    *,
    neurons: str = "unit",
    backend: str | None = None,
) -> torch.Tensor:
    """Pass 1 (DESIGN §2, P1 Eq. 1): ``out[k] = max(out[k], max_x â_k(x), max_x â_k(T(x)))``.

    ``a`` (and ``b``, the activations of the transformed images) is [B, K] or
    [B, C, H, W] float32/float16/bfloat16. ``neurons``: ``"unit"`` (every element after
    the batch dimension is a neuron), ``"channel-max"`` or ``"channel-mean"`` (a
    neuron per channel, reduced over the spatial positions inside the kernel's read).
    ``out`` is a contiguous float32 accumulator with K elements; start it at zeros. The
    max is exact on every backend. NaN, Inf or negative activations raise ``ValueError``
    and leave ``out`` unchanged. Returns ``out``.
    """
    op = "neuron_max"
    a, b = check_activation_pair(op, a, b)
    channels, spatial = neuron_layout(op, a, neurons)
    out = _checks.tensor(op, "out", out)
    _checks.same_device(op, "out", out, a.device)
    _checks.writable(op, "out", out, torch.float32, channels)
    which = backends.resolve(backend, a.device, op)
    a, b = _checks.readable(a), None if b is None else _checks.readable(b)
    rows = a.shape[0]

    if which == "reference":
        raise_for_activation_status(op, reference.neuron_max(a, out, b, neurons), "a/b")
        return out
    # The kernels update a scratch copy, so an error leaves `out` as it was.
    scratch = out.clone()
    status = _kernels.launch(
        which, "neuron_max", a.device, a=a, b=b, rows=rows, channels=channels, spatial=spatial,
        mode=_kernels.compiled(which).NEURON_MODES[neurons], dtype=_kernels.dtype_name(a),
        acc=scratch,
    )  # fmt: skip
    raise_for_activation_status(op, status, "a/b")
    out.copy_(scratch)
    return out


# ------------------------------------------------------------------- pass 2 accumulator
def check_taus(op: str, taus: object) -> torch.Tensor:
    """A 1-D float32 CPU copy of a τ grid: finite, >= 0, non-decreasing, 1..1024 values."""
    if isinstance(taus, torch.Tensor):
        grid = taus.detach().to("cpu", torch.float32).reshape(-1)
    else:
        try:
            grid = torch.tensor(list(taus), dtype=torch.float32)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{op}: taus must be a sequence of numbers or a tensor") from exc
    if not 1 <= grid.numel() <= MAX_TAUS:
        raise ValueError(f"{op}: taus must hold 1 to {MAX_TAUS} thresholds, got {grid.numel()}")
    if not bool(torch.isfinite(grid).all()) or bool((grid < 0).any()):
        raise ValueError(f"{op}: taus must be finite and >= 0")
    if bool((grid[1:] < grid[:-1]).any()):
        raise ValueError(f"{op}: taus must be sorted in ascending order")
    return grid


def invariance_accumulator(
    groups: int,
    neurons: int,
    taus: Iterable[float] | torch.Tensor = DEFAULT_TAUS,
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """Zeroed state of both passes for one layer (DESIGN §2), plain tensors only.

    ``count`` int64, ``h_sum`` and ``s_sum`` float64, each [G, K, len(taus) + 1] (bin j
    of group g and neuron k); ``taus`` float32 [T]; ``neuron_max`` float32 [K] (pass 1's
    M_k, filled by ``neuron_max(a, acc["neuron_max"], b)``). Shards merge with
    ``merge_accumulators`` (or an all_reduce: MAX of ``neuron_max``, SUM of the rest).
    """
    op = "invariance_accumulator"
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{op}: groups must be an int >= 1, got {groups!r}")
    if isinstance(neurons, bool) or not isinstance(neurons, int) or neurons < 1:
        raise ValueError(f"{op}: neurons must be an int >= 1 (the neuron count K), got {neurons!r}")
    grid = check_taus(op, taus).to(device)
    shape = (groups, neurons, grid.numel() + EXTRA_BINS)
    return {
        "count": torch.zeros(shape, dtype=torch.int64, device=grid.device),
        "h_sum": torch.zeros(shape, dtype=torch.float64, device=grid.device),
        "s_sum": torch.zeros(shape, dtype=torch.float64, device=grid.device),
        "taus": grid,
        "neuron_max": torch.zeros(neurons, dtype=torch.float32, device=grid.device),
    }


def check_accumulator(op: str, acc: object, device: torch.device | None) -> tuple[int, int, int]:
    """(G, K, T) of a well-formed accumulator dict on ``device`` (any device when None)."""
    if not isinstance(acc, dict):
        raise TypeError(f"{op}: acc must be a dict from invariance_accumulator")
    for key in ("count", "h_sum", "s_sum", "taus"):
        if not isinstance(acc.get(key), torch.Tensor):
            raise ValueError(f"{op}: acc is missing the tensor {key!r}")
    count, taus = acc["count"], acc["taus"]
    if count.dim() != 3:
        raise ValueError(f"{op}: acc['count'] must be [G, K, T + 1], got {tuple(count.shape)}")
    groups, channels, bins = count.shape
    if taus.dim() != 1 or taus.numel() + EXTRA_BINS != bins or taus.dtype != torch.float32:
        raise ValueError(
            f"{op}: acc['taus'] must be float32 [{bins - EXTRA_BINS}] like acc['count']"
        )
    device = count.device if device is None else device
    for key, dtype in (("count", torch.int64), ("h_sum", torch.float64), ("s_sum", torch.float64)):
        t = acc[key]
        if t.dtype != dtype:
            raise ValueError(f"{op}: acc[{key!r}] must have dtype {dtype}, got {t.dtype}")
        if t.shape != count.shape:
            raise ValueError(
                f"{op}: acc[{key!r}] has shape {tuple(t.shape)}, expected "
                f"{tuple(count.shape)} like acc['count']"
            )
        if t.device != device:
            raise ValueError(f"{op}: acc[{key!r}] is on {t.device}, expected {device}")
        if not t.is_contiguous():
            raise ValueError(f"{op}: acc[{key!r}] must be contiguous (it is written in place)")
    if taus.device != device:
        raise ValueError(f"{op}: acc['taus'] is on {taus.device}, expected {device}")
    if "neuron_max" in acc:
        nm = acc["neuron_max"]
        if not isinstance(nm, torch.Tensor) or nm.dtype != torch.float32 or nm.numel() != channels:
            raise ValueError(f"{op}: acc['neuron_max'] must be float32 [{channels}]")
    return groups, channels, bins - EXTRA_BINS


def _check_neuron_max(op: str, neuron_max: object, channels: int, device) -> torch.Tensor:
    nm = _checks.tensor(op, "neuron_max", neuron_max)
    if nm.dtype != torch.float32:
        raise ValueError(f"{op}: neuron_max must have dtype float32, got {nm.dtype}")
    if nm.numel() != channels:
        raise ValueError(f"{op}: neuron_max must have {channels} elements (K), got {nm.numel()}")
    _checks.same_device(op, "neuron_max", nm, device)
    nm = _checks.readable(nm).reshape(-1)
    if not bool(torch.isfinite(nm).all()) or bool((nm < 0).any()):
        raise ValueError(f"{op}: neuron_max must be finite and >= 0 (run pass 1 first)")
    return nm


def invariance_update(
    a: torch.Tensor,
    b: torch.Tensor,
    neuron_max: torch.Tensor,
    group_ids: torch.Tensor,
    acc: dict[str, torch.Tensor],
    *,
    neurons: str = "unit",
    active_counts: torch.Tensor | None = None,
    backend: str | None = None,
) -> dict[str, torch.Tensor]:
    """Pass 2 (DESIGN §2, P1 §2.2): add every pair (x, T(x)) of a batch to ``acc``.

    For image x of group g = ``group_ids[x]`` and neuron k, with m = max(â_k(x),
    â_k(T(x))) and j = #{i : τ_i·M_k < m} (float32 product, strict <), adds 1,
    h = 1 − |â(Tx) − â(x)| / (â(Tx) + â(x)) (P1 Eq. 1) and s = (â(Tx) − â(x)) /
    (â(Tx) + â(x)) (P1 App. D) to bin j of (g, k). A pair of zeros lands in bin 0, which no
    A_k(τ ≥ 0) contains, with h = 1 and s = 0. h and s are evaluated in float32 and summed in
    float64, in row order per (g, k, j) on the CPU and CUDA kernels (so those two agree
    bit for bit, and with the reference to float64 rounding).

    ``a``, ``b``: [B, ...] float32/float16/bfloat16 activations of x and T(x) (same shape,
    dtype, device); ``neuron_max``: float32 [K] from pass 1; ``group_ids``: integer [B]
    in [0, G); ``acc``: from ``invariance_accumulator``; ``active_counts``: optional int64
    [B, len(taus)] to which n(x, τ_i) = #{k : x ∈ A_k(τ_i)} is added. Bad values raise
    ``ValueError`` and leave ``acc`` and ``active_counts`` unchanged. Returns ``acc``.
    """
    op = "invariance_update"
    a, b = check_activation_pair(op, a, b)
    if b is None:
        raise TypeError(f"{op}: b (the activations of T(x)) is required")
    channels, spatial = neuron_layout(op, a, neurons)
    device = a.device
    groups, acc_channels, num_taus = check_accumulator(op, acc, device)
    if acc_channels != channels:
        raise ValueError(
            f"{op}: acc is for K={acc_channels} neurons, but a has K={channels} "
            f"({neurons} neurons of shape {tuple(a.shape[1:])})"
        )
    nm = _check_neuron_max(op, neuron_max, channels, device)
    rows = a.shape[0]
    ids = _checks.tensor(op, "group_ids", group_ids)
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError(f"{op}: group_ids must be an integer tensor, got {ids.dtype}")
    if ids.shape != (rows,):
        raise ValueError(f"{op}: group_ids must have shape ({rows},), got {tuple(ids.shape)}")
    _checks.same_device(op, "group_ids", ids, device)
    ids = ids.detach().to(torch.int64).contiguous()
    if rows and (int(ids.min()) < 0 or int(ids.max()) >= groups):
        raise ValueError(f"{op}: group_ids must lie in [0, {groups}) (G of acc)")
    if active_counts is not None:
        active_counts = _checks.tensor(op, "active_counts", active_counts)
        _checks.same_device(op, "active_counts", active_counts, device)
        _checks.writable(op, "active_counts", active_counts, torch.int64, rows * num_taus)
        if active_counts.shape != (rows, num_taus):
            raise ValueError(
                f"{op}: active_counts must have shape ({rows}, {num_taus}), got "
                f"{tuple(active_counts.shape)}"
            )
    taus = acc["taus"]
    check_taus(op, taus)
    which = backends.resolve(backend, device, op)
    if rows == 0:
        return acc
    a, b = _checks.readable(a), _checks.readable(b)

    if which == "reference":
        status = reference.invariance_update(a, b, nm, ids, acc, neurons, active_counts)
        raise_for_activation_status(op, status, "a/b")
        return acc
    status = _kernels.launch(
        which, "invariance_update", device, a=a, b=b, rows=rows, channels=channels,
        spatial=spatial, mode=_kernels.compiled(which).NEURON_MODES[neurons],
        dtype=_kernels.dtype_name(a), neuron_max=nm, group_ids=ids, groups=groups,
        taus=taus.contiguous(), num_taus=num_taus, count=acc["count"], h_sum=acc["h_sum"],
        s_sum=acc["s_sum"], active_counts=active_counts,
    )  # fmt: skip
    raise_for_activation_status(op, status, "a/b")
    return acc


def invariance_finalize(acc: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """I_k(τ), S_k(τ), #A_k(τ) and silent-neuron counts for the whole τ grid.

    Suffix sums over bins j > i give #A_k(τ_i), Σh and Σs (DESIGN §2). Returns ``I`` and
    ``S`` float64 [G, T, K] (NaN where #A_k(τ) = 0), ``active`` int64 [G, T, K]
    (#A_k(τ)), ``silent`` int64 [G, T] (neurons with empty A_k(τ)), ``pairs`` int64 [G]
    (pairs seen per group) and ``taus``. Plain tensor code on the accumulator's device.
    """
    op = "invariance_finalize"
    check_accumulator(op, acc, None)

    def above(t: torch.Tensor) -> torch.Tensor:  # [G, K, T + 1] → [G, T, K]: Σ_{j > i}
        suffix = t.flip(2).cumsum(2).flip(2)
        return suffix[:, :, 1:].transpose(1, 2).contiguous()

    active = above(acc["count"])
    h_above, s_above = above(acc["h_sum"]), above(acc["s_sum"])
    nan = torch.full((), float("nan"), dtype=torch.float64, device=active.device)
    safe = active.clamp(min=1).double()
    return {
        "I": torch.where(active > 0, h_above / safe, nan),
        "S": torch.where(active > 0, s_above / safe, nan),
        "active": active,
        "silent": (active == 0).sum(dim=2),
        "pairs": acc["count"][:, 0, :].sum(dim=1),
        "taus": acc["taus"].clone(),
    }


def merge_accumulators(accs: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One accumulator holding several shards: sums of ``count``/``h_sum``/``s_sum`` and
    the max of ``neuron_max`` (what an all_reduce SUM / MAX across ranks computes)."""
    op = "merge_accumulators"
    accs = list(accs)
    if not accs:
        raise ValueError(f"{op}: expected at least one accumulator")
    shape = check_accumulator(op, accs[0], None)
    first = accs[0]
    for i, other in enumerate(accs[1:], start=1):
        if check_accumulator(op, other, first["count"].device) != shape:
            raise ValueError(f"{op}: accumulator {i} has a different shape [G, K, T + 1]")
        if not torch.equal(other["taus"], first["taus"]):
            raise ValueError(f"{op}: accumulator {i} has a different τ grid")
        if ("neuron_max" in other) != ("neuron_max" in first):
            raise ValueError(f"{op}: accumulator {i} differs in having 'neuron_max'")
    merged = {key: first[key].clone() for key in first if key in ACCUMULATOR_KEYS}
    for other in accs[1:]:
        for key in ("count", "h_sum", "s_sum"):
            merged[key] += other[key]
        if "neuron_max" in merged:
            torch.maximum(merged["neuron_max"], other["neuron_max"], out=merged["neuron_max"])
    return merged


# ---------------------------------------------------------------------------- ablation
def ablate(
    acts: torch.Tensor,
    neuron_max: torch.Tensor,
    tau: float,
    mode: str = "inactive",
    out: torch.Tensor | None = None,
    *,
    neurons: str = "unit",
    backend: str | None = None,
) -> torch.Tensor:
    """Zero the inactive (``mode="inactive"``) or active (``"active"``) neurons of each image.

    Neuron k is active in image x when f_k(x) = â_k(x) / M_k > τ, evaluated as
    τ·M_k < â_k(x) in float32 (the tie rule of the bins) — P1 Appendix D, Fig. 7. With
    channel neurons a whole channel is kept or zeroed. ``out=None`` returns a new tensor;
    ``out=acts`` ablates in place. NaN/Inf/negative activations raise ``ValueError``
    with ``out`` untouched.
    """
    op = "ablate"
    acts, _ = check_activation_pair(op, acts, None)
    if mode not in ABLATE_MODES:
        raise ValueError(f"{op}: mode must be 'inactive' or 'active', got {mode!r}")
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau == tau:
        raise ValueError(f"{op}: tau must be a number, got {tau!r}")
    channels, spatial = neuron_layout(op, acts, neurons)
    nm = _check_neuron_max(op, neuron_max, channels, acts.device)
    if out is None:
        out = torch.empty_like(acts, memory_format=torch.contiguous_format)
    else:
        out = _checks.tensor(op, "out", out)
        _checks.same_device(op, "out", out, acts.device)
        _checks.same_shape(op, "out", out, acts.shape, "acts")
        _checks.writable(op, "out", out, acts.dtype, acts.numel())
    which = backends.resolve(backend, acts.device, op)
    source = _checks.readable(acts)
    rows = acts.shape[0]
    if rows == 0:
        return out
    if which == "reference":
        result, status = reference.ablate(source, nm, float(tau), mode, neurons)
        raise_for_activation_status(op, status, "acts")
        out.copy_(result)
        return out
    codes = _kernels.compiled(which)
    status = _kernels.launch(
        which, "ablate", acts.device, acts=source, out=out, rows=rows, channels=channels,
        spatial=spatial, mode=codes.NEURON_MODES[neurons], dtype=_kernels.dtype_name(source),
        neuron_max=nm, tau=float(tau), ablate_mode=codes.ABLATE_MODES[mode],
    )  # fmt: skip
    raise_for_activation_status(op, status, "acts")
    return out


# ---------------------------------------------------------- Goodfellow et al. 2009
#: Firing thresholds of P1 Appendix D (top-p% of each neuron's activity).
GOODFELLOW_PERCENTS = (0.5, 1.0, 5.0, 10.0, 20.0, 40.0)


def goodfellow_invariance(
    a: torch.Tensor,
    b: torch.Tensor,
    percents: Iterable[float] = GOODFELLOW_PERCENTS,
    *,
    neurons: str = "unit",
) -> dict[str, torch.Tensor]:
    """Goodfellow et al. 2009 invariance as evaluated in P1 Appendix D (Fig. 8), exactly.

    For N images and each p in ``percents``: n = ceil(p/100 · N); neuron k's firing
    threshold t_k is the (n+1)-th largest â_k(x) over the untransformed images; x fires
    when â_k(x) > t_k (n images, fewer when activities tie at t_k); the invariance is the
    fraction of the firing images whose transform still fires: #{â_k(x) > t_k and
    â_k(T(x)) > t_k} / #{â_k(x) > t_k} (NaN when nothing fires). Exact selection
    (``torch.kthvalue``) over all N × K activities, so ``a`` and ``b`` ([N, ...], every
    image of the evaluation set) must fit in memory; ``invfast.invariance.GoodfellowStreaming``
    is the streaming approximation for sets that do not. Returns ``threshold`` float32,
    ``firing`` and ``still_firing`` int64, ``invariance`` float64, each [P, K], and
    ``percents`` float64 [P].
    """
    op = "goodfellow_invariance"
    a, b = check_activation_pair(op, a, b)
    if b is None:
        raise TypeError(f"{op}: b (the activations of T(x)) is required")
    neuron_layout(op, a, neurons)
    raise_for_activation_status(
        op, reference.activation_status(a) | reference.activation_status(b), "a/b"
    )
    grid = [float(p) for p in percents]
    images = a.shape[0]
    if not grid or any(not 0.0 < p < 100.0 for p in grid):
        raise ValueError(f"{op}: percents must be non-empty, each in (0, 100), got {grid}")
    va = reference.neuron_activities(a.detach(), neurons)
    vb = reference.neuron_activities(b.detach(), neurons)
    thresholds, firing, still = [], [], []
    for p in grid:
        top = max(1, math.ceil(p / 100.0 * images))
        if top >= images:
            raise ValueError(
                f"{op}: the top {p}% of {images} images is every image; need more images"
            )
        # The (n+1)-th largest is the (N − n)-th smallest.
        t = torch.kthvalue(va, images - top, dim=0).values
        fires = va > t
        thresholds.append(t)
        firing.append(fires.sum(dim=0))
        still.append((fires & (vb > t)).sum(dim=0))
    firing_t, still_t = torch.stack(firing), torch.stack(still)
    return {
        "threshold": torch.stack(thresholds),
        "firing": firing_t,
        "still_firing": still_t,
        "invariance": still_t.double() / firing_t.double(),
        "percents": torch.tensor(grid, dtype=torch.float64),
    }

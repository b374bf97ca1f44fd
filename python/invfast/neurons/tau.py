"""The τ grid and P1's choice of τ (P1 Appendix D; docs/invariance.md).

τ is the fraction of a neuron's maximum activity M_k above which the neuron counts as
active; the analysis measures every τ of a grid at once. P1 selects the highest τ whose
ablation of the inactive neurons costs at most one point of accuracy.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

from invfast import kernels as ops

#: P1 Appendix D: the highest τ whose inactive-ablation costs at most one accuracy point.
TAU_TOLERANCE = 0.01


def parse_taus(spec: str | Sequence[float]) -> list[float]:
    """``START:STOP:STEP`` (STOP included) or a comma list → ascending τ grid."""
    if not isinstance(spec, str):
        values = [float(v) for v in spec]
    elif ":" in spec:
        parts = spec.split(":")
        try:
            start, stop, step = (float(p) for p in parts)
        except ValueError:
            raise ValueError(f"--taus expects START:STOP:STEP, got {spec!r}") from None
        if not (step > 0 and stop >= start):
            raise ValueError(f"--taus {spec!r}: need STEP > 0 and STOP >= START")
        count = math.floor((stop - start) / step + 1e-9) + 1
        values = [round(start + i * step, 10) for i in range(count)]
    else:
        try:
            values = [float(v) for v in spec.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--taus expects numbers or START:STOP:STEP, got {spec!r}") from None
    if not values:
        raise ValueError("--taus is empty")
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"--taus must be finite and >= 0, got {values}")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError(f"--taus must be strictly ascending, got {values}")
    if len(values) > ops.stats.MAX_TAUS:
        raise ValueError(f"--taus has {len(values)} values; at most {ops.stats.MAX_TAUS}")
    return values


def select_tau(
    taus: Sequence[float],
    accuracy_at: Callable[[int], float],
    baseline: float,
    tolerance: float = TAU_TOLERANCE,
    known: dict[int, float] | None = None,
) -> tuple[int | None, dict[int, float]]:
    """Index of the highest τ whose inactive-ablation accuracy is ≥ baseline − tolerance.

    Ablating the inactive neurons removes more of them as τ grows, so the accuracy loss
    is non-decreasing in τ and a binary search finds the answer in ⌈log2 T⌉ + 1
    evaluations. ``known`` accuracies (e.g. a full curve) are used instead of calling
    ``accuracy_at``; with the full curve the answer is exact even without monotonicity.
    Returns (index or None when no τ qualifies, every accuracy evaluated by index).
    """
    seen = dict(known or {})

    def ok(i: int) -> bool:
        if i not in seen:
            seen[i] = float(accuracy_at(i))
        return seen[i] >= baseline - tolerance - 1e-12

    if known is not None and len(seen) == len(taus):
        passing = [i for i in range(len(taus)) if ok(i)]
        return (passing[-1] if passing else None), seen
    lo, hi = 0, len(taus) - 1
    if not ok(lo):
        return None, seen
    while lo < hi:  # invariant: ok(lo); the answer is in [lo, hi]
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo, seen

"""P1's across-category training paradigm (P1 §2.1, Appendix B; docs/training.md).

Categories are shuffled by the seed and the first N are *seen-transformed*: each of their
training images is transformed with probability 0.5 (a deterministic draw per (seed,
epoch, image id)); the other categories are never transformed in training. Evaluation
reports clean accuracy, *within-category* accuracy (transformed test images of
seen-transformed categories), *across-category* accuracy (transformed test images of the
others) and the 2×2 seen/unseen confusion of P1 Fig. 6.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def parse_seen_transformed(value: str | int | float, num_classes: int) -> int:
    """How many categories are seen transformed: ``all``, a count ``N`` (0..C) or a
    fraction with a decimal point (``0.25`` → round(0.25·C))."""
    text = str(value).strip().lower()
    if text == "all":
        return num_classes
    try:
        if isinstance(value, float) or "." in text or "e" in text:
            fraction = float(text)
            if not 0.0 <= fraction <= 1.0:
                raise ValueError
            return round(fraction * num_classes)
        count = int(text)
    except ValueError:
        raise ValueError(
            f"seen_transformed must be 'all', a count 0..{num_classes} or a fraction in "
            f"[0, 1], got {value!r}"
        ) from None
    if not 0 <= count <= num_classes:
        raise ValueError(f"seen_transformed must be in 0..{num_classes} (classes), got {count}")
    return count


def class_order(num_classes: int, seed: int) -> list[int]:
    """The categories shuffled by the seed; the first N are seen transformed, so the
    seen-transformed sets are nested as N grows (P1 Appendix B)."""
    g = torch.Generator().manual_seed(seed % (2**63))
    return torch.randperm(num_classes, generator=g).tolist()


def seen_transformed_classes(num_classes: int, count: int, seed: int) -> list[int]:
    """The ``count`` seen-transformed categories for this seed, sorted."""
    return sorted(class_order(num_classes, seed)[:count])


_MASK32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xor-shift-multiply); int64 tensors, values < 2^32. The
    multiplier is below 2^31 so no product overflows int64."""
    x = x & _MASK32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    return (x >> 16) ^ x


def uniform_draw(seed: int, epoch: int, ids: torch.Tensor) -> torch.Tensor:
    """A uniform number in [0, 1) per image, a pure function of (seed, epoch, image id):
    independent of batch composition, order, process count and device."""
    key = _mix32(torch.tensor((seed ^ 0x9E3779B9) & _MASK32, dtype=torch.int64))
    key = _mix32(key ^ ((epoch ^ 0x85EBCA6B) & _MASK32)).to(ids.device)
    ids = ids.to(torch.int64)
    low = _mix32((ids ^ 0x27D4EB2F) & _MASK32)
    high = _mix32(((ids >> 32) ^ 0x165667B1) & _MASK32)
    h = _mix32(key ^ low ^ (high * 3 & _MASK32))
    return h.to(torch.float64) / 2.0**32


def paradigm_mask(
    labels: torch.Tensor,
    ids: torch.Tensor,
    seen: torch.Tensor,
    seed: int,
    epoch: int,
    probability: float = 0.5,
) -> torch.Tensor:
    """The ``apply`` mask of a training batch: images of seen-transformed categories
    (``seen`` is a bool [C] table), each with probability ``probability``."""
    draw = uniform_draw(seed, epoch, ids) < probability
    return seen.to(labels.device)[labels] & draw.to(labels.device)


def transform_seed(seed: int, epoch: int) -> int:
    """Seed of the transform RNG in training epoch ``epoch`` (random transforms such as
    noise differ from epoch to epoch). Evaluation uses ``seed`` itself."""
    key = _mix32(torch.tensor((seed & _MASK32) ^ 0x2545F491, dtype=torch.int64))
    return int(_mix32(key ^ ((epoch + 1) & _MASK32)))


# ----------------------------------------------------------------------------------------
# Metrics


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """int64 [C, C]: row = true class, column = predicted class."""
    flat = labels.to(torch.int64) * num_classes + predictions.to(torch.int64)
    counts = torch.bincount(flat.cpu(), minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator) / float(denominator) if denominator > 0 else None


def paradigm_metrics(clean: torch.Tensor, transformed: torch.Tensor, seen: Sequence[int]) -> dict:
    """P1's numbers from confusion matrices of the clean and the transformed test images.

    Accuracies are fractions in [0, 1]; one over an empty set (e.g. within-category with
    no seen-transformed category) is None. ``seen_unseen`` is P1 Fig. 6: transformed
    test images counted by (true group, predicted group), with each row's percentages;
    quadrant I = unseen predicted as seen, II = seen as seen, III = seen as unseen,
    IV = unseen as unseen.
    """
    num_classes = clean.shape[0]
    is_seen = torch.zeros(num_classes, dtype=torch.bool)
    is_seen[list(seen)] = True
    clean, transformed = clean.to(torch.float64), transformed.to(torch.float64)
    diag_clean, diag_tr = clean.diagonal(), transformed.diagonal()
    group_counts = [[0.0, 0.0], [0.0, 0.0]]  # [true seen/unseen][predicted seen/unseen]
    for row, true_mask in enumerate((is_seen, ~is_seen)):
        for col, pred_mask in enumerate((is_seen, ~is_seen)):
            group_counts[row][col] = float(transformed[true_mask][:, pred_mask].sum())
    percent = [
        [100.0 * c / sum(row) if sum(row) > 0 else None for c in row] for row in group_counts
    ]
    return {
        "clean_accuracy": _ratio(diag_clean.sum(), clean.sum()),
        "transformed_accuracy": _ratio(diag_tr.sum(), transformed.sum()),
        "within_accuracy": _ratio(diag_tr[is_seen].sum(), transformed[is_seen].sum()),
        "across_accuracy": _ratio(diag_tr[~is_seen].sum(), transformed[~is_seen].sum()),
        "clean_seen_accuracy": _ratio(diag_clean[is_seen].sum(), clean[is_seen].sum()),
        "clean_unseen_accuracy": _ratio(diag_clean[~is_seen].sum(), clean[~is_seen].sum()),
        "images": int(clean.sum()),
        "seen_unseen": {
            "rows": "true group (seen, unseen)",
            "columns": "predicted group (seen, unseen)",
            "counts": [[int(c) for c in row] for row in group_counts],
            "percent": percent,
            "quadrants": {
                "I_unseen_as_seen": percent[1][0],
                "II_seen_as_seen": percent[0][0],
                "III_seen_as_unseen": percent[0][1],
                "IV_unseen_as_unseen": percent[1][1],
            },
        },
    }


def format_confusion(test: Mapping) -> str:
    """P1 Fig. 6 as text: transformed test images by true and predicted group."""
    pct = test["seen_unseen"]["percent"]

    def cell(v: float | None) -> str:
        return "   -  " if v is None else f"{v:6.1f}"

    return "\n".join(
        [
            "transformed test images, % of each true group (P1 Fig. 6):",
            "                 predicted seen  predicted unseen",
            f"  true seen        {cell(pct[0][0])} (II)    {cell(pct[0][1])} (III)",
            f"  true unseen      {cell(pct[1][0])} (I)     {cell(pct[1][1])} (IV)",
        ]
    )

"""Reliability under distribution drift (P3 §4.3, Fig. 4; docs/p3.md).

D(β) = (1 − β)·D1 + β·D2, image by image: the i-th image of D1 is blended with the i-th
image of D2 in raw pixel space (before ``preprocess``) and keeps D1's label. For every β
the model's DI (and LI) over the group orbit and its accuracy on the transformed data are
measured, and the accuracy ratio Acc(D(β)) / Acc(D1) is reported, Acc(D1) being the β = 0
accuracy of the same pass. Every β is computed from one read of both datasets; memory
depends on the batch size only. Pairs stop when the shorter dataset ends.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from invfast.core import groups as groups_
from invfast.core.data.batches import iter_batches
from invfast.core.runtime.device import model_device
from invfast.learning.metrics import (
    Preprocess,
    _convention,
    _evaluating,
    _orbit_logits,
    _OrbitMean,
    _prepare,
    kl_error,
    logit_error,
)

__all__ = ["DriftResult", "drift_curve", "mix_images", "paired_batches", "parse_betas"]


def parse_betas(spec: str | Sequence[float]) -> list[float]:
    """``"start:stop:step"`` (stop included, e.g. ``"0:1:0.1"``), ``"0,0.5,1"`` or a list,
    every β in [0, 1]."""
    if isinstance(spec, str):
        try:
            if ":" in spec:
                start, stop, step = (float(p) for p in spec.split(":"))
                if not step > 0 or stop < start:
                    raise ValueError
                count = math.floor((stop - start) / step + 1e-9)
                values = [round(start + i * step, 12) for i in range(count + 1)]
            else:
                values = [float(p) for p in spec.split(",") if p.strip()]
        except ValueError:
            raise ValueError(
                f"betas must be 'start:stop:step' or a comma list, got {spec!r}"
            ) from None
    else:
        values = [float(b) for b in spec]
    if not values or any(not 0.0 <= b <= 1.0 for b in values):
        raise ValueError(f"betas must be a non-empty list of values in [0, 1], got {spec!r}")
    return values


def mix_images(x1: torch.Tensor, x2: torch.Tensor, beta: float) -> torch.Tensor:
    """(1 − β)·x1 + β·x2 in float32 (uint8 inputs stay in their [0, 255] range)."""
    if x1.shape != x2.shape:
        raise ValueError(
            f"drift: images of both datasets must have the same shape, got "
            f"{tuple(x1.shape[1:])} and {tuple(x2.shape[1:])}"
        )
    return (1.0 - beta) * x1.float() + beta * x2.to(x1.device).float()


def paired_batches(
    data1: object, data2: object, max_images: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
    """``(x1, labels1, x2)`` with the i-th image of D1 beside the i-th of D2, whatever the
    two batch sizes; stops with the shorter dataset. Holds at most one batch of each."""
    second = iter_batches(data2)
    spare: torch.Tensor | None = None
    for x1, y1 in iter_batches(data1, max_images):
        start = 0
        while start < x1.shape[0]:
            if spare is None or spare.shape[0] == 0:
                nxt = next(second, None)
                if nxt is None:
                    return
                spare = nxt[0]
            take = min(x1.shape[0] - start, spare.shape[0])
            labels = None if y1 is None else y1[start : start + take]
            yield x1[start : start + take], labels, spare[:take]
            spare = spare[take:]
            start += take


@dataclass(frozen=True)
class DriftResult:
    betas: tuple[float, ...]
    di: tuple[float, ...]
    li: tuple[float, ...]
    accuracy: tuple[float, ...]
    accuracy_ratio: tuple[float, ...]  # accuracy / accuracy at β = 0
    accuracy_d1: float
    n_images: int
    group: str
    convention: str

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def drift_curve(
    model: nn.Module,
    data1: object,
    data2: object,
    group: str | groups_.Group,
    betas: str | Sequence[float] = "0:1:0.1",
    *,
    preprocess: Preprocess | None = None,
    include_identity: bool = True,
    max_images: int | None = None,
    device: torch.device | str | None = None,
) -> DriftResult:
    """DI, LI, accuracy and accuracy ratio of ``model`` on D(β) for every β (P3 Fig. 4).

    ``data1`` must be labelled (its labels are the labels of D(β)); ``data2``'s labels are
    ignored. Both yield raw images of the same shape; ``preprocess`` (e.g. the P3
    standardization) is applied after blending.
    """
    group = groups_.get(group)
    betas = parse_betas(betas)
    device = torch.device(device) if device is not None else model_device(model)
    measured = sorted(set(betas) | {0.0})
    di = {b: _OrbitMean(group.order) for b in measured}
    li = {b: _OrbitMean(group.order) for b in measured}
    correct = {b: _OrbitMean(group.order) for b in measured}
    with _evaluating(model), torch.no_grad():
        for x1, y1, x2 in paired_batches(data1, data2, max_images):
            if y1 is None:
                raise ValueError("drift: the first dataset must have labels")
            labels = y1.to(device)
            for beta in measured:
                x = _prepare(mix_images(x1.to(device), x2, beta), preprocess, device)
                logits = _orbit_logits(model, x, group).double()
                reference = logits[:1].expand_as(logits)
                di[beta].add(kl_error(reference, logits).clamp_min(0.0))
                li[beta].add(logit_error(reference, logits))
                correct[beta].add((logits.argmax(dim=-1) == labels).double())
    if correct[0.0].count == 0:
        raise ValueError("drift: no image pairs (is one of the datasets empty?)")

    def value(acc: dict, beta: float, identity: bool) -> float:
        return acc[beta].result("drift", "", group, identity).value

    accuracy = [value(correct, b, True) for b in betas]
    base = value(correct, 0.0, True)
    return DriftResult(
        betas=tuple(betas),
        di=tuple(value(di, b, include_identity) for b in betas),
        li=tuple(value(li, b, include_identity) for b in betas),
        accuracy=tuple(accuracy),
        accuracy_ratio=tuple(a / base if base > 0 else math.nan for a in accuracy),
        accuracy_d1=base,
        n_images=correct[0.0].count,
        group=group.name,
        convention=(
            "D(β) = (1 − β)·D1 + β·D2 image by image in raw pixels, labels of D1; DI and LI: "
            + _convention("Eq. 1 / Eq. 2", include_identity)
            + "; accuracy: top-1 over every g x; ratio = Acc(D(β)) / Acc(D(0))"
        ),
    )

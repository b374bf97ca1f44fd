"""PNG figures of the P3 study: realigned saliency over the orbit (Fig. 3) and drift (Fig. 4).

Figures use the project's figure style (:mod:`invfast.core.runtime.figures`) and are
written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from invfast.core.runtime.figures import new_figure, save_figure
from invfast.learning.drift import DriftResult

__all__ = ["save_drift_plot", "save_saliency_grid"]


def _save_png(fig, path: str | os.PathLike) -> Path:
    if Path(path).suffix.lower() != ".png":
        raise ValueError(f"figure path must end in .png, got {str(path)!r}")
    return save_figure(fig, path)


def save_saliency_grid(
    maps: torch.Tensor,
    path: str | os.PathLike,
    *,
    images: torch.Tensor | None = None,
    group: str | None = None,
    title: str | None = None,
) -> Path:
    """Rows = samples, columns = group elements: the realigned maps g⁻¹ m(g x)
    ``[N, |G|, H, W]`` from ``invfast.learning.metrics.saliency_orbit`` (P3 Fig. 3). ``images``
    ([N, C, H, W] or [N, H, W], untransformed) adds a first column with the inputs.
    Each map is scaled to its own maximum."""
    if not isinstance(maps, torch.Tensor) or maps.dim() != 4 or 0 in maps.shape:
        raise ValueError("maps must be a non-empty [N, |G|, H, W] tensor")
    rows, order = maps.shape[:2]
    if images is not None and images.shape[0] != rows:
        raise ValueError(f"images must hold {rows} images like maps, got {images.shape[0]}")
    columns = order + (images is not None)
    fig = new_figure(1.6 * columns, 1.6 * rows)
    axes = fig.subplots(rows, columns, squeeze=False)
    maps = maps.detach().float().cpu()
    for r in range(rows):
        offset = 0
        if images is not None:
            picture = images[r].detach().float().cpu()
            picture = picture.mean(dim=0) if picture.dim() == 3 else picture
            axes[r][0].imshow(picture.numpy(), cmap="gray")
            if r == 0:
                axes[r][0].set_title("input", fontsize=8)
            offset = 1
        for k in range(order):
            axis = axes[r][k + offset]
            axis.imshow(maps[r, k].numpy(), cmap="inferno", vmin=0.0)
            if r == 0:
                name = f"{group} g={k}" if group else f"g={k}"
                axis.set_title(f"$g^{{-1}}m(gx)$, {name}", fontsize=7)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    return _save_png(fig, path)


def save_drift_plot(
    curves: DriftResult | Mapping[str, DriftResult],
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """DI (left axis, solid) and accuracy ratio (right axis, dashed) over β, one colour
    per model (P3 Fig. 4). ``curves`` is one ``DriftResult`` or a mapping label → result."""
    if isinstance(curves, DriftResult):
        curves = {"model": curves}
    if not curves:
        raise ValueError("curves must hold at least one DriftResult")
    fig = new_figure(5.5, 3.6)
    left = fig.subplots()
    right = left.twinx()
    for i, (label, curve) in enumerate(curves.items()):
        colour = f"C{i % 10}"
        left.plot(curve.betas, curve.di, "-o", color=colour, markersize=3, label=f"{label} DI")
        right.plot(
            curve.betas,
            curve.accuracy_ratio,
            "--s",
            color=colour,
            markersize=3,
            label=f"{label} Acc(D(β))/Acc(D1)",
        )
    left.set_xlabel("drift β")
    left.set_ylabel("DI (KL, mean over x and g)")
    right.set_ylabel("accuracy ratio Acc(D(β)) / Acc(D1)")
    handles = left.get_legend_handles_labels()
    extra = right.get_legend_handles_labels()
    left.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize=7, loc="best")
    if title:
        left.set_title(title, fontsize=9)
    return _save_png(fig, path)

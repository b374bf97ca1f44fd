"""One ITN run and what ``invfast itn`` writes: the transformers, the loss curves, the
image grid (P2 Fig. 19) and the result."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from invfast._version import __version__
from invfast.core.data.batches import unpack_batch
from invfast.core.runtime.figures import new_figure, save_figure
from invfast.core.runtime.outputs import write_bytes
from invfast.screening.itn.model import (
    _OP,
    BRANCH_CLASSIFICATION,
    BRANCH_MAGNITUDE,
    FORMAT,
    InvariantTransformerNet,
    ITNConfig,
    StandardizeFn,
)
from invfast.screening.itn.reach import ITNResult, measure_reach
from invfast.screening.itn.trainer import ITNTrainer


def save_transformers(trainer: ITNTrainer, result: ITNResult, path: str | os.PathLike) -> Path:
    """Plain-data file (``torch.load(weights_only=True)``): config and both state dicts."""
    payload = {
        "format": FORMAT,
        "invfast_version": __version__,
        "config": dict(result.config),
        "channels": result.channels,
        "image_size": list(result.image_size),
        "spatial": {k: v.detach().cpu() for k, v in trainer.itn.spatial.state_dict().items()},
        "color": {k: v.detach().cpu() for k, v in trainer.itn.color.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_bytes(path, buffer.getvalue())


def load_transformers(path: str | os.PathLike) -> InvariantTransformerNet:
    """Rebuild the trained transformers written by ``save_transformers``."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{_OP}: {path} is not an invfast ITN transformer file")
    config = payload["config"]
    net = InvariantTransformerNet(payload["channels"], hidden=config["hidden"], init=config["init"])
    net.spatial.load_state_dict(payload["spatial"])
    net.color.load_state_dict(payload["color"])
    return net.eval()


# --------------------------------------------------------------------------- figures
def plot_losses(history: list[dict], target_accuracy: float, path: str | os.PathLike) -> Path:
    """Batch accuracy (per branch), classification loss, transformer losses per step."""
    steps = [r["step"] for r in history]
    figure = new_figure(7, 8)
    top, middle, bottom = figure.subplots(3, 1, sharex=True)
    for branch, color in ((BRANCH_MAGNITUDE, "C2"), (BRANCH_CLASSIFICATION, "C3")):
        picked = [r for r in history if r["branch"] == branch]
        top.scatter(
            [r["step"] for r in picked],
            [r["batch_accuracy"] for r in picked],
            s=6,
            color=color,
            label=f"{branch} step",
        )
    top.axhline(target_accuracy, color="k", linestyle="--", linewidth=1, label="target")
    top.set_ylabel("batch accuracy")
    top.set_ylim(-0.02, 1.02)
    top.legend(fontsize=7, loc="lower left")
    middle.plot(steps, [r["classification_loss"] for r in history], color="C0")
    middle.set_ylabel("classifier CE")
    bottom.plot(steps, [r["spatial_loss"] for r in history], color="C1", label="L_S")
    bottom.plot(steps, [r["color_loss"] for r in history], color="C4", label="L_C")
    bottom.set_ylabel("transformer loss")
    bottom.set_xlabel("step")
    bottom.legend(fontsize=7)
    figure.suptitle("Invariant Transformer Net training")
    return save_figure(figure, path)


@torch.no_grad()
def plot_grid(
    trainer: ITNTrainer, image: torch.Tensor, path: str | os.PathLike, points: int | None = None
) -> Path:
    """One image under increasing c_s (rows) and c_c (columns), P2 Fig. 19.

    Row 0 is the colour transformer alone, column 0 the spatial transformer alone, the
    top-left cell the original image."""
    points = trainer.config.grid_points if points is None else int(points)
    grid = [i / (points - 1) for i in range(points)]
    image = image.to(trainer.device)[None]
    trainer.itn.eval()
    n = points + 1
    figure = new_figure(1.3 * n, 1.3 * n)
    axes = figure.subplots(n, n, squeeze=False)
    for row in range(n):
        for col in range(n):
            c_s = None if row == 0 else torch.tensor([grid[row - 1]], device=trainer.device)
            c_c = None if col == 0 else torch.tensor([grid[col - 1]], device=trainer.device)
            picture = trainer.itn.transform(image, c_s, c_c)[0].cpu() / 255.0
            ax = axes[row, col]
            if picture.shape[0] == 1:
                ax.imshow(picture[0].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(picture[:3].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title("original" if col == 0 else f"c_c={grid[col - 1]:.2f}", fontsize=7)
            if col == 0 and row > 0:
                ax.set_ylabel(f"c_s={grid[row - 1]:.2f}", fontsize=7)
    figure.suptitle("ITN: rows c_s (spatial), columns c_c (colour)", fontsize=9)
    return save_figure(figure, path)


def write_outputs(
    trainer: ITNTrainer, result: ITNResult, out_dir: str | os.PathLike, image: torch.Tensor
) -> dict[str, Path]:
    """``itn_transformers.pt``, ``itn_losses.json/.png``, ``itn_grid.png``, ``itn_result.json``."""
    out_dir = Path(out_dir)
    losses = {"target_accuracy": result.config["target_accuracy"], "steps": result.history}
    return {
        "transformers": save_transformers(trainer, result, out_dir / "itn_transformers.pt"),
        "losses_json": write_bytes(
            out_dir / "itn_losses.json", json.dumps(losses, indent=1).encode()
        ),
        "losses_png": plot_losses(
            result.history, result.config["target_accuracy"], out_dir / "itn_losses.png"
        ),
        "grid": plot_grid(trainer, image, out_dir / "itn_grid.png"),
        "result": write_bytes(
            out_dir / "itn_result.json",
            json.dumps(result.to_dict(history=False), indent=2).encode(),
        ),
    }


def format_reach(result: ITNResult) -> str:
    """Terminal summary: accuracies and the magnitude reached per parameter."""
    target = result.config["target_accuracy"]
    lines = [
        f"clean accuracy {result.clean_accuracy:.4f}; after ITN (random c) "
        f"{result.final_accuracy:.4f}; {result.magnitude_steps}/{result.steps} magnitude steps",
        f"magnitude reached at accuracy >= {target:g} (c on a {len(result.sweep)}-point grid):",
    ]
    for key, value in result.reach.items():
        shown = "none" if value is None else f"{value:.4g}"
        lines.append(f"  {key:<22}{shown:>12}")
    return "\n".join(lines)


def run_itn(
    classifier: nn.Module,
    data: Iterable,
    *,
    standardize_fn: StandardizeFn,
    config: ITNConfig | None = None,
    eval_data: Iterable | None = None,
    device: torch.device | str | None = None,
    out_dir: str | os.PathLike | None = None,
) -> tuple[ITNTrainer, ITNResult]:
    """Train the ITN on ``data``, measure the magnitude reached on ``eval_data`` (default
    ``data``) and, with ``out_dir``, write every output (``write_outputs``)."""
    config = (config or ITNConfig()).validate()
    eval_data = data if eval_data is None else eval_data
    first = next(iter(data), None)
    if first is None:
        raise ValueError(f"{_OP}: data yielded no images")
    images, _labels, _ids = unpack_batch(first, 0, _OP)
    channels, height, width = (int(s) for s in images.shape[1:])
    trainer = ITNTrainer(
        classifier, channels=channels, standardize_fn=standardize_fn, config=config, device=device
    )
    clean = trainer.evaluate(eval_data)
    trainer.fit(data)
    sweep, reach = measure_reach(trainer, eval_data, height=height, width=width)
    result = ITNResult(
        config=asdict(config),
        image_size=[height, width],
        channels=channels,
        clean_accuracy=clean,
        final_accuracy=trainer.evaluate(eval_data, c_s="random", c_c="random", seed=config.seed),
        steps=len(trainer.history),
        magnitude_steps=sum(r["branch"] == BRANCH_MAGNITUDE for r in trainer.history),
        history=trainer.history,
        sweep=sweep,
        reach=reach,
    )
    if out_dir is not None:
        write_outputs(trainer, result, out_dir, images[0])
    return trainer, result

"""What the trained ITN reaches (P2 §3.4): affine decomposition, the largest magnitude per
parameter at the target accuracy, and the whole run."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import torch

from invfast.screening.itn.trainer import ITNTrainer


# --------------------------------------------------------------------------- decomposition
def decompose_spatial(theta: torch.Tensor, height: int, width: int) -> dict:
    """Rotation (degrees, anticlockwise on screen), scales and translation (pixels) of θ."""
    theta = torch.as_tensor(theta, dtype=torch.float64).reshape(2, 3)
    a, t = theta[:, :2], theta[:, 2]
    det = float(torch.linalg.det(a))
    if not math.isfinite(det) or abs(det) < 1e-12:
        return {
            "rotation_deg": None,
            "scale_max": None,
            "scale_min": None,
            "translation_px": None,
            "reflection": None,
        }
    d = torch.diag(torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64))
    a_inv = torch.linalg.inv(a)
    content = d @ a_inv @ torch.linalg.inv(d)
    shift = -(d @ a_inv @ t)
    u, sigma, vh = torch.linalg.svd(content)
    rotation = u @ vh
    reflection = bool(torch.linalg.det(rotation) < 0)
    if reflection:  # keep R a rotation; the reflection is reported apart
        u = u.clone()
        u[:, -1] = -u[:, -1]
        rotation = u @ vh
    angle = -math.degrees(math.atan2(float(rotation[1, 0]), float(rotation[0, 0])))
    return {
        "rotation_deg": angle + 0.0,
        "scale_max": float(sigma[0]),
        "scale_min": float(sigma[1]),
        "translation_px": float(shift.norm()),
        "reflection": reflection,
    }


def decompose_color(matrix: torch.Tensor) -> dict:
    """Colour shift 255·max|b| (pixel units) and the gains (singular values of G) of K."""
    matrix = torch.as_tensor(matrix, dtype=torch.float64)
    gain, bias = matrix[:, :-1], matrix[:, -1]
    sigma = torch.linalg.svdvals(gain)
    return {
        "shift": 255.0 * float(bias.abs().max()),
        "bias": [255.0 * float(v) for v in bias],
        "gain_max": float(sigma[0]),
        "gain_min": float(sigma[-1]),
    }


# (key in the sweep rows, how to take the extreme, name in the report)
_REACH = {
    "spatial": [
        ("rotation_deg", "absmax", "rotation_deg"),
        ("scale_min", "min", "scale_min"),
        ("scale_max", "max", "scale_max"),
        ("translation_px", "max", "translation_px"),
        ("pixel_change", "max", "spatial_pixel_change"),
    ],
    "color": [
        ("shift", "max", "color_shift"),
        ("gain_min", "min", "color_gain_min"),
        ("gain_max", "max", "color_gain_max"),
        ("pixel_change", "max", "color_pixel_change"),
    ],
}


def measure_reach(
    trainer: ITNTrainer, data: Iterable, *, points: int | None = None, height: int, width: int
) -> tuple[list[dict], dict]:
    """Sweep c over ``points`` values of [0, 1] for each transformer alone (module doc).

    Returns (sweep rows, magnitude reached at the target accuracy)."""
    points = trainer.config.sweep_points if points is None else int(points)
    grid = [i / (points - 1) for i in range(points)]
    thetas, matrices = trainer.matrices(grid)
    rows = []
    for c, theta, matrix in zip(grid, thetas, matrices, strict=True):
        spatial_accuracy, spatial_change = trainer.evaluate_change(data, c_s=c)
        color_accuracy, color_change = trainer.evaluate_change(data, c_c=c)
        rows.append(
            {
                "c": c,
                "spatial_accuracy": spatial_accuracy,
                "color_accuracy": color_accuracy,
                "spatial": {
                    **decompose_spatial(theta, height, width),
                    "pixel_change": spatial_change,
                },
                "color": {**decompose_color(matrix), "pixel_change": color_change},
                "theta": theta.tolist(),
                "color_matrix": matrix.tolist(),
            }
        )
    target = trainer.config.target_accuracy
    reach: dict[str, float | None] = {}
    for part, quantities in _REACH.items():
        kept = [r[part] for r in rows if r[f"{part}_accuracy"] >= target]
        reach[f"{part}_c_max"] = max(
            (r["c"] for r in rows if r[f"{part}_accuracy"] >= target), default=None
        )
        for key, how, name in quantities:
            values = [k[key] for k in kept if k[key] is not None]
            if not values:
                reach[name] = None
            elif how == "absmax":
                reach[name] = max(values, key=abs)
            else:
                reach[name] = (max if how == "max" else min)(values)
    return rows, reach


# --------------------------------------------------------------------------- results
@dataclass
class ITNResult:
    """What one ITN run measured; ``to_dict()`` is plain JSON (the trained net is apart)."""

    config: dict
    image_size: list[int]
    channels: int
    clean_accuracy: float
    final_accuracy: float  # random c_s, c_c per image, after training
    steps: int
    magnitude_steps: int
    history: list[dict] = field(repr=False)
    sweep: list[dict] = field(repr=False)
    reach: dict
    source: dict = field(default_factory=dict)  # where classifier and data came from (CLI)

    def to_dict(self, *, history: bool = True) -> dict:
        data = asdict(self)
        if not history:
            data.pop("history")
        return data

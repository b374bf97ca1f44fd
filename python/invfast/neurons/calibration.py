"""Strength calibration (P1 Appendix A; docs/transforms.md).

P1 chose each transformation's strength per dataset so that a network trained without it
falls below a target accuracy, raising σ in steps of 0.5 (blur) or 25 (noise).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from invfast.core import checkpoint, data, transforms
from invfast.core.runtime.device import resolve_device
from invfast.neurons.training import evaluate

CALIBRATION_STEPS = {"blur": ("sigma", 0.5), "noise": ("sigma", 25.0)}


def calibrate(
    ckpt: Mapping,
    transform_name: str,
    *,
    parameter: str | None = None,
    step: float | None = None,
    start: float | None = None,
    target: float = 0.10,
    max_steps: int = 40,
    device: str = "auto",
    batch_size: int = 256,
    cache_dir: str | None = None,
    fixed_params: Mapping | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """P1's strength calibration: raise the transformation's strength by ``step`` (blur σ
    0.5, noise σ 25) until the accuracy of ``ckpt`` — a model trained without the
    transformation — on transformed test images falls below ``target``; return the sweep
    and the chosen strength (None when ``max_steps`` steps never get below the target)."""
    say = log or print
    default_parameter, default_step = CALIBRATION_STEPS.get(transform_name, (None, None))
    parameter = parameter or default_parameter
    step = step if step is not None else default_step
    if parameter is None or step is None:
        raise ValueError(
            f"calibrate: no default strength for {transform_name!r}; pass --parameter and --step"
        )
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"calibrate: step must be > 0, got {step}")
    if not 0.0 < target < 1.0:
        raise ValueError(f"calibrate: target must be an accuracy in (0, 1), got {target}")
    num_classes = ckpt["arch"]["num_classes"]
    if target <= 1.0 / num_classes:
        raise ValueError(
            f"calibrate: target {target:.3f} is at or below chance (1/{num_classes}); "
            "choose a higher --target"
        )
    if ckpt.get("seen_transformed"):
        say("warning: this model saw transformed images in training; P1 calibrates on a "
            "model trained without the transformation")  # fmt: skip
    if ckpt.get("data") is None:
        raise ValueError("calibrate: the checkpoint does not record its dataset")
    dev = resolve_device(device)
    model = checkpoint.build_model(ckpt).to(dev)
    _, images = checkpoint.evaluation_data(ckpt, split="test", cache_dir=cache_dir)
    batches = data.loader(images, batch_size)
    strength = start if start is not None else step
    sweep, chosen = [], None
    say(f"{transform_name}: raising {parameter} by {step} until accuracy < {100 * target:.1f} %")
    for _ in range(max_steps):
        params = {**(fixed_params or {}), parameter: strength}
        transform = transforms.get(transform_name, **params)
        _, conf = evaluate(model, batches, transform, num_classes, dev, seed=ckpt["seed"],
                           clean=False, standardize=checkpoint.standardization(ckpt))  # fmt: skip
        accuracy = float(conf.diagonal().sum()) / max(int(conf.sum()), 1)
        sweep.append({parameter: strength, "accuracy": accuracy})
        say(f"  {parameter} = {strength:g}: accuracy {100 * accuracy:5.1f} %")
        if accuracy < target:
            chosen = strength
            break
        strength = round(strength + step, 10)
    return {"transform": transform_name, "parameter": parameter, "step": step,
            "target": target, "chosen": chosen, "sweep": sweep}  # fmt: skip

"""Active-neuron ablation (P1 Appendix D; docs/invariance.md).

For one image x, neuron k of the ablated layer is active when f_k(x) = â_k(x) / M_k > τ.
"Ablate inactive" zeroes every neuron with f_k(x) ≤ τ and keeps the active ones; "ablate
active" does the opposite. The accuracy of the ablated network over the τ grid gives
P1's ablation curves, and the inactive curve gives the choice of τ (:mod:`.tau`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from invfast import kernels as ops
from invfast.core.runtime.distributed import Distributed

MODES = ("inactive", "active")


def ablation_hook(
    neuron_max: torch.Tensor,
    tau: float,
    mode: str,
    neurons: str,
    activation: str | None,
    backend: str | None,
) -> Callable:
    """A forward hook that ablates ``mode`` neurons of its module's output at ``tau``.

    With ``activation`` (relu / abs) activity is measured on the rectified output, and
    the raw output is zeroed where the rectified one is."""

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        activity = output
        if activation == "relu":
            activity = output.clamp(min=0)
        elif activation == "abs":
            activity = output.abs()
        kept = ops.ablate(activity, neuron_max, tau, mode, neurons=neurons, backend=backend)
        if activation is None:
            return kept
        return torch.where(kept == 0, torch.zeros_like(output), output)

    return hook


@torch.inference_mode()
def ablated_accuracy(
    model: nn.Module,
    layer: str,
    hook: Callable,
    batches: Iterable,
    dist: Distributed,
    device: torch.device,
) -> tuple[float, float]:
    """(clean, transformed) accuracy over ``batches`` of (x, T(x), groups, labels) with
    ``hook`` on ``layer``, summed over the ranks."""
    handle = model.get_submodule(layer).register_forward_hook(hook)
    counts = torch.zeros(3, dtype=torch.int64)  # correct clean, correct transformed, images
    try:
        for x, tx, _, labels in batches:
            counts[0] += int((model(x).argmax(1) == labels).sum())
            counts[1] += int((model(tx).argmax(1) == labels).sum())
            counts[2] += labels.numel()
    finally:
        handle.remove()
    counts = counts.to(device)
    dist.all_reduce(counts)
    counts = counts.cpu()
    return float(counts[0]) / float(counts[2]), float(counts[1]) / float(counts[2])

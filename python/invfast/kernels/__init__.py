"""Fused ops over torch tensors, one public function per op.

Every op takes ``backend=None|"reference"|"cpu"|"cuda"``: ``None`` picks the CUDA kernel
for CUDA tensors, the CPU kernel for CPU tensors, and the pure-PyTorch reference when no
kernel is built (see ``invfast.backends``). Arguments are checked before any pointer
crosses into compiled code; bad ones raise ``ValueError``/``TypeError`` naming them.
"""

from invfast.kernels.stats import (
    DEFAULT_TAUS,
    GOODFELLOW_PERCENTS,
    ablate,
    goodfellow_invariance,
    invariance_accumulator,
    invariance_finalize,
    invariance_update,
    merge_accumulators,
    neuron_max,
    num_neurons,
)
from invfast.kernels.transforms import image_transform

__all__ = [
    "DEFAULT_TAUS",
    "GOODFELLOW_PERCENTS",
    "ablate",
    "goodfellow_invariance",
    "image_transform",
    "invariance_accumulator",
    "invariance_finalize",
    "invariance_update",
    "merge_accumulators",
    "neuron_max",
    "num_neurons",
]

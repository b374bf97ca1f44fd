"""Pure-PyTorch twins of every fused op: the test oracle and the benchmark baseline.

Each function here computes, with plain tensor code, what the op of the same name in
``invfast.ops`` computes with a C++ or CUDA kernel. They favour clarity over speed, but
stay vectorized so that benchmarks compare against a fair baseline.
"""

from invfast.kernels.reference.stats import (
    ablate,
    activation_status,
    goodfellow_invariance,
    invariance_update,
    neuron_activities,
    neuron_max,
)
from invfast.kernels.reference.transforms import image_transform

__all__ = [
    "ablate",
    "activation_status",
    "goodfellow_invariance",
    "image_transform",
    "invariance_update",
    "neuron_activities",
    "neuron_max",
]

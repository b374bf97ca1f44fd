"""invfast: measure how neural networks become robust and invariant to image transformations.

Packages, in the one direction imports go (docs/architecture.md):

- ``invfast.kernels``: the compiled ops (``invfast._C``, ``invfast._cuda``), their dispatch
  and their pure-PyTorch reference twins; ``invfast.ops`` is the same namespace.
- ``invfast.core``: what every method shares: checkpoints, data, models, transformations,
  groups, runtime (device, torch.distributed, output folders, progress, figure style).
- ``invfast.neurons`` (per-neuron invariance and the across-category paradigm),
  ``invfast.screening`` (sensitivity screening and the Invariant Transformer Net),
  ``invfast.learning`` (invariance metrics, regularized and weight-tied training):
  one package per method family, never importing each other.
- ``invfast.cli``: one module per ``invfast`` command.
"""

from invfast import _moved
from invfast._version import __version__

_moved.install()

__all__ = ["__version__"]


def __getattr__(name: str):
    return _moved.attribute(name)

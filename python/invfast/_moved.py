"""Old import paths of invfast 0.x, kept working with a DeprecationWarning.

Modules moved into ``kernels``, ``core``, ``neurons``, ``screening``, ``learning`` and
``cli`` (see docs/architecture.md and CHANGELOG.md). Importing an old name returns the
module that now holds the code (the same object, so state and monkeypatching are shared).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

#: old module name -> the module that holds its code now
MOVED = {
    "invfast.backends": "invfast.kernels.backends",
    "invfast.ops.stats": "invfast.kernels.stats",
    "invfast.ops.transforms": "invfast.kernels.transforms",
    "invfast.reference": "invfast.kernels.reference",
    "invfast.reference.stats": "invfast.kernels.reference.stats",
    "invfast.reference.transforms": "invfast.kernels.reference.transforms",
    "invfast.checkpoint": "invfast.core.checkpoint",
    "invfast.data": "invfast.core.data",
    "invfast.models": "invfast.core.models",
    "invfast.models.weight_tied": "invfast.core.models.weight_tied",
    "invfast.transforms": "invfast.core.transforms",
    "invfast.groups": "invfast.core.groups",
    "invfast.training": "invfast.neurons.training",
    "invfast.analysis": "invfast.neurons.analysis",
    "invfast.invariance": "invfast.neurons.invariance",
    "invfast.report": "invfast.neurons.report",
    "invfast.itn": "invfast.screening.itn",
    "invfast.metrics": "invfast.learning.metrics",
    "invfast.regularization": "invfast.learning.regularization",
    "invfast.p3_training": "invfast.learning.training",
    "invfast.p3_data": "invfast.learning.data",
    "invfast.p3_figures": "invfast.learning.figures",
    "invfast.drift": "invfast.learning.drift",
    "invfast.commands": "invfast.cli",
}


#: names that stay public without a warning: the op namespace that DESIGN and README use
ALIASES = {"invfast.ops": "invfast.kernels"}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The target module already ran; only give it back the spec the import replaced.
        module.__spec__ = self._spec


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in ALIASES:
            return importlib.machinery.ModuleSpec(fullname, _AliasLoader(ALIASES[fullname]))
        new = MOVED.get(fullname)
        if new is None:
            return None
        warnings.warn(
            f"{fullname} moved to {new}; the old name will be removed in invfast 1.0",
            DeprecationWarning,
            stacklevel=3,
        )
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())


def attribute(name: str) -> ModuleType:
    """``invfast.<name>`` for an old top-level module name (``invfast.training`` etc.)."""
    full = f"invfast.{name}"
    if full not in MOVED and full not in ALIASES:
        raise AttributeError(f"module 'invfast' has no attribute {name!r}")
    return importlib.import_module(full)

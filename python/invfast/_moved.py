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
    "invfast.invariance": "invfast.neurons.invariance",
    "invfast.itn": "invfast.screening.itn",
    "invfast.metrics": "invfast.learning.metrics",
    "invfast.regularization": "invfast.learning.regularization",
    "invfast.p3_figures": "invfast.learning.figures",
    "invfast.drift": "invfast.learning.drift",
    "invfast.commands": "invfast.cli",
}


#: old modules whose contents were split: the modules searched for a name, in order, and
#: names that moved elsewhere or changed ("module:attribute", or a function of this file)
SPLIT = {
    "invfast.training": (
        ("invfast.neurons.training", "invfast.neurons.paradigm", "invfast.neurons.calibration"),
        {
            "resolve_device": "invfast.core.runtime.device:resolve_device",
            "Distributed": "invfast.core.runtime.distributed:Distributed",
            "distributed_from_env": "invfast.core.runtime.distributed:Distributed.from_env",
            "write_json_atomic": "invfast.core.runtime.outputs:write_json",
            "prepare_output": "_prepare_output",
        },
    ),
    "invfast.analysis": (
        ("invfast.neurons.analysis", "invfast.neurons.summaries", "invfast.neurons.tau"),
        {},
    ),
    "invfast.report": (
        ("invfast.neurons.report",),
        {
            "GROUP_COLORS": "invfast.core.runtime.figures:GROUP_COLORS",
            "check_destination": "_check_destination",
            "write_folder": "_write_folder",
            "dump_json": "invfast.core.runtime.outputs:write_json",
        },
    ),
    "invfast.p3_training": (
        ("invfast.learning.training",),
        {
            "checkpoint_eval_data": "_checkpoint_eval_data",
            "checkpoint_preprocess": "invfast.core.checkpoint:preprocess",
        },
    ),
    "invfast.p3_data": (
        ("invfast.learning.data",),
        {"standardizer": "_standardizer"},
    ),
}

#: names that stay public without a warning: the op namespace the docs use
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
        if fullname in SPLIT:
            _warn(fullname, " and ".join(SPLIT[fullname][0]))
            return importlib.machinery.ModuleSpec(fullname, _SplitLoader())
        new = MOVED.get(fullname)
        if new is None:
            return None
        _warn(fullname, new)
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def _warn(old: str, new: str) -> None:
    warnings.warn(
        f"{old} moved to {new}; the old name will be removed in invfast 1.0",
        DeprecationWarning,
        stacklevel=4,
    )


class _SplitModule(ModuleType):
    """An old module whose names now live in several modules."""

    def __getattr__(self, name: str):
        modules, renamed = SPLIT[self.__name__]
        if name in renamed:
            target = renamed[name]
            if ":" not in target:
                return globals()[target]
            module, _, path = target.partition(":")
            value = importlib.import_module(module)
            for part in path.split("."):
                value = getattr(value, part)
            return value
        for module in modules:
            found = importlib.import_module(module)
            if hasattr(found, name):
                return getattr(found, name)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


class _SplitLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return _SplitModule(spec.name)

    def exec_module(self, module: ModuleType) -> None:
        pass


# Old functions whose replacements take other arguments.
def _prepare_output(out, overwrite):
    from invfast.core.runtime.outputs import check_output_folder

    return check_output_folder(out, overwrite=overwrite)


def _check_destination(out, overwrite):
    return _prepare_output(out, overwrite)


def _write_folder(out, fill, *, overwrite=False):
    from invfast.core.runtime.outputs import output_folder

    with output_folder(out, overwrite=overwrite) as folder:
        fill(folder)
    return out


def _checkpoint_eval_data(ckpt, *, spec=None, split="test", cache_dir=None, leave_out=None):
    from invfast.core.checkpoint import evaluation_data

    overrides = {"leave_out": leave_out} if leave_out is not None else None
    _, images = evaluation_data(
        ckpt, spec=spec, overrides=overrides, split=split, cache_dir=cache_dir
    )
    return images


def _standardizer(mean, std):
    from invfast.core.checkpoint import standardizer

    return standardizer((list(mean), list(std)))


def install() -> None:
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())


def old_attribute(module: str, name: str, renamed: dict[str, str]):
    """An old name of package ``module`` that moved to ``renamed[name]`` ("module:attr")."""
    if name not in renamed:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    target, _, attr = renamed[name].partition(":")
    _warn(f"{module}.{name}", f"{target}.{attr}")
    return getattr(importlib.import_module(target), attr)


def attribute(name: str) -> ModuleType:
    """``invfast.<name>`` for an old top-level module name (``invfast.training`` etc.)."""
    full = f"invfast.{name}"
    if full not in MOVED and full not in ALIASES and full not in SPLIT:
        raise AttributeError(f"module 'invfast' has no attribute {name!r}")
    return importlib.import_module(full)

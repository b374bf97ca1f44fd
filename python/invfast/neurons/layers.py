"""Which layers of a model the analysis measures."""

from __future__ import annotations

from torch import nn


def resolve_layers(model: nn.Module, spec: str) -> list[str]:
    """``all`` | ``penultimate`` | ``NAME,...`` → module names in forward order."""
    available = list(model.analysis_layers())
    if spec == "all":
        return available
    if spec == "penultimate":
        return available[-1:]
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ValueError("--layers is empty")
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules or name == "":
            raise ValueError(
                f"--layers: unknown layer {name!r}; valid: all, penultimate, {', '.join(available)}"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"--layers lists a layer twice: {spec!r}")
    order = {name: i for i, name in enumerate(modules)}
    return sorted(names, key=order.__getitem__)

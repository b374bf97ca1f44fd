"""Invariance-regularized training (P3 §3.3, Eq. 4; docs/p3.md) and the ν search.

``training_loss`` is the one loss of the three P3 training modes:

- ``da``: data augmentation — each sample is replaced by ``g x`` with g drawn uniformly
  from the group, independently per sample; loss = CE(f(g x), y).
- ``ir``: invariance regularization — DA plus ν·I(x', g' x') on the augmented sample
  x' = g x with a second independent uniform draw g' (Eq. 4 with the sum over the orbit
  estimated by one draw per sample; g' is the identity with probability 1/|G|).
- ``wt``: the weight-tied model (``MLP5WeightTied``, exactly invariant), trained with the
  same augmentation as DA (P3 §4.1: "for all models, we use data augmentation").

I is ``logit`` (½‖f(x) − f(gx)‖², P3 Eq. 2; the default), ``kl`` (KL(softmax f(x) ‖
softmax f(gx)), Eq. 1) or ``logit-norm`` (‖f(x) − f(gx)‖² / ‖f(x)‖², §4.4), averaged over
the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from invfast.core import groups as groups_
from invfast.learning.metrics import kl_error, logit_error

__all__ = [
    "MODES",
    "REGULARIZERS",
    "NuSearchResult",
    "TrainingLoss",
    "invariance_error",
    "log_grid",
    "nu_search",
    "sample_elements",
    "training_loss",
]

MODES = ("da", "ir", "wt")
REGULARIZERS = ("logit", "kl", "logit-norm")
# ‖f(x)‖² below this is treated as this in logit-norm, so a zero logit vector cannot divide
# by zero.
LOGIT_NORM_EPS = 1e-8


def invariance_error(
    logits_x: torch.Tensor, logits_gx: torch.Tensor, regularizer: str = "logit"
) -> torch.Tensor:
    """Per-sample invariance error I(x, gx) → [B] (differentiable)."""
    if logits_x.shape != logits_gx.shape or logits_x.dim() != 2:
        raise ValueError(
            f"logits must both be [B, classes], got {tuple(logits_x.shape)} and "
            f"{tuple(logits_gx.shape)}"
        )
    if regularizer == "logit":
        return logit_error(logits_x, logits_gx)
    if regularizer == "kl":
        return kl_error(logits_x, logits_gx)
    if regularizer == "logit-norm":
        squared = (logits_x - logits_gx).square().sum(dim=-1)
        return squared / logits_x.square().sum(dim=-1).clamp_min(LOGIT_NORM_EPS)
    raise ValueError(f"regularizer must be one of {', '.join(REGULARIZERS)}, got {regularizer!r}")


def sample_elements(
    batch_size: int,
    group: str | groups_.Group,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``[batch_size]`` int64 group elements drawn uniformly and independently.

    Drawn on the CPU from ``generator`` (then moved to ``device``), so a seed gives the
    same draws on every device.
    """
    group = groups_.get(group)
    draws = torch.randint(group.order, (batch_size,), generator=generator, dtype=torch.long)
    return draws.to(device) if device is not None else draws


@dataclass
class TrainingLoss:
    """The scalar to backpropagate and its detached parts (for logging)."""

    loss: torch.Tensor  # CE + ν·I, with grad
    task: torch.Tensor  # CE on the augmented batch, detached
    invariance: torch.Tensor | None  # mean I over the batch (ir only), detached
    logits: torch.Tensor  # logits of the augmented batch, detached (for accuracy)
    elements: torch.Tensor  # the g drawn for each sample


def _check_batch(x: object, y: object) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 3:
        raise TypeError("x must be a floating-point [B, ..., H, W] tensor (model input)")
    if not isinstance(y, torch.Tensor) or y.shape != x.shape[:1]:
        raise ValueError(f"y must be a [{x.shape[0]}] tensor of class indices")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class indices, got {y.dtype}")
    return x, y.to(x.device, torch.long)


def training_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    group: str | groups_.Group,
    mode: str,
    *,
    nu: float = 1.0,
    regularizer: str = "logit",
    generator: torch.Generator | None = None,
) -> TrainingLoss:
    """The training loss of P3 mode ``da`` | ``ir`` | ``wt`` for one batch (see module doc).

    ``x`` is the standardized model input [B, C, H, W]; ``nu`` and ``regularizer`` are
    used by ``ir`` only. Group elements come from ``generator`` (CPU), so a seeded
    generator makes training reproducible.
    """
    group = groups_.get(group)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if regularizer not in REGULARIZERS:
        raise ValueError(
            f"regularizer must be one of {', '.join(REGULARIZERS)}, got {regularizer!r}"
        )
    if isinstance(nu, bool) or not isinstance(nu, (int, float)) or not math.isfinite(nu) or nu < 0:
        raise ValueError(f"nu must be a finite number >= 0, got {nu!r}")
    x, y = _check_batch(x, y)
    if mode == "wt":
        tied = getattr(model, "invariant_group", None)
        if tied != group.name:
            raise ValueError(
                f"mode 'wt' needs a model weight-tied over {group.name} (mlp5-wt), "
                f"got {type(model).__name__} with invariant_group={tied!r}"
            )
    elements = sample_elements(x.shape[0], group, generator=generator, device=x.device)
    augmented = group.act(x, elements)
    if mode != "ir":
        logits = model(augmented)
        task = F.cross_entropy(logits, y)
        return TrainingLoss(task, task.detach(), None, logits.detach(), elements)
    second = sample_elements(x.shape[0], group, generator=generator, device=x.device)
    both = model(torch.cat([augmented, group.act(augmented, second)]))
    logits, logits_moved = both[: x.shape[0]], both[x.shape[0] :]
    task = F.cross_entropy(logits, y)
    penalty = invariance_error(logits, logits_moved, regularizer).mean()
    return TrainingLoss(
        task + nu * penalty, task.detach(), penalty.detach(), logits.detach(), elements
    )


# ------------------------------------------------------------------------ ν search


def log_grid(low: float = 1e-2, high: float = 1e3, per_decade: int = 2) -> list[float]:
    """``low, …, high`` evenly spaced in log10 with ``per_decade`` points per decade."""
    if not 0 < low <= high or per_decade < 1:
        raise ValueError("log_grid needs 0 < low <= high and per_decade >= 1")
    count = round(math.log10(high / low) * per_decade)
    return [float(low * 10 ** (i / per_decade)) for i in range(count + 1)]


@dataclass
class NuSearchResult:
    """The chosen ν (the smallest meeting the target, else the one with the best SI)."""

    nu: float
    si: float
    met_target: bool
    target_si: float
    trials: list[tuple[float, float]]  # (ν, SI) in the order they were run
    outcome: object  # what ``train_and_evaluate`` returned for the chosen ν

    def to_dict(self) -> dict:
        return {
            "nu": self.nu,
            "si": self.si,
            "met_target": self.met_target,
            "target_si": self.target_si,
            "trials": [list(t) for t in self.trials],
        }


def _si_of(outcome: object) -> float:
    if isinstance(outcome, Mapping):
        for key in ("SI", "si"):
            if key in outcome:
                value = outcome[key]
                return float(getattr(value, "value", value))
        raise ValueError("nu_search: the returned mapping has no 'SI' entry")
    return float(getattr(outcome, "value", outcome))


def nu_search(
    train_and_evaluate: Callable[[float], object],
    *,
    target_si: float = 0.95,
    grid: Sequence[float] | None = None,
    refine: int = 0,
    exhaustive: bool = False,
) -> NuSearchResult:
    """Find the smallest ν whose model reaches SI ≥ ``target_si`` (P3 §4.1).

    ``train_and_evaluate(nu)`` trains a model with that ν and returns its SI (a float, a
    ``MetricResult`` or a mapping with an ``"SI"`` entry; whatever it returns for the
    chosen ν is kept in ``outcome``). The grid (default ``log_grid()``: 1e-2 … 1e3, two
    points per decade) is tried in increasing order and, SI growing with ν, the search
    stops at the first ν that meets the target; ``exhaustive=True`` runs the whole grid
    and picks the smallest passing ν without assuming monotonicity. ``refine`` extra
    runs bisect (geometrically) between the last failing and the first passing ν. When
    no ν meets the target the one with the highest SI is returned with
    ``met_target=False``.
    """
    values = sorted({float(v) for v in (log_grid() if grid is None else grid)})
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise ValueError("nu_search: grid must be a non-empty list of finite numbers >= 0")
    if not 0.0 <= target_si <= 1.0:
        raise ValueError(f"target_si must be in [0, 1], got {target_si!r}")
    if isinstance(refine, bool) or not isinstance(refine, int) or refine < 0:
        raise ValueError(f"refine must be a non-negative int, got {refine!r}")
    trials: list[tuple[float, float]] = []
    outcomes: dict[float, object] = {}

    def run(nu: float) -> float:
        outcome = train_and_evaluate(nu)
        si = _si_of(outcome)
        trials.append((nu, si))
        outcomes[nu] = outcome
        return si

    passing: float | None = None
    failing: float | None = None
    for nu in values:
        if run(nu) >= target_si:
            if passing is None:
                passing = nu
            if not exhaustive:
                break
        elif passing is None:
            failing = nu
    if passing is not None and failing is not None and failing > 0:
        low, high = failing, passing
        for _ in range(refine):
            middle = math.sqrt(low * high)
            if run(middle) >= target_si:
                high = middle
            else:
                low = middle
        passing = high
    if passing is None:
        best_nu, best_si = max(trials, key=lambda t: (t[1], -t[0]))
        return NuSearchResult(best_nu, best_si, False, target_si, trials, outcomes[best_nu])
    si = dict(trials)[passing]
    return NuSearchResult(passing, si, True, target_si, trials, outcomes[passing])

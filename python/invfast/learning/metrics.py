"""P3's invariance metrics (docs/p3.md): DI, LI, SI, accuracy over the orbit and σ_max.

Every metric streams over ``data`` — one batch or an iterable of batches (a tensor of
images, ``(images, labels[, ids])`` or a dict with ``images``/``labels``) — so memory
depends on the batch size, never on the number of images. Per-image values are computed
in the model's dtype and accumulated in float64; a metric computed in one batch or in many
agrees to float rounding of the model's batched matmuls.

P3 writes its metrics as sums over x ∈ D and g ∈ G (Eq. 1–3). invfast reports the mean
over images and over every group element, the identity included (pass
``include_identity=False`` to average over g ≠ e only); each result carries that
convention as text. ``preprocess`` maps a raw batch (e.g. uint8 [0, 255]) to the model's
input; the group acts on the preprocessed input, which is the same as acting first
because every group element permutes pixels (``invfast.core.groups``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from invfast.core import groups as groups_
from invfast.core.data.batches import iter_batches
from invfast.core.runtime.device import model_device

__all__ = [
    "IG_METHODS",
    "SALIENCY_DEFAULTS",
    "MetricResult",
    "distribution_invariance",
    "evaluate",
    "gaussian_filter",
    "integrated_gradients",
    "iter_batches",
    "jacobian_sigma_max",
    "logit_invariance",
    "orbit_metrics",
    "saliency_invariance",
    "saliency_map",
    "saliency_orbit",
    "sigma_max_batch",
]

IG_METHODS = ("gausslegendre", "midpoint")
PADDINGS = {"circular": "circular", "reflect": "reflect", "zeros": "constant"}
# P3 §4.1: zero baseline, 50 steps, keep ≥ 0.9 of the max, Gaussian filter size 3, σ 1.
SALIENCY_DEFAULTS = {
    "steps": 50,
    "method": "gausslegendre",
    "threshold": 0.9,
    "filter_size": 3,
    "filter_sigma": 1.0,
    "padding": "circular",
}
Preprocess = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class MetricResult:
    """One metric: its value and how it was averaged."""

    name: str
    value: float
    convention: str
    n_images: int
    group: str | None = None
    per_element: tuple[float, ...] | None = None  # mean over images for each g, g = 0..|G|-1
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-serialisable data."""
        out = asdict(self)
        out["per_element"] = None if self.per_element is None else list(self.per_element)
        return out


# ----------------------------------------------------------------------------- data


def _prepare(x: torch.Tensor, preprocess: Preprocess | None, device: torch.device) -> torch.Tensor:
    x = x.to(device)
    x = preprocess(x) if preprocess is not None else x
    return x if x.is_floating_point() else x.float()


@contextlib.contextmanager
def _evaluating(model: nn.Module):
    """Eval mode for the duration (per-sample independence: no batch statistics)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _convention(equation: str, include_identity: bool) -> str:
    elements = "g ∈ G (identity included)" if include_identity else "g ∈ G \\ {e}"
    return f"mean over images x and {elements}; P3 {equation} with sums replaced by means"


class _OrbitMean:
    """float64 sums of a per-(image, element) value, one slot per group element."""

    def __init__(self, order: int):
        self.sums = torch.zeros(order, dtype=torch.float64)
        self.count = 0

    def add(self, values: torch.Tensor) -> None:  # values [order, B]
        self.sums += values.detach().to("cpu", torch.float64).sum(dim=1)
        self.count += values.shape[1]

    def result(
        self, name: str, convention: str, group: groups_.Group, include_identity: bool, **details
    ) -> MetricResult:
        if self.count == 0:
            raise ValueError(f"{name}: data holds no images")
        per_element = (self.sums / self.count).tolist()
        used = per_element if include_identity else per_element[1:]
        return MetricResult(
            name=name,
            value=math.fsum(used) / len(used),
            convention=convention,
            n_images=self.count,
            group=group.name,
            per_element=tuple(per_element),
            details=details,
        )


# ------------------------------------------------------------------ DI, LI, accuracy


def _orbit_logits(model: nn.Module, x: torch.Tensor, group: groups_.Group) -> torch.Tensor:
    """``[|G|, B, K]`` logits of every ``g x``; row 0 is ``f(x)``."""
    orbit = group.orbit(x)
    logits = model(orbit.flatten(0, 1))
    if logits.dim() != 2 or logits.shape[0] != orbit.shape[0] * orbit.shape[1]:
        raise ValueError(f"model must return [N, classes] logits, got {tuple(logits.shape)}")
    return logits.view(group.order, x.shape[0], -1)


def logit_error(logits_x: torch.Tensor, logits_gx: torch.Tensor) -> torch.Tensor:
    """½‖f(x) − f(gx)‖² over the last axis (P3 Eq. 2)."""
    return 0.5 * (logits_x - logits_gx).square().sum(dim=-1)


def kl_error(logits_x: torch.Tensor, logits_gx: torch.Tensor) -> torch.Tensor:
    """KL(softmax f(x) ‖ softmax f(gx)) over the last axis (P3 Eq. 1)."""
    log_p = F.log_softmax(logits_x, dim=-1)
    log_q = F.log_softmax(logits_gx, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def orbit_metrics(
    model: nn.Module,
    data: object,
    group: str | groups_.Group,
    *,
    preprocess: Preprocess | None = None,
    include_identity: bool = True,
    max_images: int | None = None,
    device: torch.device | str | None = None,
) -> dict[str, MetricResult]:
    """LI, DI and accuracy in one pass over the data (one forward of each orbit).

    Keys: ``"LI"`` (P3 Eq. 2), ``"DI"`` (Eq. 1, KL(softmax f(x) ‖ softmax f(gx))) and,
    when the data has labels, ``"accuracy"`` (top-1 over every g x: the accuracy on the
    group-transformed data, as P3 Table 1) and ``"accuracy_clean"`` (identity only).
    """
    group = groups_.get(group)
    device = torch.device(device) if device is not None else model_device(model)
    li, di, correct = _OrbitMean(group.order), _OrbitMean(group.order), _OrbitMean(group.order)
    with _evaluating(model), torch.no_grad():
        for raw, labels in iter_batches(data, max_images):
            x = _prepare(raw, preprocess, device)
            logits = _orbit_logits(model, x, group).double()
            reference = logits[:1].expand_as(logits)
            li.add(logit_error(reference, logits))
            di.add(kl_error(reference, logits).clamp_min(0.0))  # KL ≥ 0; drop rounding
            if labels is not None:
                correct.add((logits.argmax(dim=-1) == labels.to(device)).double())
    out = {
        "LI": li.result("LI", _convention("Eq. 2", include_identity), group, include_identity),
        "DI": di.result("DI", _convention("Eq. 1", include_identity), group, include_identity),
    }
    if correct.count:
        acc = correct.result(
            "accuracy", "top-1 accuracy, mean over images x and every g ∈ G", group, True
        )
        out["accuracy"] = acc
        out["accuracy_clean"] = MetricResult(
            name="accuracy_clean",
            value=acc.per_element[0],
            convention="top-1 accuracy on the untransformed images",
            n_images=acc.n_images,
            group=group.name,
        )
    return out


def logit_invariance(model: nn.Module, data: object, group: str | groups_.Group, **kw):
    """LI = mean over x, g of ½‖f(x) − f(gx)‖² (P3 Eq. 2). Options as ``orbit_metrics``."""
    return orbit_metrics(model, data, group, **kw)["LI"]


def distribution_invariance(model: nn.Module, data: object, group: str | groups_.Group, **kw):
    """DI = mean over x, g of KL(softmax f(x) ‖ softmax f(gx)) (P3 Eq. 1)."""
    return orbit_metrics(model, data, group, **kw)["DI"]


# ------------------------------------------------------------ integrated gradients


def _quadrature(steps: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Nodes α in (0, 1) and weights summing to 1 for ∫₀¹ · dα."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1.0) / 2.0, weights / 2.0
    if method == "midpoint":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    raise ValueError(f"method must be one of {', '.join(IG_METHODS)}, got {method!r}")


def _targets(target: int | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    if isinstance(target, int) and not isinstance(target, bool):
        return torch.full((batch,), target, dtype=torch.long, device=device)
    if not isinstance(target, torch.Tensor) or target.shape != (batch,):
        raise ValueError(f"target must be an int or a [{batch}] integer tensor")
    if target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got {target.dtype}")
    return target.to(device, torch.long)


def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor,
    *,
    baseline: torch.Tensor | None = None,
    steps: int = 50,
    method: str = "gausslegendre",
    internal_batch_size: int = 512,
) -> torch.Tensor:
    """Integrated gradients (Sundararajan et al. 2017) of logit ``target`` w.r.t. ``x``.

    ``IG(x) = (x − x₀) ⊙ ∫₀¹ ∇f_c(x₀ + α(x − x₀)) dα`` with x₀ = ``baseline`` (zeros by
    default), the integral by ``steps``-point Gauss–Legendre quadrature (Captum's default)
    or the midpoint rule. At most ``internal_batch_size`` interpolated inputs go through
    the model at once, so memory is bounded whatever B × steps is. Completeness:
    ``IG(x).sum() → f_c(x) − f_c(x₀)`` as steps grows. Returns a tensor like ``x``.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise TypeError("x must be a floating-point [B, ...] tensor (the model input)")
    if isinstance(internal_batch_size, bool) or internal_batch_size < 1:
        raise ValueError(f"internal_batch_size must be a positive int, got {internal_batch_size}")
    batch = x.shape[0]
    target = _targets(target, batch, x.device)
    base = torch.zeros_like(x) if baseline is None else baseline.to(x).expand_as(x)
    diff = x.detach() - base
    alphas, weights = _quadrature(steps, method)
    alpha_t = torch.as_tensor(alphas, dtype=x.dtype, device=x.device)
    weight_t = torch.as_tensor(weights, dtype=torch.float64, device=x.device)
    grad_sum = torch.zeros(x.shape, dtype=torch.float64, device=x.device)
    rows = batch * steps  # row r is image r // steps at node r % steps
    trailing = (1,) * (x.dim() - 1)
    with _evaluating(model), torch.enable_grad():
        for start in range(0, rows, internal_batch_size):
            r = torch.arange(start, min(start + internal_batch_size, rows), device=x.device)
            image, node = r // steps, r % steps
            path = base[image] + alpha_t[node].view(-1, *trailing) * diff[image]
            path.requires_grad_(True)
            logits = model(path)
            if logits.dim() != 2 or logits.shape[0] != path.shape[0]:
                raise ValueError(f"model must return [N, classes] logits, got {logits.shape}")
            picked = logits.gather(1, target[image].unsqueeze(1)).sum()
            (grad,) = torch.autograd.grad(picked, path)
            grad_sum.index_add_(0, image, grad.double() * weight_t[node].view(-1, *trailing))
    return (diff.double() * grad_sum).to(x.dtype)


# ------------------------------------------------------------------- saliency, SI


def gaussian_filter(
    maps: torch.Tensor, size: int = 3, sigma: float = 1.0, padding: str = "circular"
) -> torch.Tensor:
    """Normalized ``size × size`` Gaussian (std ``sigma``) over the last two axes.

    ``padding`` "circular" (default) commutes with both R4 and T3, so the filter never
    breaks an equivariant saliency; "reflect" and "zeros" commute with R4 only.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"filter size must be an odd positive int, got {size!r}")
    if not sigma > 0:
        raise ValueError(f"filter sigma must be positive, got {sigma!r}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    radius = size // 2
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-(offsets**2) / (2.0 * sigma**2))
    taps = taps / taps.sum()
    kernel = torch.outer(taps, taps).to(maps.device, maps.dtype).view(1, 1, size, size)
    height, width = maps.shape[-2:]
    flat = maps.reshape(-1, 1, height, width)
    if radius:
        flat = F.pad(flat, (radius,) * 4, mode=PADDINGS[padding])
    return F.conv2d(flat, kernel).view(maps.shape)


def saliency_map(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor,
    *,
    steps: int = 50,
    method: str = "gausslegendre",
    internal_batch_size: int = 512,
    threshold: float = 0.9,
    filter_size: int = 3,
    filter_sigma: float = 1.0,
    padding: str = "circular",
) -> torch.Tensor:
    """P3's saliency map m_f (§4.1) of ``x`` [B, C, H, W] → [B, H, W].

    |integrated gradients| w.r.t. the target logit (zero baseline), summed over channels;
    values below ``threshold`` × the map's maximum set to zero; then a Gaussian filter
    (size 3, σ 1 by default; see ``gaussian_filter`` for the padding).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    ig = integrated_gradients(
        model, x, target, steps=steps, method=method, internal_batch_size=internal_batch_size
    )
    magnitude = ig.abs()
    if magnitude.dim() > 3:
        magnitude = magnitude.flatten(1, -3).sum(dim=1)
    elif magnitude.dim() == 2:
        raise ValueError(f"x must be [B, C, H, W] or [B, H, W], got {tuple(x.shape)}")
    peak = magnitude.flatten(1).amax(dim=1).view(-1, 1, 1)
    kept = torch.where(magnitude >= threshold * peak, magnitude, torch.zeros_like(magnitude))
    return gaussian_filter(kept, filter_size, filter_sigma, padding)


def saliency_orbit(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor,
    group: str | groups_.Group,
    **saliency_options,
) -> torch.Tensor:
    """``[B, |G|, H, W]``: the realigned maps g⁻¹ m(g x) for every g (column 0 is m(x)).

    The target class is the same for every element of an orbit. Options as
    ``saliency_map``.
    """
    group = groups_.get(group)
    target = _targets(target, x.shape[0], x.device)
    orbit = group.orbit(x)  # [|G|, B, ...]
    maps = saliency_map(model, orbit.flatten(0, 1), target.repeat(group.order), **saliency_options)
    maps = maps.view(group.order, x.shape[0], *maps.shape[-2:])
    return torch.stack([group.act(maps[k], group.inverse(k)) for k in group.elements()], dim=1)


def _cosine_to_first(maps: torch.Tensor) -> tuple[torch.Tensor, int]:
    """cos(maps[:, 0], maps[:, k]) → [|G|, B]; two all-zero maps count as identical (1),
    one all-zero map as unrelated (0). Also returns how many pairs were degenerate."""
    flat = maps.flatten(2).double()
    reference = flat[:, :1]
    dot = (flat * reference).sum(dim=-1)
    norms = flat.norm(dim=-1)
    ref_norm = norms[:, :1].expand_as(norms)
    both_zero = (norms == 0) & (ref_norm == 0)
    one_zero = (norms == 0) ^ (ref_norm == 0)
    cos = dot / (norms * ref_norm).clamp_min(torch.finfo(torch.float64).tiny)
    cos = torch.where(one_zero, torch.zeros_like(cos), cos)
    cos = torch.where(both_zero, torch.ones_like(cos), cos)
    return cos.t(), int((both_zero | one_zero).sum())


def saliency_invariance(
    model: nn.Module,
    data: object,
    group: str | groups_.Group,
    *,
    preprocess: Preprocess | None = None,
    target: str = "label",
    include_identity: bool = True,
    max_images: int | None = None,
    device: torch.device | str | None = None,
    **saliency_options,
) -> MetricResult:
    """SI = mean over x, g of cos(m(x), g⁻¹ m(gx)) (P3 Eq. 3).

    ``target="label"`` explains the true class (P3's "target class"), ``"pred"`` the class
    predicted for the untransformed x. Saliency options (``steps=50``,
    ``internal_batch_size``, ``threshold=0.9``, ``filter_size=3``, ``filter_sigma=1``,
    ``padding``, ``method``) as ``saliency_map``. Cost: B × |G| × steps gradient passes per
    batch, so ``max_images`` is often useful.
    """
    if target not in ("label", "pred"):
        raise ValueError(f"target must be 'label' or 'pred', got {target!r}")
    group = groups_.get(group)
    device = torch.device(device) if device is not None else model_device(model)
    cosines, degenerate = _OrbitMean(group.order), 0
    for raw, labels in iter_batches(data, max_images):
        x = _prepare(raw, preprocess, device)
        if target == "label":
            if labels is None:
                raise ValueError("saliency_invariance: target='label' needs labelled data")
            classes = labels.to(device)
        else:
            with _evaluating(model), torch.no_grad():
                classes = model(x).argmax(dim=-1)
        maps = saliency_orbit(model, x, classes, group, **saliency_options)
        cos, bad = _cosine_to_first(maps)
        cosines.add(cos)
        degenerate += bad
    recorded = {**SALIENCY_DEFAULTS, **saliency_options}
    recorded.pop("internal_batch_size", None)
    return cosines.result(
        "SI",
        _convention("Eq. 3", include_identity),
        group,
        include_identity,
        target=target,
        zero_map_pairs=degenerate,
        **recorded,
    )


# ----------------------------------------------------------------------- σ_max(J)


def _initial_vectors(shape: torch.Size, first_index: int, seed: int, dtype, device):
    """A random unit vector per image, a function of (seed, image position) only."""
    size = int(torch.Size(shape[1:]).numel())
    rows = [
        np.random.default_rng([seed, first_index + i]).standard_normal(size)
        for i in range(shape[0])
    ]
    v = torch.from_numpy(np.stack(rows)).view(shape)
    v = v / v.flatten(1).norm(dim=1).view(-1, *(1,) * (v.dim() - 1))
    return v.to(device, dtype)


def _differentiable_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs that require grad, their [B, classes] logits) for the σ_max paths."""
    inputs = x.detach().requires_grad_(True)
    logits = model(inputs)
    if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        raise ValueError(f"model must return [B, classes] logits, got {tuple(logits.shape)}")
    return inputs, logits


def sigma_max_batch(
    model: nn.Module,
    x: torch.Tensor,
    *,
    max_iters: int = 100,
    tol: float = 1e-5,
    seed: int = 0,
    first_index: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """σ_max of the Jacobian ∂f(x)/∂x of each image by power iteration on JᵀJ.

    Each step is one Jacobian–vector product and one vector–Jacobian product through
    autograd; the Jacobian is never formed. Jᵀu is a backward pass of the forward graph;
    Jv is the backward, w.r.t. u, of the (linear in u) graph of Jᵀu — the
    double-backward trick, several times faster here than forward-mode AD. An image stops
    when its estimate ‖J v‖ changes by at most ``tol`` relative; the start vector depends
    only on ``seed`` and the image's position ``first_index + i``, so the result does not
    depend on how images are batched. Returns float64 ``(sigma [B], converged [B] bool)``.
    """
    if isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 1:
        raise ValueError(f"max_iters must be a positive int, got {max_iters!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be non-negative, got {tol!r}")
    trailing = (1,) * (x.dim() - 1)
    v = _initial_vectors(x.shape, first_index, seed, x.dtype, x.device)
    sigma = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    with _evaluating(model), torch.enable_grad():
        inputs, logits = _differentiable_logits(model, x)
        probe = torch.zeros_like(logits, requires_grad=True)
        (transposed,) = torch.autograd.grad(
            logits, inputs, probe, create_graph=True, materialize_grads=True
        )

        def jvp(tangent: torch.Tensor) -> torch.Tensor:
            (out,) = torch.autograd.grad(
                transposed, probe, tangent, retain_graph=True, materialize_grads=True
            )
            return out.detach()

        def vjp(cotangent: torch.Tensor) -> torch.Tensor:
            (out,) = torch.autograd.grad(
                logits, inputs, cotangent, retain_graph=True, materialize_grads=True
            )
            return out.detach()

        for _ in range(max_iters):
            u = jvp(v)
            estimate = u.flatten(1).norm(dim=1).double()
            w = vjp(u)
            w_norm = w.flatten(1).norm(dim=1)
            stopped = ((estimate - sigma).abs() <= tol * estimate) | (w_norm == 0)
            sigma = torch.where(active, estimate, sigma)
            step = w / w_norm.clamp_min(torch.finfo(w.dtype).tiny).view(-1, *trailing)
            keep = (~active | (w_norm == 0)).view(-1, *trailing)
            v = torch.where(keep, v, step)
            active = active & ~stopped
            if not bool(active.any()):
                break
    return sigma, ~active


def sigma_max_exact_batch(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """σ_max of the Jacobian ∂f(x)/∂x of each image, exactly: the C rows of J (C logits)
    by one backward pass each for the whole batch (images do not interact in eval mode),
    then the largest singular value of each [C, D] matrix in float64. Returns [B] float64.
    Cheaper than power iteration when C is small (P3's MLP: C = 9).
    """
    with _evaluating(model), torch.enable_grad():
        inputs, logits = _differentiable_logits(model, x)
        classes = logits.shape[1]
        rows = []
        for c in range(classes):
            (row,) = torch.autograd.grad(
                logits[:, c].sum(), inputs, retain_graph=c + 1 < classes, materialize_grads=True
            )
            rows.append(row.detach().flatten(1))
    jacobian = torch.stack(rows, dim=1).double()  # [B, C, D]
    return torch.linalg.matrix_norm(jacobian, ord=2)


#: ``jacobian_sigma_max(method="auto")`` forms the Jacobian when the model has at most this
#: many outputs (one backward pass per output), else it runs power iteration.
EXACT_SIGMA_MAX_OUTPUTS = 64


def jacobian_sigma_max(
    model: nn.Module,
    data: object,
    *,
    preprocess: Preprocess | None = None,
    max_iters: int = 100,
    tol: float = 1e-5,
    seed: int = 0,
    max_images: int | None = None,
    device: torch.device | str | None = None,
    method: str = "auto",
) -> MetricResult:
    """Mean over images of σ_max(∂f(x)/∂x), the input–logit Jacobian (P3 §4.4, Fig. 5).

    ``method``: ``"exact"`` forms each image's Jacobian (``sigma_max_exact_batch``),
    ``"power"`` runs power iteration to ``tol`` (``sigma_max_batch``), ``"auto"`` (default)
    is exact for models with at most ``EXACT_SIGMA_MAX_OUTPUTS`` outputs. ``details`` holds
    the method, the max and min over images and how many did not converge (power only).
    """
    if method not in ("auto", "exact", "power"):
        raise ValueError(f"method must be 'auto', 'exact' or 'power', got {method!r}")
    device = torch.device(device) if device is not None else model_device(model)
    total, count, worst, best, unconverged = 0.0, 0, 0.0, math.inf, 0
    chosen = method
    for raw, _ in iter_batches(data, max_images):
        x = _prepare(raw, preprocess, device)
        if chosen == "auto":
            with _evaluating(model), torch.no_grad():
                outputs = model(x[:1]).shape[-1]
            chosen = "exact" if outputs <= EXACT_SIGMA_MAX_OUTPUTS else "power"
        if chosen == "exact":
            sigma = sigma_max_exact_batch(model, x)
            converged = torch.ones_like(sigma, dtype=torch.bool)
        else:
            sigma, converged = sigma_max_batch(
                model, x, max_iters=max_iters, tol=tol, seed=seed, first_index=count
            )
        sigma = sigma.cpu()
        total += math.fsum(sigma.tolist())
        count += x.shape[0]
        worst, best = max(worst, float(sigma.max())), min(best, float(sigma.min()))
        unconverged += int((~converged).sum())
    if count == 0:
        raise ValueError("sigma_max: data holds no images")
    return MetricResult(
        name="sigma_max",
        value=total / count,
        convention="mean over images x of the largest singular value of ∂f(x)/∂x (logits)",
        n_images=count,
        details={
            "method": chosen,
            "max": worst,
            "min": best,
            "not_converged": unconverged,
            "max_iters": max_iters,
            "tol": tol,
        },
    )


def evaluate(
    model: nn.Module,
    data: object,
    group: str | groups_.Group,
    *,
    preprocess: Preprocess | None = None,
    si_images: int | None = None,
    sigma_images: int | None = None,
    device: torch.device | str | None = None,
    saliency_options: dict | None = None,
    sigma_options: dict | None = None,
) -> dict[str, MetricResult]:
    """Every P3 Table 1 / Fig. 5 number for one model: accuracy, LI, DI, SI, σ_max.

    ``data`` must be re-iterable (a list or a DataLoader): it is read three times. SI and
    σ_max may be limited to the first ``si_images`` / ``sigma_images`` images.
    """
    common = {"preprocess": preprocess, "device": device}
    out = orbit_metrics(model, data, group, **common)
    out["SI"] = saliency_invariance(
        model, data, group, max_images=si_images, **common, **(saliency_options or {})
    )
    out["sigma_max"] = jacobian_sigma_max(
        model, data, max_images=sigma_images, **common, **(sigma_options or {})
    )
    return out

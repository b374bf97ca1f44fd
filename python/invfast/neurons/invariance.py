"""Per-neuron invariance of a network's layers, streamed over a dataset (P1 §2.2, DESIGN §2).

``InvarianceAccumulator`` puts forward hooks on named layers of any ``nn.Module`` and runs
the two passes of P1's analysis over an iterable of ``(x, T(x), group_ids)`` batches:
pass 1 finds every neuron's maximum M_k, pass 2 bins every pair by its activity over the
whole τ grid (``invfast.ops.invariance_update``). Only the accumulators and one batch live
at once, so memory does not grow with the number of images. Its state is a dict of plain
tensors per layer: shards or ranks merge with an all_reduce (MAX after pass 1, SUM after
pass 2), which is what ``reduce_pass1`` / ``reduce_pass2`` do with a given reducer.

``GoodfellowStreaming`` is the streaming approximation of the Goodfellow et al. 2009
measure (``invfast.ops.goodfellow_invariance`` is the exact one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from invfast import kernels as ops
from invfast.kernels import reference
from invfast.kernels.stats import DEFAULT_TAUS, NEURON_MODES

ACTIVATIONS = (None, "relu", "abs")
#: all_reduce-like reducer: ``reduce(tensor, op)`` combines ``tensor`` in place across
#: shards, ``op`` being ``"max"`` or ``"sum"`` (e.g. ``torch.distributed.all_reduce``).
Reducer = Callable[[torch.Tensor, str], None]
Batches = Iterable | Callable[[], Iterable]


@dataclass
class LayerResult:
    """Invariance of one layer for every τ of the grid and every group (DESIGN §2).

    ``I``/``S`` float64 [G, T, K] (NaN where A_k(τ) is empty), ``active`` int64 [G, T, K]
    (#A_k(τ)), ``silent`` int64 [G, T], ``pairs`` int64 [G], ``taus`` float32 [T],
    ``neuron_max`` float32 [K]; ``image_active`` int64 [N, T] (n(x, τ) per image, in
    batch order) when the accumulator was asked for it.
    """

    name: str
    neurons: str
    I: torch.Tensor  # noqa: E741 - the paper's name
    S: torch.Tensor
    active: torch.Tensor
    silent: torch.Tensor
    pairs: torch.Tensor
    taus: torch.Tensor
    neuron_max: torch.Tensor
    image_active: torch.Tensor | None = None

    def mean_invariance(self) -> torch.Tensor:
        """[G, T] mean of I_k over the non-silent neurons (P1 Fig. 11's layer summary)."""
        return torch.nanmean(self.I, dim=2)


@dataclass
class _Layer:
    name: str
    module: nn.Module
    acc: dict[str, torch.Tensor] | None = None
    image_active: list[torch.Tensor] = field(default_factory=list)


class InvarianceAccumulator:
    """Streaming P1 invariance analysis of named layers of ``model``.

    ``layers``: module names (``model.get_submodule(name)``) whose outputs are the
    activations; ``groups``: G, the number of image groups (seen / unseen-transformed
    categories, or classes); ``taus``: the τ grid; ``neurons``: ``"unit"``,
    ``"channel-max"`` or ``"channel-mean"``; ``activation``: ``None`` (negative outputs
    are an error naming the layer), ``"relu"`` or ``"abs"`` applied before the statistics;
    ``backend``: forced kernel backend of ``invfast.ops`` (``None`` picks by device);
    ``image_active``: also keep n(x, τ) of every image (this grows with the number of
    images: 8·T bytes per image and layer).

    ``run(batches)`` does both passes; ``observe_max`` / ``observe_pairs`` do one batch of
    each, for callers that drive the loop (and all_reduce between the passes).
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        *,
        groups: int,
        taus: Iterable[float] | torch.Tensor = DEFAULT_TAUS,
        neurons: str = "unit",
        activation: str | None = None,
        backend: str | None = None,
        image_active: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(layers, str) or not layers:
            raise ValueError("layers must be a non-empty sequence of module names")
        if neurons not in NEURON_MODES:
            raise ValueError(f"neurons must be one of {', '.join(NEURON_MODES)}, got {neurons!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be None, 'relu' or 'abs', got {activation!r}")
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"groups must be an int >= 1, got {groups!r}")
        self.model = model
        self.groups = groups
        self.taus = ops.stats.check_taus("InvarianceAccumulator", taus)
        self.neurons = neurons
        self.activation = activation
        self.backend = backend
        self.keep_image_active = image_active
        self._layers: dict[str, _Layer] = {}
        for name in layers:
            try:
                module = model.get_submodule(name)
            except AttributeError as exc:
                raise ValueError(f"layer {name!r} is not a submodule of the model") from exc
            if name in self._layers:
                raise ValueError(f"layer {name!r} is listed twice")
            self._layers[name] = _Layer(name, module)

    # ------------------------------------------------------------------------- state
    @property
    def layer_names(self) -> list[str]:
        return list(self._layers)

    def state(self) -> dict[str, dict[str, torch.Tensor]]:
        """Accumulator tensors per layer (live views: reduce them in place to merge)."""
        return {name: layer.acc for name, layer in self._layers.items() if layer.acc is not None}

    def reduce_pass1(self, reduce: Reducer) -> None:
        """Combine pass-1 maxima across shards: ``reduce(neuron_max, "max")`` per layer."""
        for acc in self.state().values():
            reduce(acc["neuron_max"], "max")

    def reduce_pass2(self, reduce: Reducer) -> None:
        """Combine pass-2 bins across shards: ``reduce(t, "sum")`` for count/h_sum/s_sum."""
        for acc in self.state().values():
            for key in ("count", "h_sum", "s_sum"):
                reduce(acc[key], "sum")

    # ------------------------------------------------------------------------ passes
    def activations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The selected layers' activations for one batch (``activation`` applied), from
        one forward pass in eval mode. These are what both passes read. A caller that can
        keep them from pass 1 hands them to pass 2 (``observe_pairs_activations``) instead of
        running the model again, and the result is the same."""
        return self._forward(x)

    def observe_max(self, x: torch.Tensor, tx: torch.Tensor) -> None:
        """Pass 1 on one batch: M_k = max over images of max(â_k(x), â_k(T(x)))."""
        self.observe_max_activations(self._forward(x), self._forward(tx))

    def observe_max_activations(
        self, first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]
    ) -> None:
        """Pass 1 on the activations of x (``first``) and T(x) (``second``) per layer."""
        for name, layer in self._layers.items():
            a, b = first[name], second[name]
            if layer.acc is None:
                k = ops.num_neurons(a.shape, self.neurons)
                layer.acc = ops.invariance_accumulator(self.groups, k, self.taus, a.device)
            self._checked(
                name,
                ops.neuron_max,
                a,
                layer.acc["neuron_max"],
                b,
                neurons=self.neurons,
                backend=self.backend,
            )

    def observe_pairs(self, x: torch.Tensor, tx: torch.Tensor, group_ids: torch.Tensor) -> None:
        """Pass 2 on one batch: bin every pair (x, T(x)) of every layer."""
        self.observe_pairs_activations(self._forward(x), self._forward(tx), group_ids)

    def observe_pairs_activations(
        self,
        first: dict[str, torch.Tensor],
        second: dict[str, torch.Tensor],
        group_ids: torch.Tensor,
    ) -> None:
        """Pass 2 on the activations of x (``first``) and T(x) (``second``) per layer."""
        for name, layer in self._layers.items():
            if layer.acc is None:
                raise ValueError(f"layer {name!r}: run pass 1 (observe_max) before pass 2")
            a, b = first[name], second[name]
            ids = group_ids.to(a.device)
            counts = None
            if self.keep_image_active:
                counts = torch.zeros(
                    a.shape[0], self.taus.numel(), dtype=torch.int64, device=a.device
                )
            self._checked(
                name,
                ops.invariance_update,
                a,
                b,
                layer.acc["neuron_max"],
                ids,
                layer.acc,
                neurons=self.neurons,
                active_counts=counts,
                backend=self.backend,
            )
            if counts is not None:
                layer.image_active.append(counts.cpu())

    def run(self, batches: Batches, *, cache_budget: int = 0) -> dict[str, LayerResult]:
        """Both passes over ``batches`` of ``(x, T(x), group_ids)``; per-layer results.

        ``batches`` is iterated twice (a list, a DataLoader) or is a callable returning a
        fresh iterable each time (a generator function). T(x) must be the same in both
        passes (invfast transforms are pure functions of seed and image index). The model
        runs in eval mode under ``torch.inference_mode`` and its mode is restored after.
        When all of pass 1's activations fit ``cache_budget`` bytes they are kept, and
        pass 2 reads them instead of iterating ``batches`` again (DESIGN §2: same result).
        """
        cache: ActivationCache | None = ActivationCache(cache_budget)
        for x, tx, group_ids in self._iterate(batches):
            first, second = self._forward(x), self._forward(tx)
            self.observe_max_activations(first, second)
            if cache is not None and not cache.add(first, second, group_ids):
                cache = None
        if all(layer.acc is None for layer in self._layers.values()):
            raise ValueError("batches is empty: no image to analyse")
        if cache is not None:
            for first, second, group_ids in cache.entries:
                self.observe_pairs_activations(first, second, group_ids)
        else:
            for x, tx, group_ids in self._iterate(batches):
                self.observe_pairs(x, tx, group_ids)
        return self.results()

    def results(self) -> dict[str, LayerResult]:
        """Finalize every layer's accumulator (the state itself is left as it is)."""
        out = {}
        for name, layer in self._layers.items():
            if layer.acc is None:
                continue
            final = ops.invariance_finalize(layer.acc)
            image_active = torch.cat(layer.image_active) if layer.image_active else None
            out[name] = LayerResult(
                name=name,
                neurons=self.neurons,
                I=final["I"],
                S=final["S"],
                active=final["active"],
                silent=final["silent"],
                pairs=final["pairs"],
                taus=final["taus"],
                neuron_max=layer.acc["neuron_max"].clone(),
                image_active=image_active,
            )
        return out

    # ----------------------------------------------------------------------- helpers
    def _iterate(self, batches: Batches):
        source = batches() if callable(batches) else batches
        for item in source:
            if not isinstance(item, (tuple, list)) or len(item) != 3:
                raise ValueError("each batch must be a tuple (x, T(x), group_ids)")
            yield item

    def _forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        captured: dict[str, torch.Tensor] = {}
        handles = []
        for name, layer in self._layers.items():

            def hook(_module, _inputs, output, name=name):
                if isinstance(output, (tuple, list)):
                    output = output[0]
                if not isinstance(output, torch.Tensor):
                    raise ValueError(f"layer {name!r}: output is not a tensor")
                captured[name] = self._activation(output.detach())

            handles.append(layer.module.register_forward_hook(hook))
        was_training = self.model.training
        try:
            self.model.eval()
            with torch.inference_mode():
                self.model(x)
        finally:
            for handle in handles:
                handle.remove()
            self.model.train(was_training)
        missing = [name for name in self._layers if name not in captured]
        if missing:
            raise ValueError(f"layers {missing} did not run in the model's forward pass")
        return captured

    def _activation(self, t: torch.Tensor) -> torch.Tensor:
        if self.activation == "relu":
            return t.clamp(min=0)
        if self.activation == "abs":
            return t.abs()
        return t

    @staticmethod
    def _checked(name: str, op, *args, **kwargs) -> None:
        try:
            op(*args, **kwargs)
        except ValueError as exc:
            hint = ""
            if "non-negative" in str(exc):
                hint = " (or pass activation='relu' / 'abs')"
            raise ValueError(f"layer {name!r}: {exc}{hint}") from exc


class ActivationCache:
    """Pass 1's activations, kept for pass 2 while they fit ``budget`` bytes.

    ``add`` returns False (and frees what it held) once the total would exceed the budget:
    the caller then recomputes pass 2's activations. Memory is bounded by the budget, never
    by the number of images.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.bytes = 0
        self.entries: list[tuple[dict, dict, object]] = []

    def add(self, first: dict[str, torch.Tensor], second: dict[str, torch.Tensor], extra) -> bool:
        size = sum(t.numel() * t.element_size() for d in (first, second) for t in d.values())
        if self.bytes + size > self.budget:
            self.entries.clear()
            return False
        self.bytes += size
        self.entries.append((first, second, extra))
        return True


class GoodfellowStreaming:
    """Streaming approximation of the Goodfellow et al. 2009 measure (P1 Appendix D).

    For sets whose N × K activities do not fit in memory. Given M_k (pass 1), each batch
    adds two per-neuron histograms over the grid t_c = τ_c·M_k, τ_c = c/(L−1), c < L
    (``resolution`` L): of â_k(x), and of min(â_k(x), â_k(T(x))) — "fires on x and on
    T(x)". ``finalize`` picks, per neuron and p, the lowest grid threshold t_c with
    F(c) = #{â_k(x) > t_c} ≤ n = ceil(p/100 · N) and reports F(c) and #{min > t_c}.

    Error: the exact threshold (the (n+1)-th largest â_k(x)) lies in (t_{c−1}, t_c], so
    the reported ``firing`` is below the exact one by at most ``firing_error`` =
    F(c−1) − F(c) − 1 images, and ``still_firing`` by at most ``still_firing_error`` =
    G(c−1) − G(c), G(c) = #{min(â_k(x), â_k(T(x))) > t_c} (both returned per neuron; 0
    when c = 0, where the threshold is exact). Both shrink as L grows.
    Memory: two [1, K, L+1] accumulators (24·K·(L+1) bytes each), flat in N.
    """

    def __init__(
        self,
        neuron_max: torch.Tensor,
        *,
        resolution: int = 1024,
        neurons: str = "unit",
        backend: str | None = None,
    ) -> None:
        if not 2 <= resolution <= ops.stats.MAX_TAUS:
            raise ValueError(f"resolution must be in [2, {ops.stats.MAX_TAUS}], got {resolution}")
        if neurons not in NEURON_MODES:
            raise ValueError(f"neurons must be one of {', '.join(NEURON_MODES)}, got {neurons!r}")
        self.neuron_max = neuron_max.detach().float().contiguous()
        k = self.neuron_max.numel()
        grid = torch.arange(resolution, dtype=torch.float64) / (resolution - 1)
        device = self.neuron_max.device
        self.fire = ops.invariance_accumulator(1, k, grid, device)
        self.both = ops.invariance_accumulator(1, k, grid, device)
        self.neurons = neurons
        self.backend = backend

    def update(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Add a batch of activations of x (``a``) and T(x) (``b``)."""
        va = reference.neuron_activities(a.detach(), self.neurons)
        vb = reference.neuron_activities(b.detach(), self.neurons)
        ids = torch.zeros(va.shape[0], dtype=torch.int64, device=va.device)
        # A pair (v, v) has activity v: the bins of â(x), and of min(â(x), â(Tx)).
        ops.invariance_update(va, va, self.neuron_max, ids, self.fire, backend=self.backend)
        both = torch.minimum(va, vb)
        ops.invariance_update(both, both, self.neuron_max, ids, self.both, backend=self.backend)

    def finalize(self, percents: Iterable[float] = ops.GOODFELLOW_PERCENTS) -> dict:
        """Like ``ops.goodfellow_invariance``, plus the error bounds ``firing_error`` and
        ``still_firing_error`` [P, K]."""
        fire = ops.invariance_finalize(self.fire)["active"][0]  # [L, K]: F(c)
        both = ops.invariance_finalize(self.both)["active"][0]
        images = int(self.fire["count"][0, 0].sum())
        taus = self.fire["taus"]
        rows = {
            key: []
            for key in ("threshold", "firing", "still_firing", "firing_error", "still_firing_error")
        }
        grid = [float(p) for p in percents]
        for p in grid:
            if not 0.0 < p < 100.0:
                raise ValueError(f"percents must each be in (0, 100), got {p}")
            top = max(1, math.ceil(p / 100.0 * images))
            # Lowest c with F(c) <= n; F is non-increasing and F(L-1) = 0.
            c = (fire > top).sum(dim=0)  # [K]
            column = c[None, :]
            rows["threshold"].append(taus[c] * self.neuron_max)
            rows["firing"].append(fire.gather(0, column)[0])
            rows["still_firing"].append(both.gather(0, column)[0])
            previous = (c - 1).clamp(min=0)[None, :]
            firing_error = fire.gather(0, previous)[0] - fire.gather(0, column)[0] - 1
            still_error = both.gather(0, previous)[0] - both.gather(0, column)[0]
            zero = torch.zeros_like(c)
            rows["firing_error"].append(torch.where(c > 0, firing_error, zero).clamp(min=0))
            rows["still_firing_error"].append(torch.where(c > 0, still_error, zero))
        out = {key: torch.stack(value) for key, value in rows.items()}
        out["invariance"] = out["still_firing"].double() / out["firing"].double()
        out["percents"] = torch.tensor(grid, dtype=torch.float64)
        return out

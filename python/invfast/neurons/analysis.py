"""``invfast analyze``: P1's per-neuron invariance analysis of a trained checkpoint.

One sweep over the test set measures every selected layer at once (P1 §2.2, §3.2,
Appendix D; docs/invariance.md): pass 1 finds each neuron's maximum M_k over the clean and the
transformed images, pass 2 bins every pair (x, T(x)) over the whole τ grid, per group
(seen- vs unseen-transformed categories), through forward hooks and the fused kernels
(:class:`~invfast.neurons.invariance.InvarianceAccumulator`); only the accumulators and
one batch live at once. The classifier's logits of pass 1 give the within- and
across-category accuracy. Optional: the ablation curves and P1's choice of τ
(:mod:`.ablation`, :mod:`.tau`), and the Goodfellow et al. 2009 comparison.

Under ``torchrun`` every rank analyses a disjoint shard of the test set; maxima are merged
with an all_reduce MAX, bins and counts with SUM, so the result equals the single-process
one.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from invfast import kernels as ops
from invfast._version import __version__
from invfast.core import checkpoint, transforms
from invfast.core import data as data_
from invfast.core.runtime.device import resolve_device
from invfast.core.runtime.distributed import Distributed
from invfast.core.runtime.progress import progress
from invfast.kernels import backends
from invfast.neurons.ablation import MODES, ablated_accuracy, ablation_hook
from invfast.neurons.invariance import (
    ActivationCache,
    GoodfellowStreaming,
    InvarianceAccumulator,
)
from invfast.neurons.layers import resolve_layers
from invfast.neurons.paradigm import confusion_matrix, paradigm_metrics
from invfast.neurons.summaries import GROUPS, finite_stats, layer_summary
from invfast.neurons.tau import TAU_TOLERANCE, parse_taus, select_tau

LAYER_CHOICES = ("all", "penultimate")


@dataclass
class AnalysisConfig:
    """What ``invfast analyze`` measures. ``None`` fields come from the checkpoint."""

    checkpoint: str
    transform: str | None = None
    transform_params: dict = field(default_factory=dict)
    layers: str = "all"
    neurons: str = "unit"
    taus: str | Sequence[float] = "0:1:0.05"
    tau: str | float = "auto"
    ablation: bool = False
    ablate_layer: str | None = None
    goodfellow: bool = False
    activation: str | None = None
    data: str | None = None
    data_options: dict | None = None
    split: str = "test"
    batch_size: int = 256
    device: str = "cpu"
    backend: str | None = None
    seed: int | None = None
    progress: bool = False
    command: str | None = None
    cache_budget: int = 1 << 30


@dataclass
class AnalysisResult:
    report: dict
    arrays: dict[str, np.ndarray]


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Analysis:
    def __init__(self, config: AnalysisConfig) -> None:
        self.config = config
        self.dist = Distributed.from_env()
        self.ckpt = checkpoint.load(config.checkpoint)
        self.device = resolve_device(config.device, self.dist.local_rank)
        self.dist.init(self.device)
        self.model = checkpoint.build_model(self.ckpt).to(self.device)
        self.taus = parse_taus(config.taus)
        self.layers = resolve_layers(self.model, config.layers)
        if config.neurons not in ops.stats.NEURON_MODES:
            raise ValueError(
                f"--neurons must be one of {', '.join(ops.stats.NEURON_MODES)}, "
                f"got {config.neurons!r}"
            )
        if config.activation not in (None, "relu", "abs"):
            raise ValueError(f"--activation must be relu or abs, got {config.activation!r}")
        if isinstance(config.batch_size, bool) or config.batch_size < 1:
            raise ValueError(f"--batch-size must be a positive integer, got {config.batch_size}")
        self.tau_mode, self.fixed_tau_index = self._parse_tau(config.tau)
        self.transform = self._transform()
        self.identity = transforms.get("identity")
        self.standardize = checkpoint.standardization(self.ckpt)
        self.seed = int(self.ckpt["seed"] if config.seed is None else config.seed)
        self.dataset, self.images = checkpoint.evaluation_data(
            self.ckpt, spec=config.data, overrides=config.data_options, split=config.split
        )
        arch = self.ckpt["arch"]
        if self.dataset.num_classes != arch["num_classes"]:
            raise ValueError(
                f"data {self.dataset.spec!r} has {self.dataset.num_classes} classes, the "
                f"checkpoint {arch['num_classes']}"
            )
        self.seen = sorted(int(c) for c in self.ckpt["seen_transformed"])
        table = torch.ones(arch["num_classes"], dtype=torch.int64)
        table[self.seen] = 0
        self.group_of_class = table  # 0 = seen-transformed, 1 = unseen
        self.backend_name = backends.resolve(config.backend, self.device, "analyze")
        if config.ablate_layer is not None and config.ablate_layer not in self.layers:
            raise ValueError(
                f"--ablate-layer {config.ablate_layer!r} is not an analysed layer; "
                f"valid: {', '.join(self.layers)}"
            )
        self.ablate_layer = config.ablate_layer or self.layers[-1]
        self._cache: list | None = None

    def _transform(self) -> transforms.Transform:
        """The checkpoint's transformation, or the one asked for (its own parameters)."""
        stored = self.ckpt.get("transform") or {}
        name = self.config.transform or stored.get("name")
        if name is None:
            raise ValueError("--transform is required: the checkpoint names no transformation")
        if name not in transforms.names():
            raise ValueError(
                f"--transform: unknown transformation {name!r}; valid: "
                f"{', '.join(transforms.names())}"
            )
        params = dict(stored.get("params", {})) if name == stored.get("name") else {}
        params.update(self.config.transform_params)
        return transforms.get(name, **params)

    def _parse_tau(self, tau) -> tuple[str, int | None]:
        if tau == "auto":
            return "auto", None
        try:
            value = float(tau)
        except (TypeError, ValueError):
            raise ValueError(f"--tau must be auto or a value of the grid, got {tau!r}") from None
        for i, t in enumerate(self.taus):
            if abs(t - value) <= 1e-9:
                return "fixed", i
        raise ValueError(f"--tau {value} is not in the τ grid {self.taus}")

    # ------------------------------------------------------------------ data
    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(x, T(x), group ids, labels) of this rank's shard, standardized on the device.

        The transformed batches are kept between passes (and ablation runs) when they fit
        ``cache_budget`` bytes; otherwise they are recomputed (T(x) is a pure function of
        seed and image id, so every pass sees the same pairs)."""
        if self._cache is not None:
            yield from self._cache
            return
        need = self._input_cache_bytes()
        keep: list | None = [] if need <= self.config.cache_budget else None
        for item in self._fresh_batches():
            if keep is not None:
                keep.append(item)
            yield item
        if keep is not None:
            self._cache = keep

    def _input_cache_bytes(self) -> int:
        """Bytes of this rank's standardized (x, T(x)) pairs, as the input cache keeps them."""
        per_rank = math.ceil(len(self.images) / self.dist.world_size)
        side = self.dataset.image_size
        return 2 * 4 * per_rank * self.dataset.channels * side * side

    def _fresh_batches(self):
        loader = data_.loader(
            self.images,
            self.config.batch_size,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        for batch in loader:
            images = batch.images.to(self.device)
            ids = batch.ids.to(self.device)
            labels = batch.labels.to(self.device)
            x = self.identity(images, index=ids, standardize=self.standardize)
            tx = self.transform(images, seed=self.seed, index=ids, standardize=self.standardize)
            yield x, tx, self.group_of_class.to(self.device)[labels], labels

    def num_batches(self) -> int:
        per_rank = math.ceil(len(self.images) / self.dist.world_size)
        return math.ceil(per_rank / self.config.batch_size)

    # ------------------------------------------------------------------ passes
    def run(self) -> AnalysisResult:
        acc = InvarianceAccumulator(
            self.model, self.layers, groups=len(GROUPS), taus=self.taus,
            neurons=self.config.neurons, activation=self.config.activation,
            backend=self.config.backend, image_active=True,
        )  # fmt: skip
        conf_clean, conf_tr, cache = self._pass1(acc)
        goodfellow, image_groups = self._pass2(acc, cache)
        del cache
        baseline = self._pair_accuracy(conf_clean, conf_tr)
        ablation, tau_info = self._ablation(acc, baseline)
        layers, arrays = self._layers(acc, image_groups, tau_info["index"])
        report = self._report(conf_clean, conf_tr, tau_info, layers, ablation, goodfellow)
        return AnalysisResult(report=report, arrays=arrays)

    def _pass1(self, acc: InvarianceAccumulator):
        """Maxima M_k of every layer and the confusion matrices of the classifier's own
        logits; pass 1's activations are kept for pass 2 when they fit what the input
        cache leaves of the budget (the result is the same)."""
        cfg = self.config
        num_classes = self.ckpt["arch"]["num_classes"]
        logits: list[torch.Tensor] = []
        handle = self.model.register_forward_hook(lambda _m, _i, out: logits.append(out))
        conf_clean = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        conf_tr = torch.zeros_like(conf_clean)
        inputs = self._input_cache_bytes()
        left = cfg.cache_budget - inputs if inputs <= cfg.cache_budget else cfg.cache_budget
        cache: ActivationCache | None = ActivationCache(left)
        try:
            batches = progress(
                self.batches(), desc="pass 1", total=self.num_batches(), enabled=self._show
            )
            for x, tx, groups, labels in batches:
                logits.clear()
                first, second = acc.activations(x), acc.activations(tx)
                acc.observe_max_activations(first, second)
                if cache is not None and not cache.add(first, second, groups):
                    cache = None
                conf_clean += confusion_matrix(logits[0].argmax(1), labels, num_classes)
                conf_tr += confusion_matrix(logits[1].argmax(1), labels, num_classes)
        finally:
            handle.remove()
        # a rank with an empty shard still needs accumulators to take part in all_reduce
        if not acc.state():
            x = self.identity(self.images.__getitems__([0]).images.to(self.device))
            acc.observe_max(x[:0], x[:0])
        acc.reduce_pass1(self.dist.all_reduce)
        stacked = torch.stack([conf_clean, conf_tr]).to(self.device)
        self.dist.all_reduce(stacked, "sum")
        conf_clean, conf_tr = stacked.cpu()
        if int(conf_clean.sum()) == 0:
            raise ValueError("no image to analyse")
        return conf_clean, conf_tr, cache

    @property
    def _show(self) -> bool:
        return self.config.progress and self.dist.main

    def _pass2(self, acc: InvarianceAccumulator, cache: ActivationCache | None):
        """Every pair binned over the τ grid (from the kept activations when there are
        any: no forward pass), and Goodfellow's histograms on the ablation layer."""
        cfg = self.config
        goodfellow = None
        captured: list[torch.Tensor] = []
        gf_handle = None
        if cfg.goodfellow:
            state = acc.state()[self.ablate_layer]
            k = state["neuron_max"].numel()
            resolution = max(2, min(1024, (256 << 20) // max(1, 48 * k) - 1))
            goodfellow = GoodfellowStreaming(
                state["neuron_max"], resolution=resolution, neurons=cfg.neurons,
                backend=cfg.backend,
            )  # fmt: skip
            module = self.model.get_submodule(self.ablate_layer)
            gf_handle = module.register_forward_hook(
                lambda _m, _i, out: captured.append(acc._activation(out.detach()))
            )
        image_groups = []
        try:
            if cache is not None:
                for first, second, groups in progress(
                    cache.entries, desc="pass 2", total=len(cache.entries), enabled=self._show
                ):
                    acc.observe_pairs_activations(first, second, groups)
                    image_groups.append(groups.cpu())
                    if goodfellow is not None:
                        goodfellow.update(first[self.ablate_layer], second[self.ablate_layer])
            else:
                batches = progress(
                    self.batches(), desc="pass 2", total=self.num_batches(), enabled=self._show
                )
                for x, tx, groups, _ in batches:
                    captured.clear()
                    acc.observe_pairs(x, tx, groups)
                    image_groups.append(groups.cpu())
                    if goodfellow is not None:
                        goodfellow.update(captured[0], captured[1])
        finally:
            if gf_handle is not None:
                gf_handle.remove()
        acc.reduce_pass2(self.dist.all_reduce)
        groups_all = self._gather(
            torch.cat(image_groups) if image_groups else torch.zeros(0, dtype=torch.int64)
        )
        return goodfellow, groups_all

    def _layers(self, acc: InvarianceAccumulator, image_groups: torch.Tensor, tau_index: int):
        """Per-layer summaries (penultimate layer first) and the per-neuron arrays."""
        results = acc.results()
        report_layers, arrays = [], {}
        for name in reversed(self.layers):
            r = results[name]
            per_image = self._gather(r.image_active) if r.image_active is not None else None
            report_layers.append(layer_summary(r, tau_index, per_image, image_groups))
            arrays[f"{name}/I"] = r.I.numpy()
            arrays[f"{name}/S"] = r.S.numpy()
            arrays[f"{name}/active"] = r.active.numpy()
            arrays[f"{name}/neuron_max"] = r.neuron_max.cpu().numpy()
            if per_image is not None:
                arrays[f"{name}/image_active"] = per_image.numpy()
        arrays["image_groups"] = image_groups.numpy()
        arrays["taus"] = np.asarray(self.taus, dtype=np.float32)
        return report_layers, arrays

    def _report(self, conf_clean, conf_tr, tau_info, layers, ablation, goodfellow) -> dict:
        cfg = self.config
        num_classes = self.ckpt["arch"]["num_classes"]
        return {
            "tool": "invfast analyze",
            "invfast_version": __version__,
            "torch_version": torch.__version__,
            "command": cfg.command,
            "backend": self.backend_name,
            "device": str(self.device),
            "processes": self.dist.world_size,
            "seed": self.seed,
            "checkpoint": {
                "path": str(cfg.checkpoint),
                "sha256": file_sha256(cfg.checkpoint),
                "arch": self.ckpt["arch"]["name"],
                "arch_kwargs": self.ckpt["arch"]["kwargs"],
                "num_classes": num_classes,
                "classes": self.ckpt["classes"],
                "trained_transform": self.ckpt.get("transform"),
            },
            "transform": {"name": self.transform.name, "params": self.transform.params},
            "standardize": self.standardize
            if isinstance(self.standardize, str)
            else {"mean": self.standardize[0], "std": self.standardize[1]},
            "data": {**self.dataset.recipe(), "split": cfg.split, "images": int(conf_clean.sum())},
            "seen_transformed": self.seen,
            "num_seen_transformed": len(self.seen),
            "groups": list(GROUPS),
            "neurons": cfg.neurons,
            "activation": cfg.activation,
            "taus": [float(t) for t in self.taus],
            "tau": tau_info,
            "accuracy": paradigm_metrics(conf_clean, conf_tr, self.seen),
            "layers": layers,
            "layer_order": list(self.layers),
            "ablation": ablation,
            "goodfellow": self._goodfellow_report(goodfellow),
        }

    @staticmethod
    def _pair_accuracy(conf_clean: torch.Tensor, conf_tr: torch.Tensor) -> float:
        correct = conf_clean.diagonal().sum() + conf_tr.diagonal().sum()
        return float(correct) / float(conf_clean.sum() + conf_tr.sum())

    def _ablated_accuracy(self, neuron_max, tau: float, mode: str) -> tuple[float, float]:
        """(clean, transformed) accuracy with ``mode`` neurons of the ablation layer zeroed."""
        cfg = self.config
        hook = ablation_hook(neuron_max, tau, mode, cfg.neurons, cfg.activation, cfg.backend)
        return ablated_accuracy(
            self.model, self.ablate_layer, hook, self.batches(), self.dist, self.device
        )

    def _gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Per-image rows of every rank, concatenated in rank order."""
        return torch.cat(self.dist.gather_rows(tensor))

    def _ablation(self, acc: InvarianceAccumulator, baseline: float) -> tuple[dict | None, dict]:
        cfg = self.config
        neuron_max = acc.state()[self.ablate_layer]["neuron_max"]
        curves: dict[str, dict[int, tuple[float, float]]] = {"inactive": {}, "active": {}}

        def evaluate(mode: str, i: int) -> tuple[float, float]:
            if i not in curves[mode]:
                curves[mode][i] = self._ablated_accuracy(neuron_max, self.taus[i], mode)
            return curves[mode][i]

        def pair_accuracy(i: int) -> float:
            clean, transformed = evaluate("inactive", i)
            return 0.5 * (clean + transformed)

        if cfg.ablation:
            modes = MODES
            bar = progress(range(2 * len(self.taus)), desc="ablation", unit="τ",
                           enabled=cfg.progress and self.dist.main)  # fmt: skip
            for step in bar:
                evaluate(modes[step // len(self.taus)], step % len(self.taus))
        tau_info = {
            "mode": self.tau_mode,
            "tolerance": TAU_TOLERANCE,
            "ablate_layer": self.ablate_layer,
            "baseline_accuracy": baseline,
        }
        if self.tau_mode == "auto":
            known = {i: pair_accuracy(i) for i in curves["inactive"]} if cfg.ablation else None
            index, evaluated = select_tau(self.taus, pair_accuracy, baseline, known=known)
            tau_info["evaluated"] = {f"{self.taus[i]:g}": a for i, a in sorted(evaluated.items())}
            tau_info["qualified"] = index is not None
            if index is None:
                index = 0
        else:
            index = self.fixed_tau_index
        tau_info["index"] = index
        tau_info["value"] = float(self.taus[index])
        if not cfg.ablation:
            return None, tau_info
        ablation = {"layer": self.ablate_layer, "taus": [float(t) for t in self.taus],
                    "baseline": {"pairs": baseline}}  # fmt: skip
        for mode in ("inactive", "active"):
            points = [curves[mode][i] for i in range(len(self.taus))]
            ablation[mode] = {
                "clean_accuracy": [p[0] for p in points],
                "transformed_accuracy": [p[1] for p in points],
            }
        return ablation, tau_info

    def _goodfellow_report(self, goodfellow: GoodfellowStreaming | None) -> dict | None:
        if goodfellow is None:
            return None
        for key in ("fire", "both"):
            for name in ("count", "h_sum", "s_sum"):
                self.dist.all_reduce(getattr(goodfellow, key)[name], "sum")
        out = goodfellow.finalize()
        rows = []
        for j, p in enumerate(out["percents"].tolist()):
            inv = out["invariance"][j]
            rows.append({
                "percent": p,
                "mean_invariance": finite_stats(inv)["mean"],
                "median_invariance": finite_stats(inv)["median"],
                "max_firing_error": int(out["firing_error"][j].max()),
                "max_still_firing_error": int(out["still_firing_error"][j].max()),
            })  # fmt: skip
        return {"layer": self.ablate_layer, "method": "streaming histogram",
                "resolution": int(goodfellow.fire["taus"].numel()), "by_percent": rows}  # fmt: skip


def analyze(config: AnalysisConfig) -> AnalysisResult:
    """Run P1's analysis of ``config.checkpoint``; see the module docstring."""
    return _Analysis(config).run()


__all__ = ["AnalysisConfig", "AnalysisResult", "analyze", "parse_taus", "select_tau"]

"""``invfast analyze``: P1's per-neuron invariance analysis of a trained checkpoint.

One sweep over the test set measures every selected layer at once (P1 §2.2, §3.2,
Appendix D; DESIGN §2): pass 1 finds each neuron's maximum M_k over the clean and the
transformed images, pass 2 bins every pair (x, T(x)) over the whole τ grid, per group
(seen- vs unseen-transformed categories). Both passes stream through forward hooks with
the fused kernels (``invariance.InvarianceAccumulator``); only the accumulators and one
batch live at once. The classifier's logits of pass 1 give the within/across accuracy
for free. Optional: P1's τ selection by ablation (``ops.ablate`` in a forward hook), the
ablation curves, and the Goodfellow et al. 2009 comparison.

:func:`analyze` returns an :class:`AnalysisResult`: ``report`` (plain JSON-ready data:
every summary number) and ``arrays`` (per-neuron / per-image numpy arrays);
``invfast.report`` writes both into a report folder.

Under ``torchrun`` every rank analyses a disjoint shard of the test set; pass-1 maxima are
merged with an all_reduce MAX, pass-2 bins and every count with SUM, so the result equals
the single-process one.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from invfast import kernels as ops
from invfast._version import __version__
from invfast.core import checkpoint
from invfast.kernels import backends
from invfast.neurons.invariance import ActivationCache, GoodfellowStreaming, InvarianceAccumulator

GROUPS = ("seen", "unseen")
LAYER_CHOICES = ("all", "penultimate")
#: P1 Appendix D: the highest τ whose inactive-ablation costs at most one accuracy point.
TAU_TOLERANCE = 0.01
QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


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


# ---------------------------------------------------------------------------- parsing
def parse_taus(spec: str | Sequence[float]) -> list[float]:
    """``START:STOP:STEP`` (STOP included) or a comma list → ascending τ grid."""
    if not isinstance(spec, str):
        values = [float(v) for v in spec]
    elif ":" in spec:
        parts = spec.split(":")
        try:
            start, stop, step = (float(p) for p in parts)
        except ValueError:
            raise ValueError(f"--taus expects START:STOP:STEP, got {spec!r}") from None
        if not (step > 0 and stop >= start):
            raise ValueError(f"--taus {spec!r}: need STEP > 0 and STOP >= START")
        count = math.floor((stop - start) / step + 1e-9) + 1
        values = [round(start + i * step, 10) for i in range(count)]
    else:
        try:
            values = [float(v) for v in spec.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--taus expects numbers or START:STOP:STEP, got {spec!r}") from None
    if not values:
        raise ValueError("--taus is empty")
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"--taus must be finite and >= 0, got {values}")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError(f"--taus must be strictly ascending, got {values}")
    if len(values) > ops.stats.MAX_TAUS:
        raise ValueError(f"--taus has {len(values)} values; at most {ops.stats.MAX_TAUS}")
    return values


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


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------ τ selection
def select_tau(
    taus: Sequence[float],
    accuracy_at: Callable[[int], float],
    baseline: float,
    tolerance: float = TAU_TOLERANCE,
    known: dict[int, float] | None = None,
) -> tuple[int | None, dict[int, float]]:
    """Index of the highest τ whose inactive-ablation accuracy is ≥ baseline − tolerance.

    Ablating the inactive neurons removes more of them as τ grows, so the accuracy loss
    is non-decreasing in τ and a binary search finds the answer in ⌈log2 T⌉ + 1
    evaluations. ``known`` accuracies (e.g. a full curve) are used instead of calling
    ``accuracy_at``; with the full curve the answer is exact even without monotonicity.
    Returns (index or None when no τ qualifies, every accuracy evaluated by index).
    """
    seen = dict(known or {})

    def ok(i: int) -> bool:
        if i not in seen:
            seen[i] = float(accuracy_at(i))
        return seen[i] >= baseline - tolerance - 1e-12

    if known is not None and len(seen) == len(taus):
        passing = [i for i in range(len(taus)) if ok(i)]
        return (passing[-1] if passing else None), seen
    lo, hi = 0, len(taus) - 1
    if not ok(lo):
        return None, seen
    while lo < hi:  # invariant: ok(lo); the answer is in [lo, hi]
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo, seen


# --------------------------------------------------------------------------- summaries
def _stats(values: torch.Tensor) -> dict:
    """mean / median / quantiles of the finite values (None when there are none)."""
    v = values[torch.isfinite(values)].double()
    if v.numel() == 0:
        return {"mean": None, "median": None, "quantiles": None, "n": 0}
    q = torch.quantile(v, torch.tensor(QUANTILES, dtype=torch.float64)) if v.numel() else None
    return {
        "mean": float(v.mean()),
        "median": float(v.median()),
        "quantiles": [float(x) for x in q],
        "n": int(v.numel()),
    }


def _table_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Per row of [..., K] (NaN = undefined): mean, median, quantiles, count of finite."""
    finite = np.isfinite(values)
    n = finite.sum(axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN
        return {
            "mean": np.nanmean(values, axis=-1),
            "median": np.nanmedian(values, axis=-1),
            "quantiles": np.moveaxis(np.nanquantile(values, QUANTILES, axis=-1), 0, -1),
            "n": n,
        }


def _row(stats: dict[str, np.ndarray], index: tuple) -> dict:
    if stats["n"][index] == 0:
        return {"mean": None, "median": None, "quantiles": None, "n": 0}
    return {
        "mean": float(stats["mean"][index]),
        "median": float(stats["median"][index]),
        "quantiles": [float(q) for q in stats["quantiles"][index]],
        "n": int(stats["n"][index]),
    }


def _layer_summary(result, tau_index: int, image_active, image_groups) -> dict:
    inv = _table_stats(result.I.numpy())
    spec = _table_stats(result.S.numpy())
    act = _table_stats(result.active.numpy().astype(np.float64))
    per_image = None
    if image_active is not None:
        counts = image_active.numpy().astype(np.float64)  # [N, T]
        ids = image_groups.numpy()
        per_image = [_table_stats(counts[ids == g].T) for g in range(len(GROUPS))]
    groups = {}
    for g, group in enumerate(GROUPS):
        per_tau = []
        for i in range(result.taus.numel()):
            row = {
                "tau": float(result.taus[i]),
                "mean_I": _row(inv, (g, i))["mean"],
                "median_I": _row(inv, (g, i))["median"],
                "quantiles_I": _row(inv, (g, i))["quantiles"],
                "mean_S": _row(spec, (g, i))["mean"],
                "median_S": _row(spec, (g, i))["median"],
                "silent": int(result.silent[g, i]),
                "active_per_neuron": _row(act, (g, i)),
            }
            if per_image is not None:
                row["active_per_image"] = _row(per_image[g], (i,))
            per_tau.append(row)
        groups[group] = {
            "pairs": int(result.pairs[g]),
            "by_tau": per_tau,
            "at_tau": per_tau[tau_index],
        }
    return {"name": result.name, "neurons": int(result.I.shape[2]), "groups": groups}


# ------------------------------------------------------------------------------ runner
class _Distributed:
    def __init__(self) -> None:
        import os

        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def init(self, device: torch.device) -> None:
        if not self.enabled:
            return
        import torch.distributed as tdist

        if not tdist.is_initialized():
            tdist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")

    def reduce(self, tensor: torch.Tensor, op: str) -> None:
        if not self.enabled:
            return
        import torch.distributed as tdist

        kind = tdist.ReduceOp.MAX if op == "max" else tdist.ReduceOp.SUM
        tdist.all_reduce(tensor, op=kind)

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate a CPU tensor's rows over the ranks (in rank order)."""
        if not self.enabled:
            return tensor
        import torch.distributed as tdist

        parts: list = [None] * self.world
        tdist.all_gather_object(parts, tensor.cpu())
        return torch.cat(parts)


def _progress(iterable, enabled: bool, desc: str, total: int):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit="batch", leave=False)


def _ablation_hook(neuron_max, tau, mode, neurons, activation, backend):
    def hook(_module, _inputs, output):
        activity = output
        if activation == "relu":
            activity = output.clamp(min=0)
        elif activation == "abs":
            activity = output.abs()
        kept = ops.ablate(activity, neuron_max, tau, mode, neurons=neurons, backend=backend)
        if activation is None:
            return kept
        return torch.where(kept == 0, torch.zeros_like(output), output)

    return hook


class _Analysis:
    def __init__(self, config: AnalysisConfig) -> None:
        from invfast.core import data, transforms
        from invfast.neurons import training

        self.config = config
        self.dist = _Distributed()
        self.ckpt = checkpoint.load(config.checkpoint)
        self.device = training.resolve_device(config.device, self.dist.local_rank)
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
        # transformation: the checkpoint's unless overridden
        stored = self.ckpt.get("transform") or {}
        name = config.transform or stored.get("name")
        if name is None:
            raise ValueError("--transform is required: the checkpoint names no transformation")
        if name not in transforms.names():
            raise ValueError(
                f"--transform: unknown transformation {name!r}; valid: "
                f"{', '.join(transforms.names())}"
            )
        params = dict(stored.get("params", {})) if name == stored.get("name") else {}
        params.update(config.transform_params)
        self.transform = transforms.get(name, **params)
        self.identity = transforms.get("identity")
        self.standardize = checkpoint.standardization(self.ckpt)
        self.seed = int(self.ckpt["seed"] if config.seed is None else config.seed)
        # data: the checkpoint's unless overridden
        recipe = self.ckpt.get("data") or {}
        spec = config.data or recipe.get("spec")
        if spec is None:
            raise ValueError("--data is required: the checkpoint names no dataset")
        options = dict(recipe.get("options", {})) if spec == recipe.get("spec") else {}
        if config.data_options:
            options.update({k: v for k, v in config.data_options.items() if v is not None})
        self.dataset = data.load(spec, **options)
        arch = self.ckpt["arch"]
        if self.dataset.num_classes != arch["num_classes"]:
            raise ValueError(
                f"data {spec!r} has {self.dataset.num_classes} classes, the checkpoint "
                f"{arch['num_classes']}"
            )
        shape = (self.dataset.channels, self.dataset.image_size)
        if shape != (arch["in_channels"], arch["image_size"]):
            raise ValueError(
                f"data {spec!r} has {shape[0]}×{shape[1]}×{shape[1]} images, the checkpoint "
                f"expects {arch['in_channels']}×{arch['image_size']}×{arch['image_size']}"
            )
        if config.split not in ("test", "train"):
            raise ValueError(f"--split must be test or train, got {config.split!r}")
        self.images = getattr(self.dataset, config.split)
        if len(self.images) == 0:
            raise ValueError(f"data {spec!r}: the {config.split} split is empty")
        self.seen = sorted(int(c) for c in self.ckpt["seen_transformed"])
        table = torch.zeros(arch["num_classes"], dtype=torch.int64)
        table[:] = 1
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
        per_rank = math.ceil(len(self.images) / self.dist.world)
        side = self.dataset.image_size
        return 2 * 4 * per_rank * self.dataset.channels * side * side

    def _fresh_batches(self):
        from invfast.core import data

        loader = data.loader(
            self.images, self.config.batch_size, rank=self.dist.rank, world_size=self.dist.world
        )
        for batch in loader:
            images = batch.images.to(self.device)
            ids = batch.ids.to(self.device)
            labels = batch.labels.to(self.device)
            x = self.identity(images, index=ids, standardize=self.standardize)
            tx = self.transform(images, seed=self.seed, index=ids, standardize=self.standardize)
            yield x, tx, self.group_of_class.to(self.device)[labels], labels

    def num_batches(self) -> int:
        per_rank = math.ceil(len(self.images) / self.dist.world)
        return math.ceil(per_rank / self.config.batch_size)

    # ------------------------------------------------------------------ passes
    def run(self) -> AnalysisResult:
        from invfast.neurons import training

        cfg = self.config
        num_classes = self.ckpt["arch"]["num_classes"]
        acc = InvarianceAccumulator(
            self.model, self.layers, groups=len(GROUPS), taus=self.taus, neurons=cfg.neurons,
            activation=cfg.activation, backend=cfg.backend, image_active=True,
        )  # fmt: skip
        logits: list[torch.Tensor] = []
        handle = self.model.register_forward_hook(lambda _m, _i, out: logits.append(out))
        conf_clean = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        conf_tr = torch.zeros_like(conf_clean)
        try:
            show = cfg.progress and self.dist.rank == 0
            # Pass 1's activations are kept for pass 2 when they fit what the input cache
            # leaves of --cache-budget (DESIGN §2: the result is the same).
            inputs = self._input_cache_bytes()
            left = cfg.cache_budget - inputs if inputs <= cfg.cache_budget else cfg.cache_budget
            cache: ActivationCache | None = ActivationCache(left)
            batches = _progress(self.batches(), show, "pass 1", self.num_batches())
            for x, tx, groups, labels in batches:
                logits.clear()
                first, second = acc.activations(x), acc.activations(tx)
                acc.observe_max_activations(first, second)
                if cache is not None and not cache.add(first, second, groups):
                    cache = None
                conf_clean += training.confusion_matrix(logits[0].argmax(1), labels, num_classes)
                conf_tr += training.confusion_matrix(logits[1].argmax(1), labels, num_classes)
        finally:
            handle.remove()
        # a rank with an empty shard still needs accumulators to take part in all_reduce
        if not acc.state():
            x = self.identity(self.images.__getitems__([0]).images.to(self.device))
            acc.observe_max(x[:0], x[:0])
        acc.reduce_pass1(self.dist.reduce)
        stacked = torch.stack([conf_clean, conf_tr]).to(self.device)
        self.dist.reduce(stacked, "sum")
        conf_clean, conf_tr = stacked.cpu()
        if int(conf_clean.sum()) == 0:
            raise ValueError("no image to analyse")

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
            if cache is not None:  # pass 2 from the kept activations: no forward pass
                for first, second, groups in _progress(
                    cache.entries, show, "pass 2", len(cache.entries)
                ):
                    acc.observe_pairs_activations(first, second, groups)
                    image_groups.append(groups.cpu())
                    if goodfellow is not None:
                        goodfellow.update(first[self.ablate_layer], second[self.ablate_layer])
            else:
                batches = _progress(self.batches(), show, "pass 2", self.num_batches())
                for x, tx, groups, _ in batches:
                    captured.clear()
                    acc.observe_pairs(x, tx, groups)
                    image_groups.append(groups.cpu())
                    if goodfellow is not None:
                        goodfellow.update(captured[0], captured[1])
        finally:
            if gf_handle is not None:
                gf_handle.remove()
        del cache
        acc.reduce_pass2(self.dist.reduce)
        results = acc.results()
        groups_all = self.dist.gather(
            torch.cat(image_groups) if image_groups else torch.zeros(0, dtype=torch.int64)
        )

        accuracy = training.paradigm_metrics(conf_clean, conf_tr, self.seen)
        baseline = self._pair_accuracy(conf_clean, conf_tr)
        ablation, tau_info = self._ablation(acc, baseline)
        tau_index = tau_info["index"]

        report_layers, arrays = [], {}
        for name in reversed(self.layers):  # penultimate first (DESIGN §2)
            r = results[name]
            per_image = self.dist.gather(r.image_active) if r.image_active is not None else None
            report_layers.append(_layer_summary(r, tau_index, per_image, groups_all))
            arrays[f"{name}/I"] = r.I.numpy()
            arrays[f"{name}/S"] = r.S.numpy()
            arrays[f"{name}/active"] = r.active.numpy()
            arrays[f"{name}/neuron_max"] = r.neuron_max.cpu().numpy()
            if per_image is not None:
                arrays[f"{name}/image_active"] = per_image.numpy()
        arrays["image_groups"] = groups_all.numpy()
        arrays["taus"] = np.asarray(self.taus, dtype=np.float32)

        report = {
            "tool": "invfast analyze",
            "invfast_version": __version__,
            "torch_version": torch.__version__,
            "command": cfg.command,
            "backend": self.backend_name,
            "device": str(self.device),
            "processes": self.dist.world,
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
            "accuracy": accuracy,
            "layers": report_layers,
            "layer_order": list(self.layers),
            "ablation": ablation,
            "goodfellow": self._goodfellow_report(goodfellow),
        }
        return AnalysisResult(report=report, arrays=arrays)

    @staticmethod
    def _pair_accuracy(conf_clean: torch.Tensor, conf_tr: torch.Tensor) -> float:
        correct = conf_clean.diagonal().sum() + conf_tr.diagonal().sum()
        return float(correct) / float(conf_clean.sum() + conf_tr.sum())

    def _ablated_accuracy(self, neuron_max, tau: float, mode: str) -> tuple[float, float]:
        """(clean, transformed) accuracy with ``mode`` neurons of the ablation layer zeroed."""
        cfg = self.config
        module = self.model.get_submodule(self.ablate_layer)
        hook = _ablation_hook(neuron_max, tau, mode, cfg.neurons, cfg.activation, cfg.backend)
        handle = module.register_forward_hook(hook)
        counts = torch.zeros(3, dtype=torch.int64)  # correct clean, correct transformed, images
        try:
            with torch.inference_mode():
                for x, tx, _, labels in self.batches():
                    counts[0] += int((self.model(x).argmax(1) == labels).sum())
                    counts[1] += int((self.model(tx).argmax(1) == labels).sum())
                    counts[2] += labels.numel()
        finally:
            handle.remove()
        counts = counts.to(self.device)
        self.dist.reduce(counts, "sum")
        counts = counts.cpu()
        return float(counts[0]) / float(counts[2]), float(counts[1]) / float(counts[2])

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
            modes = ("inactive", "active")
            bar = _progress(range(2 * len(self.taus)), cfg.progress and self.dist.rank == 0,
                            "ablation", 2 * len(self.taus))  # fmt: skip
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
                self.dist.reduce(getattr(goodfellow, key)[name], "sum")
        out = goodfellow.finalize()
        rows = []
        for j, p in enumerate(out["percents"].tolist()):
            inv = out["invariance"][j]
            rows.append({
                "percent": p,
                "mean_invariance": _stats(inv)["mean"],
                "median_invariance": _stats(inv)["median"],
                "max_firing_error": int(out["firing_error"][j].max()),
                "max_still_firing_error": int(out["still_firing_error"][j].max()),
            })  # fmt: skip
        return {"layer": self.ablate_layer, "method": "streaming histogram",
                "resolution": int(goodfellow.fire["taus"].numel()), "by_percent": rows}  # fmt: skip


def analyze(config: AnalysisConfig) -> AnalysisResult:
    """Run P1's analysis of ``config.checkpoint``; see the module docstring."""
    return _Analysis(config).run()


__all__ = ["AnalysisConfig", "AnalysisResult", "analyze", "parse_taus", "select_tau"]

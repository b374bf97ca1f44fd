"""Training with P1's across-category paradigm (P1 §2.1, Appendix B; docs/training.md).

The seen-transformed categories and the per-image transform draws come from
:mod:`invfast.neurons.paradigm`. Every epoch is evaluated (clean, within- and
across-category accuracy, P1 Fig. 6's confusion) and the model with the best validation
accuracy is kept. Runs in one process or under ``torchrun`` with DistributedDataParallel.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from invfast.core import checkpoint, data, models, transforms
from invfast.core.runtime.device import resolve_device
from invfast.core.runtime.distributed import Distributed
from invfast.core.runtime.outputs import check_output_folder, write_json
from invfast.core.runtime.progress import progress
from invfast.neurons.paradigm import (
    class_order,
    confusion_matrix,
    format_confusion,
    paradigm_mask,
    paradigm_metrics,
    parse_seen_transformed,
    seen_transformed_classes,
    transform_seed,
)

GENERIC_RECIPE = dict(
    optimizer="adam", lr=1e-3, momentum=0.9, weight_decay=0.0, batch_size=64, epochs=10,
    schedule="constant",
)  # fmt: skip
OPTIMIZERS = models.OPTIMIZERS
SCHEDULES = ("constant", "step", "cosine")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint and metrics)."""

    arch: str
    data: str
    out: str
    transform: str = "blur"
    transform_params: dict = field(default_factory=dict)
    seen_transformed: str = "all"
    transform_probability: float = 0.5
    seed: int = 0
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    lr_step: int = 30
    lr_gamma: float = 0.1
    val_fraction: float = 0.1
    eval_batch_size: int = 256
    arch_kwargs: dict = field(default_factory=dict)
    data_options: dict = field(default_factory=dict)
    device: str = "auto"
    amp: bool | None = None
    workers: int | None = None
    overwrite: bool = False
    progress: bool = True
    cache_dir: str | None = None

    def resolved(self) -> TrainConfig:
        """A copy with every None filled from the architecture's recipe (or the generic one)."""
        recipe = {**GENERIC_RECIPE, **models.spec(self.arch).recipe}
        filled = copy.deepcopy(self)
        for key, value in recipe.items():
            if getattr(filled, key) is None:
                setattr(filled, key, value)
        filled.check()
        return filled

    def check(self) -> None:
        def positive(name: str, integer: bool = True) -> None:
            value = getattr(self, name)
            ok = isinstance(value, int) and not isinstance(value, bool) if integer else (
                isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value)
            )  # fmt: skip
            if not ok or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")

        for name in ("epochs", "batch_size", "eval_batch_size", "lr_step"):
            positive(name)
        positive("lr", integer=False)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"
            )
        for name in ("momentum", "weight_decay"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if not 0.0 < self.lr_gamma <= 1.0:
            raise ValueError(f"lr_gamma must be in (0, 1], got {self.lr_gamma}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.transform_probability <= 1.0:
            raise ValueError(
                f"transform_probability must be in [0, 1], got {self.transform_probability}"
            )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches,
    transform,
    num_classes: int,
    device: torch.device,
    *,
    seed: int,
    apply_fn: Callable | None = None,
    clean: bool = True,
    dist: Distributed | None = None,
    amp: bool = False,
    standardize: str | tuple = "per-image",
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Confusion matrices (clean, transformed) over ``batches``; summed over processes.

    ``apply_fn(labels, ids) -> bool mask`` restricts which images are transformed (the
    training distribution for validation); by default every image is transformed.
    """
    identity = transforms.get("identity")
    was_training = model.training
    model.eval()
    conf_clean = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    conf_tr = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for batch in batches:
        images = batch.images.to(device, non_blocking=True)
        labels, ids = batch.labels.to(device), batch.ids.to(device)
        with torch.autocast(device.type, enabled=amp):
            if clean:
                x = identity(images, index=ids, standardize=standardize)
                conf_clean += confusion_matrix(model(x).argmax(1), labels, num_classes)
            apply = apply_fn(labels, ids) if apply_fn is not None else None
            x = transform(images, seed=seed, index=ids, apply=apply, standardize=standardize)
            conf_tr += confusion_matrix(model(x).argmax(1), labels, num_classes)
    if dist is not None and dist.enabled:
        stacked = torch.stack([conf_clean, conf_tr]).to(device)
        dist.all_reduce(stacked)
        conf_clean, conf_tr = stacked.cpu()
    model.train(was_training)
    return (conf_clean if clean else None), conf_tr


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """Learning rate of epoch ``epoch`` (0-based)."""
    if config.schedule == "step":
        return config.lr * config.lr_gamma ** (epoch // config.lr_step)
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))
    return config.lr


def _fmt(value: float | None) -> str:
    return "  -  " if value is None else f"{100 * value:5.1f}"


def format_row(epoch: int | str, row: Mapping) -> str:
    test = row["test"]
    return (
        f"{epoch!s:>5} {row['train_loss']:8.4f} {_fmt(row['train_accuracy'])} "
        f"{_fmt(row.get('val_accuracy'))}  {_fmt(test['clean_accuracy'])} "
        f"{_fmt(test['within_accuracy'])} {_fmt(test['across_accuracy'])} "
        f"{row['seconds']:6.1f}s"
    )


TABLE_HEADER = "epoch     loss train   val  clean within across    time   (accuracy, %)"


def _train_epoch(
    net: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    transform: transforms.Transform,
    seen_table: torch.Tensor,
    config: TrainConfig,
    epoch: int,
    *,
    device: torch.device,
    amp: bool,
    dist: Distributed,
) -> tuple[float, float]:
    """One epoch of P1's paradigm: images of seen-transformed categories are transformed
    with probability ``config.transform_probability`` (a draw per seed, epoch and image id).
    Returns (mean training loss, training accuracy) over every rank's images."""
    model = net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net
    net.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    count = torch.zeros((), dtype=torch.int64, device=device)
    step_seed = transform_seed(config.seed, epoch)
    bar = progress(
        loader, desc=f"epoch {epoch + 1}/{config.epochs}", enabled=config.progress and dist.main
    )
    for batch in bar:
        images = batch.images.to(device, non_blocking=True)
        labels = batch.labels.to(device, non_blocking=True)
        ids = batch.ids.to(device, non_blocking=True)
        apply = paradigm_mask(
            labels, ids, seen_table, config.seed, epoch, config.transform_probability
        )
        x = transform(images, seed=step_seed, index=ids, apply=apply, standardize="per-image")
        with torch.autocast(device.type, enabled=amp):
            logits = net(x)
            loss = F.cross_entropy(logits, labels)
            for aux_logits in getattr(model, "last_aux_logits", ()):  # GoogLeNet, weight 0.3
                loss = loss + 0.3 * F.cross_entropy(aux_logits, labels)
        if not torch.isfinite(loss):
            raise ValueError(
                f"training diverged (loss {loss.item()}) in epoch {epoch + 1}; lower --lr"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.detach().double() * len(labels)
        correct += (logits.detach().argmax(1) == labels).sum()
        count += len(labels)
    totals = torch.stack([loss_sum, correct.double(), count.double()])
    dist.all_reduce(totals)
    total = max(float(totals[2]), 1.0)
    return float(totals[0]) / total, float(totals[1]) / total


#: the files of a run folder
OUTPUT_FILES = ("ckpt.pt", "metrics.json")


@dataclass
class TrainResult:
    out: Path
    metrics: dict
    checkpoint: Path


def train(
    config: TrainConfig,
    *,
    log: Callable[[str], None] | None = None,
    command: str | None = None,
) -> TrainResult:
    """Train with P1's paradigm, evaluate every epoch, keep the best validation model.

    Writes ``ckpt.pt`` (best model so far, then final) and ``metrics.json`` into
    ``config.out`` atomically; under torchrun only rank 0 writes and prints.
    """
    config = config.resolved()
    dist = Distributed.from_env()
    device = resolve_device(config.device, dist.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init(device)
    out = check_output_folder(config.out, overwrite=config.overwrite)
    dist.barrier()  # every rank has checked --out before rank 0 creates it
    amp = (device.type == "cuda") if config.amp is None else bool(config.amp)
    if amp and device.type != "cuda":
        raise ValueError("--amp needs --device cuda (mixed precision is for GPUs here)")
    say = (log or print) if dist.main else (lambda _msg: None)

    transform = transforms.get(config.transform, **config.transform_params)
    dataset = data.load(config.data, cache_dir=config.cache_dir, **config.data_options)
    num_classes = dataset.num_classes
    n_seen = parse_seen_transformed(config.seen_transformed, num_classes)
    seen = seen_transformed_classes(num_classes, n_seen, config.seed)
    seen_table = torch.zeros(num_classes, dtype=torch.bool)
    seen_table[seen] = True

    train_idx, val_idx = data.split_per_class(
        dataset.train.labels, config.val_fraction, dataset.options["split_seed"], salt=1
    )
    train_set = dataset.train.subset(train_idx)
    val_set = dataset.train.subset(val_idx) if len(val_idx) else None

    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)

    torch.manual_seed(config.seed)
    model = models.build(
        config.arch, num_classes, dataset.channels, dataset.image_size, **config.arch_kwargs
    ).to(device)
    net: nn.Module = model
    if dist.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = models.optimizer(
        config.optimizer,
        net.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    on_files = isinstance(dataset.train, data.FileImageSet)
    workers = config.workers if config.workers is not None else (2 if on_files else 0)
    pin = device.type == "cuda"
    shard = dict(rank=dist.rank, world_size=dist.world_size)
    train_loader = data.loader(
        train_set, config.batch_size, shuffle=True, seed=config.seed, workers=workers,
        pin_memory=pin, pad=True, **shard,
    )  # fmt: skip

    def eval_loader(images):
        return data.loader(images, config.eval_batch_size, workers=workers, pin_memory=pin, **shard)

    test_loader = eval_loader(dataset.test)
    val_loader = eval_loader(val_set) if val_set is not None else None

    def val_apply(labels, ids):  # held-out images under the training distribution
        return paradigm_mask(labels, ids, seen_table, config.seed, -1, config.transform_probability)

    run_info = {
        "config": asdict(config),
        "dataset": {**dataset.recipe(), "summary": dataset.summary(), "classes": dataset.classes,
                    "train_images": len(train_set), "val_images": len(val_set or []),
                    "test_images": len(dataset.test)},
        "seen_transformed": seen,
        "seen_transformed_count": n_seen,
        "class_order": class_order(num_classes, config.seed),
        "transform": {"name": transform.name, "params": dict(transform.params)},
        "device": str(device),
        "world_size": dist.world_size,
        "amp": amp,
        "command": command if command is not None else " ".join(sys.argv),
    }  # fmt: skip
    say(dataset.summary())
    say(
        f"{config.arch} on {device} | transform {transform.name} {transform.params} | "
        f"seen-transformed {n_seen}/{num_classes}: {seen}"
    )
    say(TABLE_HEADER)

    history: list[dict] = []
    best_val, best_epoch, best_state = -1.0, -1, None
    checkpoint_path = out / "ckpt.pt"

    def save_checkpoint(state: Mapping, metrics: Mapping) -> None:
        if not dist.main:
            return
        checkpoint.save(
            checkpoint_path, arch=config.arch, arch_kwargs=config.arch_kwargs, state_dict=state,
            num_classes=num_classes, in_channels=dataset.channels,
            image_size=dataset.image_size, classes=dataset.classes, standardize="per-image",
            data=dataset.recipe(),
            transform={"name": transform.name, "params": dict(transform.params)},
            seen_transformed=seen, seed=config.seed, metrics=metrics,
            training={k: v for k, v in asdict(config).items() if k not in ("out", "cache_dir")},
        )  # fmt: skip

    for epoch in range(config.epochs):
        started = time.perf_counter()
        lr = learning_rate(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        train_loader.sampler.set_epoch(epoch)
        loss, accuracy = _train_epoch(
            net, train_loader, optimizer, scaler, transform, seen_table, config, epoch,
            device=device, amp=amp, dist=dist,
        )  # fmt: skip

        val_accuracy = None
        if val_loader is not None:
            _, val_conf = evaluate(
                model, val_loader, transform, num_classes, device, seed=config.seed,
                apply_fn=val_apply, clean=False, dist=dist, amp=amp,
            )  # fmt: skip
            val_accuracy = float(val_conf.diagonal().sum()) / max(int(val_conf.sum()), 1)
        clean_conf, tr_conf = evaluate(
            model, test_loader, transform, num_classes, device, seed=config.seed, dist=dist,
            amp=amp,
        )  # fmt: skip
        row = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": loss,
            "train_accuracy": accuracy,
            "val_accuracy": val_accuracy,
            "test": paradigm_metrics(clean_conf, tr_conf, seen),
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        say(format_row(epoch + 1, row))
        score = val_accuracy if val_accuracy is not None else float(epoch)
        if score > best_val:  # ties keep the earlier epoch
            best_val, best_epoch = score, epoch + 1
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            save_checkpoint(best_state, {"best_epoch": best_epoch, "val_accuracy": val_accuracy,
                                         "test": row["test"]})  # fmt: skip
        if dist.main:
            write_json(
                out / "metrics.json",
                {**run_info, "history": history, "best_epoch": best_epoch, "complete": False},
            )

    assert best_state is not None
    model.load_state_dict(best_state)
    clean_conf, tr_conf = evaluate(
        model, test_loader, transform, num_classes, device, seed=config.seed, dist=dist, amp=amp
    )
    final = paradigm_metrics(clean_conf, tr_conf, seen)
    final_row = {
        "best_epoch": best_epoch,
        "val_accuracy": history[best_epoch - 1]["val_accuracy"],
        "test": final,
        "confusion_clean": clean_conf.tolist(),
        "confusion_transformed": tr_conf.tolist(),
    }
    metrics = {**run_info, "history": history, "best_epoch": best_epoch, "final": final_row,
               "complete": True}  # fmt: skip
    save_checkpoint(best_state, {k: v for k, v in final_row.items()})
    if dist.main:
        write_json(out / "metrics.json", metrics)
    say(f"best epoch {best_epoch} (validation accuracy {_fmt(final_row['val_accuracy'])} %):")
    say(TABLE_HEADER)
    say(format_row("best", {**history[best_epoch - 1], "test": final}))
    say(format_confusion(final))
    say(f"wrote {checkpoint_path} and {out / 'metrics.json'}")
    dist.barrier()
    return TrainResult(out, metrics, checkpoint_path)

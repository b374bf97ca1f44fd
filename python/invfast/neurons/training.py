"""P1's across-category training paradigm (§2.1, Appendix B; DESIGN §5).

Categories are shuffled by the seed and the first N are *seen-transformed*: each of their
training images is transformed with probability 0.5 (a deterministic draw per (seed,
epoch, image id), passed to the fused transform as its ``apply`` mask); the other
categories are never transformed in training. Evaluation reports clean accuracy,
*within-category* accuracy (transformed test images of seen-transformed categories),
*across-category* accuracy (transformed test images of the others) and the 2×2
seen/unseen confusion of P1 Fig. 6, every epoch and for the selected (best-validation)
model. Runs single-process or under ``torchrun`` with DistributedDataParallel.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# ----------------------------------------------------------------------------------------
# The paradigm: which categories are seen transformed, and which images are transformed


def parse_seen_transformed(value: str | int | float, num_classes: int) -> int:
    """How many categories are seen transformed: ``all``, a count ``N`` (0..C) or a
    fraction with a decimal point (``0.25`` → round(0.25·C))."""
    text = str(value).strip().lower()
    if text == "all":
        return num_classes
    try:
        if isinstance(value, float) or "." in text or "e" in text:
            fraction = float(text)
            if not 0.0 <= fraction <= 1.0:
                raise ValueError
            return round(fraction * num_classes)
        count = int(text)
    except ValueError:
        raise ValueError(
            f"seen_transformed must be 'all', a count 0..{num_classes} or a fraction in "
            f"[0, 1], got {value!r}"
        ) from None
    if not 0 <= count <= num_classes:
        raise ValueError(f"seen_transformed must be in 0..{num_classes} (classes), got {count}")
    return count


def class_order(num_classes: int, seed: int) -> list[int]:
    """The categories shuffled by the seed; the first N are seen transformed, so the
    seen-transformed sets are nested as N grows (P1 Appendix B)."""
    g = torch.Generator().manual_seed(seed % (2**63))
    return torch.randperm(num_classes, generator=g).tolist()


def seen_transformed_classes(num_classes: int, count: int, seed: int) -> list[int]:
    """The ``count`` seen-transformed categories for this seed, sorted."""
    return sorted(class_order(num_classes, seed)[:count])


_MASK32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xor-shift-multiply); int64 tensors, values < 2^32. The
    multiplier is below 2^31 so no product overflows int64."""
    x = x & _MASK32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    return (x >> 16) ^ x


def uniform_draw(seed: int, epoch: int, ids: torch.Tensor) -> torch.Tensor:
    """A uniform number in [0, 1) per image, a pure function of (seed, epoch, image id):
    independent of batch composition, order, process count and device."""
    key = _mix32(torch.tensor((seed ^ 0x9E3779B9) & _MASK32, dtype=torch.int64))
    key = _mix32(key ^ ((epoch ^ 0x85EBCA6B) & _MASK32)).to(ids.device)
    ids = ids.to(torch.int64)
    low = _mix32((ids ^ 0x27D4EB2F) & _MASK32)
    high = _mix32(((ids >> 32) ^ 0x165667B1) & _MASK32)
    h = _mix32(key ^ low ^ (high * 3 & _MASK32))
    return h.to(torch.float64) / 2.0**32


def paradigm_mask(
    labels: torch.Tensor,
    ids: torch.Tensor,
    seen: torch.Tensor,
    seed: int,
    epoch: int,
    probability: float = 0.5,
) -> torch.Tensor:
    """The ``apply`` mask of a training batch: images of seen-transformed categories
    (``seen`` is a bool [C] table), each with probability ``probability``."""
    draw = uniform_draw(seed, epoch, ids) < probability
    return seen.to(labels.device)[labels] & draw.to(labels.device)


def transform_seed(seed: int, epoch: int) -> int:
    """Seed of the transform RNG in training epoch ``epoch`` (random transforms such as
    noise differ from epoch to epoch). Evaluation uses ``seed`` itself."""
    key = _mix32(torch.tensor((seed & _MASK32) ^ 0x2545F491, dtype=torch.int64))
    return int(_mix32(key ^ ((epoch + 1) & _MASK32)))


# ----------------------------------------------------------------------------------------
# Metrics


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """int64 [C, C]: row = true class, column = predicted class."""
    flat = labels.to(torch.int64) * num_classes + predictions.to(torch.int64)
    counts = torch.bincount(flat.cpu(), minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator) / float(denominator) if denominator > 0 else None


def paradigm_metrics(clean: torch.Tensor, transformed: torch.Tensor, seen: Sequence[int]) -> dict:
    """P1's numbers from confusion matrices of the clean and the transformed test images.

    Accuracies are fractions in [0, 1]; one over an empty set (e.g. within-category with
    no seen-transformed category) is None. ``seen_unseen`` is P1 Fig. 6: transformed
    test images counted by (true group, predicted group), with each row's percentages;
    quadrant I = unseen predicted as seen, II = seen as seen, III = seen as unseen,
    IV = unseen as unseen.
    """
    num_classes = clean.shape[0]
    is_seen = torch.zeros(num_classes, dtype=torch.bool)
    is_seen[list(seen)] = True
    clean, transformed = clean.to(torch.float64), transformed.to(torch.float64)
    diag_clean, diag_tr = clean.diagonal(), transformed.diagonal()
    group_counts = [[0.0, 0.0], [0.0, 0.0]]  # [true seen/unseen][predicted seen/unseen]
    for row, true_mask in enumerate((is_seen, ~is_seen)):
        for col, pred_mask in enumerate((is_seen, ~is_seen)):
            group_counts[row][col] = float(transformed[true_mask][:, pred_mask].sum())
    percent = [
        [100.0 * c / sum(row) if sum(row) > 0 else None for c in row] for row in group_counts
    ]
    return {
        "clean_accuracy": _ratio(diag_clean.sum(), clean.sum()),
        "transformed_accuracy": _ratio(diag_tr.sum(), transformed.sum()),
        "within_accuracy": _ratio(diag_tr[is_seen].sum(), transformed[is_seen].sum()),
        "across_accuracy": _ratio(diag_tr[~is_seen].sum(), transformed[~is_seen].sum()),
        "clean_seen_accuracy": _ratio(diag_clean[is_seen].sum(), clean[is_seen].sum()),
        "clean_unseen_accuracy": _ratio(diag_clean[~is_seen].sum(), clean[~is_seen].sum()),
        "images": int(clean.sum()),
        "seen_unseen": {
            "rows": "true group (seen, unseen)",
            "columns": "predicted group (seen, unseen)",
            "counts": [[int(c) for c in row] for row in group_counts],
            "percent": percent,
            "quadrants": {
                "I_unseen_as_seen": percent[1][0],
                "II_seen_as_seen": percent[0][0],
                "III_seen_as_unseen": percent[0][1],
                "IV_unseen_as_unseen": percent[1][1],
            },
        },
    }


# ----------------------------------------------------------------------------------------
# Configuration

GENERIC_RECIPE = dict(
    optimizer="adam", lr=1e-3, momentum=0.9, weight_decay=0.0, batch_size=64, epochs=10,
    schedule="constant",
)  # fmt: skip
OPTIMIZERS = ("sgd", "adam", "adamw")
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
        from invfast.core import models

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


# ----------------------------------------------------------------------------------------
# Devices, processes, files


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``; clear error without a GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                "--device cuda: no CUDA GPU is available (torch sees none); use --device cpu"
            )
        index = int(name.split(":")[1]) if ":" in name else local_rank
        if index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")


def distributed_from_env() -> Distributed:
    """The process group of a ``torchrun`` launch (WORLD_SIZE > 1), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    return Distributed(
        rank=int(os.environ["RANK"]), world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )  # fmt: skip


def write_json_atomic(path: Path, payload: Mapping) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2, allow_nan=False)
            handle.write("\n")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


OUTPUT_FILES = ("ckpt.pt", "metrics.json")


def prepare_output(out: str, overwrite: bool) -> Path:
    """The run folder: refused when it exists, unless ``overwrite`` (then its
    ckpt.pt / metrics.json are removed, nothing else)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} exists and is not a folder")
    if path.exists() and not overwrite:
        raise ValueError(f"--out {path} exists; pass --overwrite to replace its results")
    return path


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ----------------------------------------------------------------------------------------
# Evaluation


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
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Confusion matrices (clean, transformed) over ``batches``; summed over processes.

    ``apply_fn(labels, ids) -> bool mask`` restricts which images are transformed (the
    training distribution for validation); by default every image is transformed.
    """
    from invfast.core import transforms

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
                x = identity(images, index=ids, standardize="per-image")
                conf_clean += confusion_matrix(model(x).argmax(1), labels, num_classes)
            apply = apply_fn(labels, ids) if apply_fn is not None else None
            x = transform(images, seed=seed, index=ids, apply=apply, standardize="per-image")
            conf_tr += confusion_matrix(model(x).argmax(1), labels, num_classes)
    if dist is not None and dist.enabled:
        import torch.distributed as tdist

        stacked = torch.stack([conf_clean, conf_tr]).to(device)
        tdist.all_reduce(stacked)
        conf_clean, conf_tr = stacked.cpu()
    model.train(was_training)
    return (conf_clean if clean else None), conf_tr


# ----------------------------------------------------------------------------------------
# Training


def _optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


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


def format_confusion(test: Mapping) -> str:
    """P1 Fig. 6 as text: transformed test images by true and predicted group."""
    pct = test["seen_unseen"]["percent"]

    def cell(v: float | None) -> str:
        return "   -  " if v is None else f"{v:6.1f}"

    return "\n".join(
        [
            "transformed test images, % of each true group (P1 Fig. 6):",
            "                 predicted seen  predicted unseen",
            f"  true seen        {cell(pct[0][0])} (II)    {cell(pct[0][1])} (III)",
            f"  true unseen      {cell(pct[1][0])} (I)     {cell(pct[1][1])} (IV)",
        ]
    )


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
    from tqdm.auto import tqdm

    from invfast.core import checkpoint, data, models, transforms

    config = config.resolved()
    dist = distributed_from_env()
    device = resolve_device(config.device, dist.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if dist.enabled:
        import torch.distributed as tdist

        if not tdist.is_initialized():
            tdist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    out = prepare_output(config.out, config.overwrite)
    if dist.enabled:
        tdist.barrier()  # every rank has checked --out before rank 0 creates it
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
    optimizer = _optimizer(config, net.parameters())
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
        net.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen_count = torch.zeros((), dtype=torch.int64, device=device)
        step_seed = transform_seed(config.seed, epoch)
        bar = tqdm(
            train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
            disable=(None if config.progress else True) if dist.main else True, file=sys.stderr,
        )  # fmt: skip
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
                aux = getattr(model, "last_aux_logits", ())
                for aux_logits in aux:  # GoogLeNet's auxiliary heads, weight 0.3
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
            seen_count += len(labels)
        if dist.enabled:
            import torch.distributed as tdist

            totals = torch.stack([loss_sum, correct.double(), seen_count.double()])
            tdist.all_reduce(totals)
            loss_sum, correct, seen_count = totals[0], totals[1], totals[2]

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
            "train_loss": float(loss_sum) / max(float(seen_count), 1.0),
            "train_accuracy": float(correct) / max(float(seen_count), 1.0),
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
            write_json_atomic(
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
        write_json_atomic(out / "metrics.json", metrics)
    say(f"best epoch {best_epoch} (validation accuracy {_fmt(final_row['val_accuracy'])} %):")
    say(TABLE_HEADER)
    say(format_row("best", {**history[best_epoch - 1], "test": final}))
    say(format_confusion(final))
    say(f"wrote {checkpoint_path} and {out / 'metrics.json'}")
    if dist.enabled:
        import torch.distributed as tdist

        tdist.barrier()
    return TrainResult(out, metrics, checkpoint_path)


# ----------------------------------------------------------------------------------------
# Strength calibration (P1 Appendix A)

CALIBRATION_STEPS = {"blur": ("sigma", 0.5), "noise": ("sigma", 25.0)}


def calibrate(
    ckpt: Mapping,
    transform_name: str,
    *,
    parameter: str | None = None,
    step: float | None = None,
    start: float | None = None,
    target: float = 0.10,
    max_steps: int = 40,
    device: str = "auto",
    batch_size: int = 256,
    cache_dir: str | None = None,
    fixed_params: Mapping | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """P1's strength calibration: raise the transformation's strength by ``step`` (blur σ
    0.5, noise σ 25) until the accuracy of ``ckpt`` — a model trained without the
    transformation — on transformed test images falls below ``target``; return the sweep
    and the chosen strength (None when ``max_steps`` steps never get below the target)."""
    from invfast.core import checkpoint, data, transforms

    say = log or print
    default_parameter, default_step = CALIBRATION_STEPS.get(transform_name, (None, None))
    parameter = parameter or default_parameter
    step = step if step is not None else default_step
    if parameter is None or step is None:
        raise ValueError(
            f"calibrate: no default strength for {transform_name!r}; pass --parameter and --step"
        )
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"calibrate: step must be > 0, got {step}")
    if not 0.0 < target < 1.0:
        raise ValueError(f"calibrate: target must be an accuracy in (0, 1), got {target}")
    num_classes = ckpt["arch"]["num_classes"]
    if target <= 1.0 / num_classes:
        raise ValueError(
            f"calibrate: target {target:.3f} is at or below chance (1/{num_classes}); "
            "choose a higher --target"
        )
    if ckpt.get("seen_transformed"):
        say("warning: this model saw transformed images in training; P1 calibrates on a "
            "model trained without the transformation")  # fmt: skip
    if ckpt.get("data") is None:
        raise ValueError("calibrate: the checkpoint does not record its dataset")
    dev = resolve_device(device)
    model = checkpoint.build_model(ckpt).to(dev)
    dataset = data.load(ckpt["data"]["spec"], cache_dir=cache_dir, **ckpt["data"]["options"])
    batches = data.loader(dataset.test, batch_size)
    strength = start if start is not None else step
    sweep, chosen = [], None
    say(f"{transform_name}: raising {parameter} by {step} until accuracy < {100 * target:.1f} %")
    for _ in range(max_steps):
        params = {**(fixed_params or {}), parameter: strength}
        transform = transforms.get(transform_name, **params)
        _, conf = evaluate(model, batches, transform, num_classes, dev, seed=ckpt["seed"],
                           clean=False)  # fmt: skip
        accuracy = float(conf.diagonal().sum()) / max(int(conf.sum()), 1)
        sweep.append({parameter: strength, "accuracy": accuracy})
        say(f"  {parameter} = {strength:g}: accuracy {100 * accuracy:5.1f} %")
        if accuracy < target:
            chosen = strength
            break
        strength = round(strength + step, 10)
    return {"transform": transform_name, "parameter": parameter, "step": step,
            "target": target, "chosen": chosen, "sweep": sweep}  # fmt: skip


__all__ = [
    "TrainConfig",
    "TrainResult",
    "calibrate",
    "class_order",
    "confusion_matrix",
    "evaluate",
    "paradigm_mask",
    "paradigm_metrics",
    "parse_seen_transformed",
    "seen_transformed_classes",
    "train",
    "uniform_draw",
]

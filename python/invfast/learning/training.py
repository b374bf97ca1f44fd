"""P3's training modes from the command line: DA, IR and WT (P3 §3.3, §4.1; docs/p3.md).

``invfast train --mode da|ir|wt --group R4|T3`` lands here (P1's paradigm is in
``invfast.neurons.training``). One epoch draws a group element per sample and minimizes
``regularization.training_loss``; the model kept is the one with the best validation
accuracy over the orbit (P3's model selection). Images are standardized with the
training split's per-channel statistics, stored in the checkpoint, so ``invfast
metrics / drift / saliency`` rebuild exactly the model's input from the checkpoint alone
(``invfast.core.checkpoint.open_evaluation``). ``--p3-protocol`` adds P3's data protocol (28×28
zero-padded to 36×36, digit 9 left out for R4) as the data options ``pad_to`` and
``leave_out``.

``nu="auto"`` trains one model per ν of a log grid (``regularization.nu_search``) into
``OUT/nu-<ν>/``, measures SI on the validation images, and copies the smallest ν with
SI ≥ ``target_si`` to ``OUT/ckpt.pt``.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from invfast.core import checkpoint, data, models
from invfast.core import groups as groups_
from invfast.core.runtime.device import resolve_device
from invfast.core.runtime.outputs import atomic_path, check_output_folder, write_json
from invfast.core.runtime.progress import progress
from invfast.learning import data as p3_data
from invfast.learning import metrics, regularization

__all__ = [
    "P3Splits",
    "P3TrainConfig",
    "checkpoint_p3",
    "load_p3_data",
    "train_p3",
]

OUTPUT_FILES = ("ckpt.pt", "metrics.json", "nu_search.json")


@dataclass
class P3TrainConfig:
    """One P3 training run (``invfast train --mode ...``); None = P3's recipe default."""

    arch: str
    data: str
    out: str
    group: str
    mode: str
    regularizer: str = "logit"
    nu: float | str = 1.0  # a number >= 0, or "auto"
    target_si: float = 0.95
    nu_grid: list[float] | None = None  # nu="auto": None = regularization.log_grid()
    si_images: int = 500  # nu="auto": validation images SI is measured on
    p3_protocol: bool = False
    seed: int = 0
    epochs: int | None = None  # None: 300 with the protocol (P3), else the arch's recipe
    batch_size: int | None = None  # None: 512 (P3)
    optimizer: str | None = None  # None: adam (P3)
    lr: float | None = None  # None: 8e-4 (P3)
    momentum: float = 0.9
    weight_decay: float = 0.0
    val_fraction: float = 0.1
    eval_batch_size: int = 256
    arch_kwargs: dict = field(default_factory=dict)
    data_options: dict = field(default_factory=dict)
    device: str = "auto"
    overwrite: bool = False
    progress: bool = True
    cache_dir: str | None = None

    def resolved(self) -> P3TrainConfig:
        """A checked copy with P3's recipe filled in and ``arch_kwargs`` completed."""
        filled = copy.deepcopy(self)
        filled.group = groups_.get(filled.group).name
        if filled.mode not in regularization.MODES:
            raise ValueError(f"--mode must be one of {', '.join(regularization.MODES)}")
        if filled.regularizer not in regularization.REGULARIZERS:
            raise ValueError(
                f"--regularizer must be one of {', '.join(regularization.REGULARIZERS)}"
            )
        spec = models.spec(filled.arch)
        if filled.mode == "wt":
            if filled.arch != "mlp5-wt":
                raise ValueError(f"--mode wt needs --arch mlp5-wt, got {filled.arch!r}")
            tied = filled.arch_kwargs.get("group", filled.group)
            if groups_.get(tied).name != filled.group:
                raise ValueError(f"--arch-arg group={tied} contradicts --group {filled.group}")
            filled.arch_kwargs = {"hidden": 128, "pool": "mean", **filled.arch_kwargs,
                                  "group": filled.group}  # fmt: skip
        elif filled.arch == "mlp5-wt":
            raise ValueError("--arch mlp5-wt is trained with --mode wt")
        if filled.nu != "auto":
            nu = filled.nu
            if (
                isinstance(nu, bool)
                or not isinstance(nu, (int, float))
                or not (math.isfinite(nu) and nu >= 0)
            ):
                raise ValueError(f"--nu must be a number >= 0 or 'auto', got {nu!r}")
            filled.nu = float(nu)
        elif filled.mode != "ir":
            raise ValueError("--nu auto searches the regularization weight of --mode ir")
        if not 0.0 <= filled.target_si <= 1.0:
            raise ValueError(f"--target-si must be in [0, 1], got {filled.target_si}")
        recipe = {**spec.recipe}
        defaults = {
            "optimizer": p3_data.P3_RECIPE["optimizer"],
            "lr": p3_data.P3_RECIPE["lr"],
            "batch_size": p3_data.P3_RECIPE["batch_size"],
            "epochs": p3_data.P3_RECIPE["epochs"] if filled.p3_protocol
            else recipe.get("epochs", 10),
        }  # fmt: skip
        for key, value in defaults.items():
            if getattr(filled, key) is None:
                setattr(filled, key, value)
        for name in ("epochs", "batch_size", "eval_batch_size", "si_images"):
            value = getattr(filled, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (math.isfinite(filled.lr) and filled.lr > 0):
            raise ValueError(f"--lr must be > 0, got {filled.lr}")
        if filled.optimizer not in ("sgd", "adam", "adamw"):
            raise ValueError(f"--optimizer must be sgd, adam or adamw, got {filled.optimizer!r}")
        if not 0.0 <= filled.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be in [0, 1), got {filled.val_fraction}")
        return filled


# ----------------------------------------------------------------------------------------
# Data


@dataclass
class P3Splits:
    """uint8 image sets after the (optional) protocol, and the training statistics."""

    train: object  # invfast.core.data.TensorImageSet
    val: object | None
    test: object
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    left_out: list[int]
    recipe: dict  # invfast.core.data recipe of the source
    summary: str
    raw_image_size: int  # of the source, before the protocol's padding


def load_p3_data(
    spec: str,
    data_options: Mapping,
    group: str,
    *,
    protocol: bool,
    val_fraction: float,
    cache_dir: str | None = None,
) -> P3Splits:
    """Load ``spec`` (with P3's protocol as the data options ``pad_to`` / ``leave_out``
    when asked, so the checkpoint's data recipe reproduces it), split validation images
    off the training split (per class, as ``invfast train``) and measure the training
    statistics."""
    options = dict(data_options)
    if protocol:
        options["pad_to"] = 36
        options["leave_out"] = list(p3_data.default_leave_out(group))
    dataset = data.load(spec, cache_dir=cache_dir, **options)
    train_set, test_set = dataset.train, dataset.test
    if not isinstance(train_set, data.TensorImageSet):  # decode file-backed images once
        train_set = _in_memory(train_set)
        test_set = _in_memory(test_set)
    groups_.get(group).check_image_shape(train_set.image_size, train_set.image_size)
    if len(train_set) == 0 or len(test_set) == 0:
        raise ValueError(f"--data {spec}: no training or test images left")
    train_idx, val_idx = data.split_per_class(
        train_set.labels, val_fraction, dataset.options["split_seed"], salt=1
    )
    val_set = train_set.subset(val_idx) if len(val_idx) else None
    train_set = train_set.subset(train_idx)
    mean, std = p3_data.channel_stats(train_set.images)
    if any(s <= 0 for s in std):
        raise ValueError(f"--data {spec}: the training images are constant (std 0)")
    left_out = list(dataset.options.get("leave_out", []))
    size = train_set.image_size
    summary = (
        f"{spec}: {dataset.num_classes} classes, {len(train_set)} train / "
        f"{len(val_set or [])} val / {len(test_set)} test images, "
        f"{train_set.channels}×{size}×{size}"
        + (f", P3 protocol (left out {left_out})" if protocol else "")
    )
    raw_size = dataset.options.get("image_size") or size
    return P3Splits(train_set, val_set, test_set, dataset.classes, mean, std, left_out,
                    dataset.recipe(), summary, raw_size)  # fmt: skip


def _in_memory(images: data.ImageSet) -> data.TensorImageSet:
    batch = images.__getitems__(list(range(len(images))))
    return data.TensorImageSet(batch.images, batch.labels, batch.ids)


def checkpoint_p3(ckpt: Mapping) -> dict:
    """The P3 settings a checkpoint was trained with ({} for other checkpoints)."""
    p3 = ckpt.get("extra", {}).get("p3")
    return dict(p3) if isinstance(p3, Mapping) else {}


# ----------------------------------------------------------------------------------------
# Training


@dataclass
class P3TrainResult:
    out: Path
    checkpoint: Path
    metrics: dict


def _save_checkpoint(path: Path, config: P3TrainConfig, splits: P3Splits, nu: float,
                     state: Mapping, metrics: Mapping, arch_image) -> None:  # fmt: skip
    channels, size = arch_image
    checkpoint.save(
        path, arch=config.arch, arch_kwargs=config.arch_kwargs, state_dict=state,
        num_classes=len(splits.classes), in_channels=channels, image_size=size,
        classes=splits.classes, standardize={"mean": list(splits.mean), "std": list(splits.std)},
        data=splits.recipe, seed=config.seed, metrics=metrics,
        training={k: v for k, v in asdict(config).items() if k not in ("out", "cache_dir")},
        extra={"p3": {
            "group": config.group, "mode": config.mode, "regularizer": config.regularizer,
            "nu": nu, "protocol": config.p3_protocol, "left_out": splits.left_out,
            "raw_image_size": splits.raw_image_size,
            "val_fraction": config.val_fraction,
        }},
    )  # fmt: skip


def _train_one(
    config: P3TrainConfig,
    splits: P3Splits,
    out: Path,
    nu: float,
    device: torch.device,
    say: Callable[[str], None],
    command: str,
) -> P3TrainResult:

    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)
    channels, size = splits.train.channels, splits.train.image_size
    torch.manual_seed(config.seed)
    model = models.build(config.arch, len(splits.classes), channels, size,
                         **config.arch_kwargs).to(device)  # fmt: skip
    optimizer = models.optimizer(
        config.optimizer,
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    elements = torch.Generator().manual_seed(config.seed)
    preprocess = checkpoint.standardizer((splits.mean, splits.std))
    train_loader = data.loader(splits.train, config.batch_size, shuffle=True, seed=config.seed)
    val_loader = data.loader(splits.val, config.eval_batch_size) if splits.val is not None else None
    test_loader = data.loader(splits.test, config.eval_batch_size)
    run_info = {
        "config": asdict(config), "nu": nu, "dataset": splits.summary, "device": str(device),
        "command": command, "model_selection": "best validation accuracy over the orbit",
    }  # fmt: skip
    history: list[dict] = []
    best_val, best_epoch, best_state = -math.inf, 0, None
    ckpt_path = out / "ckpt.pt"
    say(f"epoch     loss     task  invariance  train %  val %    time   ({config.mode}, "
        f"{config.group}, ν = {nu:g})")  # fmt: skip
    for epoch in range(config.epochs):
        started = time.perf_counter()
        train_loader.sampler.set_epoch(epoch)
        model.train()
        totals = torch.zeros(4, dtype=torch.float64)  # loss, task, invariance, correct
        count = 0
        for batch in progress(train_loader, desc=f"epoch {epoch + 1}/{config.epochs}",
                              enabled=config.progress):  # fmt: skip
            x = preprocess(batch.images.to(device))
            labels = batch.labels.to(device)
            step = regularization.training_loss(
                model, x, labels, config.group, config.mode, nu=nu,
                regularizer=config.regularizer, generator=elements,
            )  # fmt: skip
            if not torch.isfinite(step.loss):
                raise ValueError(f"training diverged in epoch {epoch + 1}; lower --lr or --nu")
            optimizer.zero_grad(set_to_none=True)
            step.loss.backward()
            optimizer.step()
            n = len(labels)
            invariance = 0.0 if step.invariance is None else float(step.invariance)
            loss_value = float(step.loss.detach())
            correct = float((step.logits.argmax(1) == labels).sum())
            totals += torch.tensor(
                [loss_value * n, float(step.task) * n, invariance * n, correct],
                dtype=torch.float64,
            )
            count += n
        mean = (totals / max(count, 1)).tolist()
        val_accuracy = None
        if val_loader is not None:
            val = metrics.orbit_metrics(model, val_loader, config.group, preprocess=preprocess)
            val_accuracy = val["accuracy"].value
        row = {"epoch": epoch + 1, "loss": mean[0], "task_loss": mean[1],
               "invariance": mean[2] if config.mode == "ir" else None,
               "train_accuracy": mean[3], "val_accuracy": val_accuracy,
               "seconds": time.perf_counter() - started}  # fmt: skip
        history.append(row)
        val_text = "   -  " if val_accuracy is None else f"{100 * val_accuracy:6.1f}"
        inv_text = "      -   " if row["invariance"] is None else f"{row['invariance']:10.4g}"
        say(f"{epoch + 1:5d} {mean[0]:8.4f} {mean[1]:8.4f}  {inv_text}  {100 * mean[3]:6.1f} "
            f"{val_text} {row['seconds']:6.1f}s")  # fmt: skip
        score = val_accuracy if val_accuracy is not None else float(epoch)
        if score > best_val:  # ties keep the earlier epoch
            best_val, best_epoch = score, epoch + 1
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            _save_checkpoint(ckpt_path, config, splits, nu, best_state,
                             {"best_epoch": best_epoch, "val_accuracy": val_accuracy},
                             (channels, size))  # fmt: skip
        write_json(out / "metrics.json",
                          {**run_info, "history": history, "best_epoch": best_epoch,
                           "complete": False})  # fmt: skip
    assert best_state is not None
    model.load_state_dict(best_state)
    test = metrics.orbit_metrics(model, test_loader, config.group, preprocess=preprocess)
    final = {
        "best_epoch": best_epoch,
        "val_accuracy": history[best_epoch - 1]["val_accuracy"],
        "test": {name: result.to_dict() for name, result in test.items()},
    }
    _save_checkpoint(ckpt_path, config, splits, nu, best_state, final, (channels, size))
    payload = {**run_info, "history": history, "best_epoch": best_epoch, "final": final,
               "complete": True}  # fmt: skip
    write_json(out / "metrics.json", payload)
    say(f"best epoch {best_epoch}: test accuracy over the orbit "
        f"{100 * test['accuracy'].value:.1f} %, LI {test['LI'].value:.4g}, "
        f"DI {test['DI'].value:.4g}")  # fmt: skip
    say(f"wrote {ckpt_path} and {out / 'metrics.json'}")
    return P3TrainResult(out, ckpt_path, payload)


def _copy_atomic(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def train_p3(
    config: P3TrainConfig,
    *,
    log: Callable[[str], None] | None = None,
    command: str | None = None,
) -> P3TrainResult:
    """Train one model (or, with ``nu="auto"``, one per ν of the grid; see module doc)."""
    config = config.resolved()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--mode: P3 training runs in one process (no torchrun / DDP)")
    say = log or print
    command = command if command is not None else " ".join(sys.argv)
    device = resolve_device(config.device)
    out = check_output_folder(config.out, overwrite=config.overwrite)
    splits = load_p3_data(config.data, config.data_options, config.group,
                          protocol=config.p3_protocol, val_fraction=config.val_fraction,
                          cache_dir=config.cache_dir)  # fmt: skip
    say(splits.summary)
    say(
        f"{config.arch} on {device} | mode {config.mode} | group {config.group} | "
        f"{config.optimizer} lr {config.lr:g} batch {config.batch_size} epochs {config.epochs}"
    )
    if config.nu != "auto":
        return _train_one(config, splits, out, config.nu, device, say, command)

    si_data = splits.val if splits.val is not None else splits.test
    si_loader = data.loader(si_data, config.eval_batch_size)
    preprocess = checkpoint.standardizer((splits.mean, splits.std))

    def train_and_evaluate(nu: float) -> dict:
        say(f"--- ν = {nu:g}")
        result = _train_one(config, splits, out / f"nu-{nu:g}", nu, device, say, command)
        model = checkpoint.build_model(checkpoint.load(result.checkpoint)).to(device)
        si = metrics.saliency_invariance(model, si_loader, config.group, preprocess=preprocess,
                                         max_images=config.si_images)  # fmt: skip
        say(
            f"ν = {nu:g}: SI {si.value:.4f} on {si.n_images} "
            f"{'validation' if splits.val is not None else 'test'} images"
        )
        return {"SI": si.value, "result": result}

    search = regularization.nu_search(
        train_and_evaluate, target_si=config.target_si, grid=config.nu_grid
    )
    chosen: P3TrainResult = search.outcome["result"]
    _copy_atomic(chosen.checkpoint, out / "ckpt.pt")
    summary = {**search.to_dict(), "chosen_run": str(chosen.out),
               "si_measured_on": "validation" if splits.val is not None else "test",
               "si_images": config.si_images}  # fmt: skip
    write_json(out / "nu_search.json", summary)
    write_json(out / "metrics.json", {**chosen.metrics, "nu_search": summary})
    verdict = "meets" if search.met_target else "does NOT meet"
    say(
        f"ν = {search.nu:g} (SI {search.si:.4f}) {verdict} the target SI ≥ {config.target_si}; "
        f"copied {chosen.checkpoint} to {out / 'ckpt.pt'}"
    )
    return P3TrainResult(out, out / "ckpt.pt", {**chosen.metrics, "nu_search": summary})

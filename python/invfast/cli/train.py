"""``invfast train``: P1's across-category paradigm (P1 §2.1, Appendix B), or P3's
DA / IR / WT training (``--mode``; ``invfast.learning.training``)."""

from __future__ import annotations

import argparse
import shlex
import sys

from invfast.cli import options as _options

HELP = "train a network: P1 paradigm (transformation seen for some categories) or P3 --mode"

# Kept in sync with the registry by tests/test_training.py (no torch import for --help).
RECIPES = """\
training defaults per architecture (each flag overrides one):
  alexnet-p1     sgd  lr 1e-4  momentum 0.9  weight decay 5e-4  batch 32   45 epochs  constant
                 (P1 Appendix B)
  resnet18       sgd  lr 0.05  momentum 0.9  weight decay 1e-4  batch 128  30 epochs  cosine
  googlenet      sgd  lr 0.01  momentum 0.9  weight decay 2e-4  batch 64   30 epochs  cosine
  mlp5           adam lr 8e-4                weight decay 0     batch 512  30 epochs  constant
                 (P3's recipe)
  mlp5-wt        adam lr 8e-4                weight decay 0     batch 512  30 epochs  constant
                 (P3's recipe; --mode wt)
  convnet-small  adam lr 2e-3                weight decay 0     batch 64   10 epochs  constant
  other models   adam lr 1e-3                weight decay 0     batch 64   10 epochs  constant

Writes OUT/ckpt.pt (the best-validation model, plain data, torch.load(weights_only=True))
and OUT/metrics.json (per-epoch and final clean / within / across accuracy and the
seen/unseen confusion of P1 Fig. 6). Under torchrun the run uses DistributedDataParallel
(--batch-size is per process).

example:
  invfast train --arch convnet-small --data synthetic --transform blur \\
      --seen-transformed 5 --seed 0 --epochs 10 --out runs/blur-5

P3 modes (--mode da|ir|wt, docs/p3-metrics.md): the P1 paradigm flags (--transform,
--seen-transformed, --p-transform, --schedule, --amp) are not used; defaults are P3's
recipe: adam, lr 8e-4, batch 512, 300 epochs with --p3-protocol (else the architecture's),
model selection by validation accuracy over the orbit.
  invfast train --arch mlp5 --data mnist --p3-protocol --group R4 --mode ir --nu 1 \\
      --seed 0 --out runs/ir-r4-s0
  invfast train --arch mlp5-wt --data mnist --p3-protocol --group R4 --mode wt --out runs/wt
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = RECIPES
    _options.add_model_arguments(parser)
    _options.add_data_arguments(parser)
    _options.add_transform_arguments(parser)
    paradigm = parser.add_argument_group("paradigm (P1 §2.1)")
    paradigm.add_argument(
        "--seen-transformed", default="all", metavar="all|N|FRACTION",
        help="categories seen transformed in training: all (default), a count N (0 = none) "
        "or a fraction such as 0.25; the categories are shuffled by --seed and the first N "
        "taken, so the sets are nested as N grows",
    )  # fmt: skip
    paradigm.add_argument(
        "--p-transform", type=float, default=0.5, metavar="P",
        help="probability that a training image of a seen-transformed category is "
        "transformed (default 0.5, as P1)",
    )  # fmt: skip
    paradigm.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the category order, the model, batches and draws",
    )
    opt = parser.add_argument_group("optimization (defaults: the architecture's recipe below)")
    opt.add_argument("--epochs", type=int, default=None, help="number of training epochs")
    opt.add_argument("--batch-size", type=int, default=None, help="per process")
    opt.add_argument(
        "--optimizer",
        choices=("sgd", "adam", "adamw"),
        default=None,
        help="sgd (with --momentum) | adam | adamw",
    )
    opt.add_argument("--lr", type=float, default=None, help="learning rate")
    opt.add_argument("--momentum", type=float, default=None, help="SGD momentum")
    opt.add_argument("--weight-decay", type=float, default=None, help="L2 weight decay")
    opt.add_argument(
        "--schedule",
        choices=("constant", "step", "cosine"),
        default=None,
        help="learning-rate schedule over epochs",
    )
    opt.add_argument(
        "--lr-step", type=int, default=30, help="step schedule: epochs between decays (default 30)"
    )
    opt.add_argument(
        "--lr-gamma", type=float, default=0.1, help="step schedule: decay factor (default 0.1)"
    )
    opt.add_argument("--val-fraction", type=float, default=0.1,
                     help="per-class fraction of the training images held out to select the "
                     "best epoch (default 0.1, as P1; 0 keeps the last epoch)")  # fmt: skip
    opt.add_argument(
        "--eval-batch-size",
        type=int,
        default=256,
        help="batch size of validation and test evaluation (default 256)",
    )
    add_p3_arguments(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--out", required=True, help="run folder (must not exist)")
    out.add_argument(
        "--overwrite",
        action="store_true",
        help="replace ckpt.pt / metrics.json of an existing run folder",
    )


# ---- P3 modes: DA / IR / WT training, in invfast.learning.training -------------------


def add_p3_arguments(parser: argparse.ArgumentParser) -> None:
    p3 = parser.add_argument_group("P3 modes (invariance learning, docs/p3-metrics.md)")
    p3.add_argument(
        "--mode",
        choices=("da", "ir", "wt"),
        default=None,
        help="P3 training instead of the P1 paradigm: da = augmentation with g "
        "uniform over --group, ir = da + nu * I(x, gx), wt = weight-tied mlp5-wt",
    )
    p3.add_argument(
        "--group",
        default=None,
        metavar="R4|T3",
        help="the group (R4: 90° rotations; T3: cyclic shifts by W/3)",
    )
    p3.add_argument(
        "--regularizer",
        choices=("logit", "kl", "logit-norm"),
        default="logit",
        help="I of --mode ir (default logit, P3 Eq. 2)",
    )
    p3.add_argument(
        "--nu",
        default="1.0",
        metavar="NU|auto",
        help="weight of I in --mode ir (default 1.0); auto: train one model per "
        "nu of a log grid and keep the smallest with SI >= --target-si",
    )
    p3.add_argument(
        "--target-si",
        type=float,
        default=0.95,
        help="--nu auto: SI target on the validation images (default 0.95)",
    )
    p3.add_argument(
        "--nu-grid",
        default=None,
        metavar="NU,NU,...",
        help="--nu auto: the values tried (default 1e-2 ... 1e3, 2 per decade)",
    )
    p3.add_argument(
        "--si-images",
        type=int,
        default=500,
        metavar="N",
        help="--nu auto: validation images SI is measured on (default 500)",
    )
    p3.add_argument("--p3-protocol", action="store_true",
                    help="P3's data: 28x28 zero-padded to 36x36, digit 9 left out for R4 "
                    "(images are always standardized with the training statistics)")  # fmt: skip


def p3_config_from_args(args: argparse.Namespace):
    from invfast.learning.training import P3TrainConfig

    if args.group is None:
        raise ValueError("--mode needs --group R4|T3")
    nu: float | str = "auto" if str(args.nu).strip().lower() == "auto" else _number(args.nu)
    grid = None
    if args.nu_grid is not None:
        grid = [_number(v) for v in args.nu_grid.split(",") if v.strip()]
    if args.schedule not in (None, "constant") or args.amp:
        raise ValueError("--schedule / --amp are not used with --mode (P3 trains at constant lr)")
    return P3TrainConfig(
        arch=args.arch, data=args.data, out=args.out, group=args.group, mode=args.mode,
        regularizer=args.regularizer, nu=nu, target_si=args.target_si, nu_grid=grid,
        si_images=args.si_images, p3_protocol=args.p3_protocol, seed=args.seed,
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
        momentum=0.9 if args.momentum is None else args.momentum,
        weight_decay=0.0 if args.weight_decay is None else args.weight_decay,
        val_fraction=args.val_fraction, eval_batch_size=args.eval_batch_size,
        arch_kwargs=_options.parse_pairs(args.arch_arg, "--arch-arg"),
        data_options=_options.data_options(args), device=args.device,
        overwrite=args.overwrite, progress=not args.no_progress, cache_dir=args.cache_dir,
    )  # fmt: skip


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--nu / --nu-grid expect numbers, got {text!r}") from None


# ---- P1 paradigm ----------------------------------------------------------------------


def config_from_args(args: argparse.Namespace):
    from invfast.neurons.training import TrainConfig

    return TrainConfig(
        arch=args.arch,
        data=args.data,
        out=args.out,
        transform=args.transform,
        transform_params=_options.transform_params(args),
        seen_transformed=args.seen_transformed,
        transform_probability=args.p_transform,
        seed=args.seed,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        lr_step=args.lr_step,
        lr_gamma=args.lr_gamma,
        val_fraction=args.val_fraction,
        eval_batch_size=args.eval_batch_size,
        arch_kwargs=_options.parse_pairs(args.arch_arg, "--arch-arg"),
        data_options=_options.data_options(args),
        device=args.device,
        amp=args.amp,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        cache_dir=args.cache_dir,
    )


def run(args: argparse.Namespace) -> int:
    from invfast.neurons import training

    if args.mode is not None:
        from invfast.learning import training as p3_training

        p3_training.train_p3(
            p3_config_from_args(args), command=shlex.join(["invfast", *sys.argv[1:]])
        )
        return 0
    if args.group is not None or args.p3_protocol or args.nu != "1.0":
        raise ValueError("--group / --nu / --p3-protocol need --mode da|ir|wt")
    config = config_from_args(args)
    training.train(config, command=shlex.join(["invfast", *sys.argv[1:]]))
    return 0

"""``invfast itn``: the Invariant Transformer Net in front of a frozen classifier (P2 §3.4)."""

from __future__ import annotations

import argparse

from invfast.cli import p2_options as _p2

HELP = "learn the largest spatial / colour transformations a frozen classifier tolerates (P2 ITN)"

EPILOG = """\
The checkpoint's classifier is frozen (eval mode, no gradients, weights unchanged). A
spatial transformer θ(c_s) and a colour transformer K(c_c), two-layer ReLU MLPs of control
parameters drawn in U[0, 1], are trained on the --fit-split images (default: the training
split): a batch whose accuracy is at or above --target-accuracy makes the transformations
larger, any other batch minimizes the classification loss. The magnitude reached per
parameter is then measured on the test split. --epochs 0 measures the initial transformers
only (with --init identity: exactly the clean accuracy). Formulas: docs/p2-screening-itn.md.

Writes OUT/itn_transformers.pt, OUT/itn_losses.json, OUT/itn_losses.png (P2 Fig. 14),
OUT/itn_grid.png (P2 Fig. 19) and OUT/itn_result.json (sweep and magnitude reached).

example:
  invfast itn runs/blur-5/ckpt.pt --epochs 20 --target-accuracy 0.9 --color-weight 5 --out itn
"""

OUTPUT_FILES = (
    "itn_transformers.pt", "itn_losses.json", "itn_losses.png", "itn_grid.png", "itn_result.json",
)  # fmt: skip


# (flag, type, default, help) of the numeric options of the ITN group.
_NUMBER_OPTIONS = (
    ("--epochs", int, 20, "passes over the fit split (default 20; 0 = no training)"),
    ("--target-accuracy", float, 0.9, "batch accuracy at or above which a step enlarges the "
     "transformations (default 0.9; choose it below the clean accuracy)"),
    ("--color-weight", float, 5.0, "λ, weight of the colour magnitude term (default 5, P2)"),
    ("--diversity-weight", float, 1.0, "μ, weight of the diversity term (default 1)"),
    ("--seed", int, 0, "seed of weights, control parameters, unit vectors, batch order"),
    ("--lr", float, 1e-3, "Adam learning rate (default 1e-3)"),
    ("--hidden", int, 32, "MLP hidden width (default 32)"),
    ("--unit-vectors", int, 16, "random unit vectors of the magnitude loss per step (default 16)"),
    ("--batch-size", int, 64, "fit batch size (default 64)"),
    ("--eval-batch-size", int, 256, "batch size of the test-split evaluation (default 256)"),
    ("--sweep-points", int, 11, "c values in [0, 1] of the magnitude-reached sweep (default 11)"),
    ("--grid-points", int, 6, "c values per axis of the Fig. 19 grid (default 6)"),
)  # fmt: skip

# (flag, choices with the default first, help).
_CHOICE_OPTIONS = (
    ("--init", ("random", "identity"),
     "random (near the identity, default) or identity (exactly)"),
    ("--fit-split", ("train", "test"), "images the transformers are trained on (default train)"),
)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    _p2.add_checkpoint_arguments(parser)
    group = parser.add_argument_group("Invariant Transformer Net")
    for flag, kind, default, text in _NUMBER_OPTIONS:
        group.add_argument(flag, type=kind, default=default, help=text)
    for flag, choices, text in _CHOICE_OPTIONS:
        group.add_argument(flag, choices=choices, default=choices[0], help=text)
    _p2.add_output_arguments(parser, default=None)


class _Shuffled:
    """A re-iterable DataLoader whose order changes at every pass (epoch)."""

    def __init__(self, loader):
        self.loader, self.passes = loader, 0

    def __iter__(self):
        self.loader.sampler.set_epoch(self.passes)
        self.passes += 1
        return iter(self.loader)


def run(args: argparse.Namespace) -> int:
    import torch

    from invfast.core import checkpoint, data
    from invfast.screening import itn

    config = itn.ITNConfig(
        epochs=args.epochs, target_accuracy=args.target_accuracy, color_weight=args.color_weight,
        diversity_weight=args.diversity_weight, hidden=args.hidden,
        unit_vectors=args.unit_vectors, lr=args.lr, init=args.init, seed=args.seed,
        sweep_points=args.sweep_points, grid_points=args.grid_points,
    ).validate()  # fmt: skip
    for flag in ("batch_size", "eval_batch_size"):
        if getattr(args, flag) < 1:
            name = "--" + flag.replace("_", "-")
            raise ValueError(f"{name} must be a positive integer, got {getattr(args, flag)}")
    out = _p2.prepare_output(args)
    ckpt, model, device = _p2.load_checkpoint(args)
    standardize_fn = itn.make_standardizer(checkpoint.standardization(ckpt))
    dataset = _p2.load_dataset(ckpt, args)
    fit_set = dataset.train if args.fit_split == "train" else dataset.test
    fit = _Shuffled(data.loader(fit_set, args.batch_size, shuffle=True, seed=args.seed))
    test = data.loader(dataset.test, args.eval_batch_size)

    trainer, result = itn.run_itn(
        model, fit, standardize_fn=standardize_fn, config=config, eval_data=test, device=device
    )
    after = checkpoint.state_dict_sha256(model.state_dict())
    if after != ckpt["state_dict_sha256"]:  # run_itn freezes the classifier; never expected
        raise RuntimeError("itn: the classifier's weights changed during ITN training")
    result.source = {
        "checkpoint": str(args.checkpoint), "classifier_sha256": after,
        "data": dataset.recipe(), "fit_split": args.fit_split, "eval_split": "test",
        "fit_images": len(fit_set), "eval_images": len(dataset.test),
        "standardize": ckpt["input"]["standardize"], "batch_size": args.batch_size,
    }  # fmt: skip

    if out.exists():  # --overwrite
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
    image = dataset.test[0][0]
    paths = itn.write_outputs(trainer, result, out, torch.as_tensor(image))
    print(f"{dataset.summary()} | fit on {args.fit_split} ({len(fit_set)} images), measured on "
          f"test ({len(dataset.test)}) | {device}")  # fmt: skip
    if config.target_accuracy > result.clean_accuracy:
        print(f"note: --target-accuracy {config.target_accuracy:g} is above the clean accuracy "
              f"{result.clean_accuracy:.4f}: every step restores classification")  # fmt: skip
    print(itn.format_reach(result))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0

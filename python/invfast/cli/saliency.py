"""``invfast saliency``: realigned saliency maps over the group orbit (P3 Fig. 3)."""

from __future__ import annotations

import argparse
import shlex
import sys

from invfast.cli import p3_options as _p3

HELP = "PNG grid of saliency maps realigned over the group orbit, g^-1 m(g x) (P3 Fig. 3)"

EPILOG = """\
Rows are the first --n images of the split (from --start), columns the group elements;
each map is P3's saliency (integrated gradients of the target class, |.| summed over
channels, values below 0.9 of the max dropped, 3x3 Gaussian, sigma 1) of g x, moved back
by g^-1. A genuinely invariant model shows the same map in every column. Writes
OUT/saliency.png and OUT/saliency.json (indices, labels, targets and, per image, the
cosine of each column to the first: SI per image).

example:
  invfast saliency runs/ir/ckpt.pt --group R4 --n 8 --out figs/saliency-ir
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint file")
    parser.add_argument("--n", type=int, default=8, help="number of images (rows; default 8)")
    parser.add_argument("--start", type=int, default=0, help="index of the first image")
    parser.add_argument(
        "--target",
        choices=("label", "pred"),
        default="label",
        help="explain the true class (default, P3) or the predicted one",
    )
    parser.add_argument("--steps", type=int, default=50,
                        help="integrated-gradient steps (default 50)")  # fmt: skip
    _p3.add_eval_arguments(parser, group_help="the group (default: the checkpoint's own)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")


def _cosines(maps):
    """cos(maps[:, 0], maps[:, k]) per image and element; two zero maps → 1, one → 0."""
    import torch

    flat = maps.flatten(2).double()
    norms = flat.norm(dim=-1)
    dots = (flat * flat[:, :1]).sum(dim=-1)
    cos = dots / (norms * norms[:, :1]).clamp_min(1e-300)
    both_zero = (norms == 0) & (norms[:, :1] == 0)
    return torch.where(both_zero, torch.ones_like(cos), cos)


def run(args: argparse.Namespace) -> int:
    import torch

    from invfast.core import checkpoint
    from invfast.core.runtime.device import resolve_device
    from invfast.learning import figures as p3_figures
    from invfast.learning import metrics

    _p3.positive("--n", args.n)
    _p3.positive("--steps", args.steps)
    if args.start < 0:
        raise ValueError(f"--start must be >= 0, got {args.start}")
    out = _p3.prepare_out_dir(args.out, args.overwrite)
    device = resolve_device(args.device)
    ckpt = _p3.load_checkpoint(args.checkpoint)
    group = _p3.group_of(ckpt, args.group, args.checkpoint)
    _, images = checkpoint.evaluation_data(
        ckpt, spec=args.data, split=args.split, cache_dir=args.cache_dir
    )
    stop = min(args.start + args.n, len(images))
    if args.start >= stop:
        raise ValueError(f"--start {args.start}: the {args.split} split has {len(images)} images")
    batch = images.__getitems__(list(range(args.start, stop)))
    model = checkpoint.build_model(ckpt).to(device)
    x = checkpoint.preprocess(ckpt)(batch.images.to(device))
    labels = batch.labels.to(device)
    with torch.no_grad():
        predicted = model(x).argmax(dim=1)
    target = labels if args.target == "label" else predicted
    maps = metrics.saliency_orbit(model, x, target, group, steps=args.steps).cpu()
    out.mkdir(parents=True, exist_ok=True)
    _, label = _p3.configuration(ckpt)
    p3_figures.save_saliency_grid(maps, out / "saliency.png", images=batch.images, group=group,
                                  title=f"{label}: realigned saliency g⁻¹m(gx)")  # fmt: skip
    cosines = _cosines(maps)
    payload = {
        "command": shlex.join(["invfast", *sys.argv[1:]]),
        "checkpoint": args.checkpoint, "configuration": label, "group": group,
        "split": args.split, "indices": list(range(args.start, stop)),
        "labels": batch.labels.tolist(), "predicted": predicted.cpu().tolist(),
        "target": args.target, "steps": args.steps,
        "cosine_to_identity": cosines.tolist(),
        "si_mean": float(cosines.mean()),
        "convention": "cos(m(x), g^-1 m(gx)) per image and g (identity first); si_mean "
        "averages over these images and every g",
    }  # fmt: skip
    _p3.write_json(out / "saliency.json", payload)
    print(f"{label} [{group}]: SI over these {stop - args.start} images {payload['si_mean']:.4f}")
    print(f"wrote {out / 'saliency.png'} and {out / 'saliency.json'}")
    return 0

"""``invfast drift``: DI and the accuracy ratio under distribution drift (P3 §4.3, Fig. 4)."""

from __future__ import annotations

import argparse
import shlex
import sys

from invfast.cli import p3_options as _p3

HELP = "DI and Acc(D(beta))/Acc(D1) under drift D(beta) = (1-beta) D1 + beta D2 (P3 Fig. 4)"

EPILOG = """\
D1 is the checkpoint's test data, D2 the --to source loaded like it (same image size,
channels and P3 protocol, the same classes left out). Images are blended pairwise in raw
pixels: the i-th of D1 with the i-th of D2, with D1's labels. Writes OUT/drift.json and
OUT/drift.png (one curve per checkpoint).

example:
  invfast drift runs/da/ckpt.pt runs/ir/ckpt.pt runs/wt/ckpt.pt --to fashion-mnist \\
      --betas 0:1:0.1 --out figs/drift
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("checkpoints", nargs="+", metavar="CKPT", help="checkpoint files")
    parser.add_argument("--to", required=True, metavar="fashion-mnist|SPEC",
                        help="the drift target D2 (any invfast data spec)")  # fmt: skip
    parser.add_argument(
        "--betas",
        default="0:1:0.1",
        help="start:stop:step (stop included) or a comma list (default 0:1:0.1)",
    )
    parser.add_argument(
        "--max-images",
        type=int,
        default=None,
        metavar="N",
        help="use the first N image pairs (default all)",
    )
    _p3.add_eval_arguments(parser, group_help="the group (default: each checkpoint's own)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")


def run(args: argparse.Namespace) -> int:
    from invfast.core import checkpoint, data
    from invfast.core.runtime.device import resolve_device
    from invfast.learning import drift
    from invfast.learning import figures as p3_figures

    _p3.positive("--batch-size", args.batch_size)
    _p3.positive("--max-images", args.max_images)
    betas = drift.parse_betas(args.betas)
    out = _p3.prepare_out_dir(args.out, args.overwrite)
    device = resolve_device(args.device)
    loaded = [(path, _p3.load_checkpoint(path)) for path in args.checkpoints]
    groups = [_p3.group_of(ckpt, args.group, path) for path, ckpt in loaded]
    keys, labels = zip(*(_p3.configuration(ckpt) for _, ckpt in loaded), strict=True)
    labels = _p3.unique_labels(list(labels), list(keys))
    curves, entries = {}, []
    for (path, ckpt), label, group in zip(loaded, labels, groups, strict=True):
        if label in curves:  # seeds of one configuration: one curve each
            label = f"{label} (seed {ckpt['seed']})"
        _, d1 = checkpoint.evaluation_data(
            ckpt, spec=args.data, split=args.split, cache_dir=args.cache_dir
        )
        _, d2 = checkpoint.evaluation_data(
            ckpt, spec=args.to, split=args.split, cache_dir=args.cache_dir
        )
        model = checkpoint.build_model(ckpt).to(device)
        curve = drift.drift_curve(
            model, data.loader(d1, args.batch_size), data.loader(d2, args.batch_size), group,
            betas, preprocess=checkpoint.preprocess(ckpt), max_images=args.max_images,
            device=device,
        )  # fmt: skip
        curves[label] = curve
        entries.append({"path": path, "label": label, "seed": ckpt["seed"], **curve.to_dict()})
        print(f"{path} ({label}, {group}, {curve.n_images} pairs):")
        print("   beta        DI   accuracy %   Acc(D(b))/Acc(D1)")
        for b, di, acc, ratio in zip(curve.betas, curve.di, curve.accuracy,
                                     curve.accuracy_ratio, strict=True):  # fmt: skip
            print(f"  {b:5.2f}  {di:8.4g}  {100 * acc:10.1f}  {ratio:18.3f}")
    out.mkdir(parents=True, exist_ok=True)
    payload = {"command": shlex.join(["invfast", *sys.argv[1:]]), "to": args.to,
               "curves": entries}  # fmt: skip
    _p3.write_json(out / "drift.json", payload)
    p3_figures.save_drift_plot(curves, out / "drift.png", title=f"drift to {args.to}")
    print(f"wrote {out / 'drift.json'} and {out / 'drift.png'}")
    return 0

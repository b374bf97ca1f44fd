"""``invfast demo``: P1's across-category experiment end to end on the built-in data.

Trains ``convnet-small`` on the synthetic shapes — additive noise (default) or blur shown
for a few vs for many categories, each with 3 seeds — analyses every checkpoint and writes
the comparison of the seed means (P1 Figs. 4–5). One run per setting would not do: on
this small dataset the across-category accuracy of a single run moves by tens of points
with the seed (and with the CPU's float rounding), enough to reverse the comparison.
Needs nothing but invfast (no download, no GPU).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

HELP = "train small networks on built-in data, analyse them, compare (runs in minutes)"
DEFAULT_SIGMA = {"blur": 3.0, "noise": 80.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", default="invfast-demo", help="demo folder (default ./invfast-demo)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument(
        "--seen",
        default="2,12",
        metavar="FEW,MANY",
        help="seen-transformed category counts of the two runs (default 2,12)",
    )
    parser.add_argument(
        "--transform",
        choices=("blur", "noise"),
        default="noise",
        help="additive Gaussian noise (default) or blur: on the synthetic shapes noise shows "
        "P1's across-category rise, blur a 'blurred => seen category' shortcut",
    )
    parser.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="noise σ in grey levels (default 80) or blur σ in px (default 3)",
    )
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    parser.add_argument("--classes", type=int, default=16, help="synthetic categories (default 16)")
    parser.add_argument(
        "--per-class",
        type=int,
        default=375,
        help="synthetic images per category before the split (default 375)",
    )
    parser.add_argument("--image-size", type=int, default=32, help="image size (default 32)")
    parser.add_argument("--width", type=int, default=16, help="convnet-small width (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="runs per setting, seeds --seed, --seed + 1, ... (default 3); the comparison "
        "uses their mean",
    )
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="also the ablation curves over the whole τ grid (slower)",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) | cuda | auto")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from invfast.core.runtime.outputs import check_output_folder, output_folder
    from invfast.neurons import analysis, report, training

    out = check_output_folder(args.out, overwrite=args.overwrite)
    try:
        counts = [int(v) for v in args.seen.split(",")]
    except ValueError:
        raise ValueError(f"--seen expects two counts FEW,MANY, got {args.seen!r}") from None
    if len(counts) < 2 or any(not 0 < c < args.classes for c in counts):
        raise ValueError(f"--seen needs at least two counts in [1, {args.classes - 1}]")
    if args.seeds < 1:
        raise ValueError(f"--seeds expects a count >= 1, got {args.seeds}")
    seeds = range(args.seed, args.seed + args.seeds)
    command = shlex.join(["invfast", *getattr(args, "_argv", sys.argv[1:])])
    sigma = args.sigma if args.sigma is not None else DEFAULT_SIGMA[args.transform]
    start = time.perf_counter()
    data_options = {"image_size": args.image_size, "synthetic_classes": args.classes,
                    "synthetic_per_class": args.per_class}  # fmt: skip

    def fill(folder: Path) -> None:
        reports, names = [], []
        for count in counts:
            for seed in seeds:
                name = f"seen-{count}/seed-{seed}"
                print(f"[demo] training convnet-small, {args.transform} σ={sigma:g} shown for "
                      f"{count} of {args.classes} categories, seed {seed} ({args.epochs} epochs)",
                      flush=True)  # fmt: skip
                config = training.TrainConfig(
                    arch="convnet-small", data="synthetic", out=str(folder / name / "run"),
                    transform=args.transform, transform_params={"sigma": sigma},
                    seen_transformed=str(count), seed=seed, epochs=args.epochs,
                    arch_kwargs={"width": args.width}, data_options=data_options,
                    device=args.device, progress=not args.no_progress,
                )  # fmt: skip
                trained = training.train(config, log=lambda _msg: None)
                print(f"[demo] analysing {name}", flush=True)
                settings = analysis.AnalysisConfig(
                    checkpoint=str(trained.checkpoint),
                    layers="all",
                    tau="auto",
                    ablation=args.ablation,
                    device=args.device,
                    progress=not args.no_progress,
                    command=command,
                )
                result = analysis.analyze(settings)
                report.write_report(result, folder / name / "report")
                print(report.format_table(result.report), flush=True)
                reports.append(result.report)
                names.append(f"{name}/report")
        rows = report.compare_rows(reports)
        report.write_compare_files(folder, rows, names, command)
        print(report.format_compare(rows))

    with output_folder(out, overwrite=args.overwrite) as folder:
        fill(folder)
    seconds = time.perf_counter() - start
    print(f"[demo] done in {seconds:.0f} s; comparison: {out}/compare.png, reports: "
          f"{out}/seen-*/seed-*/report/")  # fmt: skip
    return 0

"""``invfast analyze``: per-neuron invariance of a checkpoint's layers (P1 §2.2, App. D)."""

from __future__ import annotations

import argparse
import shlex
import sys

from invfast.cli import options as _options

HELP = "measure per-neuron invariance of a trained checkpoint to a transformation (P1)"

EPILOG = """\
Writes OUT/report.json (every number, with versions, backend, device, seed, command line
and the checkpoint's SHA-256), OUT/arrays.npz (per-neuron I_k, S_k, #A_k for every τ and
group, per-image active counts) and PNG figures; prints a summary table. The folder is
written atomically and an existing one is refused unless --overwrite.
Under torchrun each process analyses a shard; the result equals one process's.

example:
  invfast analyze runs/blur-5/ckpt.pt --transform blur --sigma 2 --ablation --out report/
"""


def add_analysis_arguments(parser: argparse.ArgumentParser) -> None:
    """Every flag of the analysis except the checkpoint and the output folder."""
    group = parser.add_argument_group("analysis (P1 §2.2, Appendix D)")
    group.add_argument(
        "--layers",
        default="all",
        metavar="all|penultimate|NAME,...",
        help="layers to analyse (default: every ReLU output of the model)",
    )
    group.add_argument(
        "--neurons",
        default="unit",
        choices=("unit", "channel-max", "channel-mean"),
        help="a neuron is each unit (default) or each channel (max / mean)",
    )
    group.add_argument(
        "--taus",
        default="0:1:0.05",
        metavar="START:STOP:STEP|LIST",
        help="the τ grid (default 0:1:0.05, 21 values)",
    )
    group.add_argument(
        "--tau",
        default="auto",
        metavar="auto|VALUE",
        help="τ of the summary: auto = the highest τ whose inactive-ablation "
        "loses ≤ 1 accuracy point (P1), or a value of the grid",
    )
    group.add_argument(
        "--ablation",
        action="store_true",
        help="accuracy with inactive / active neurons ablated over the whole grid",
    )
    group.add_argument(
        "--ablate-layer",
        default=None,
        metavar="NAME",
        help="layer ablated for --tau auto / --ablation (default: penultimate)",
    )
    group.add_argument(
        "--goodfellow",
        action="store_true",
        help="also Goodfellow et al. 2009's top-p%% measure (ablation layer)",
    )
    group.add_argument(
        "--activation",
        default=None,
        choices=("relu", "abs"),
        help="apply ReLU / |·| to layers with negative outputs",
    )
    group.add_argument("--batch-size", type=int, default=256, help="images per batch (default 256)")
    group.add_argument("--device", default="cpu", help="cpu (default) | cuda | cuda:N | auto")
    group.add_argument(
        "--backend",
        default=None,
        choices=("reference", "cpu", "cuda"),
        help="force the statistics backend (default: by device)",
    )
    group.add_argument(
        "--seed", type=int, default=None, help="transform seed (default: the checkpoint's)"
    )
    group.add_argument(
        "--split", default="test", choices=("test", "train"), help="images analysed (default test)"
    )
    group.add_argument(
        "--cache-budget",
        type=float,
        default=1024,
        metavar="MB",
        help="keep the transformed batches, then pass 1's activations, between passes "
        "while they fit (default 1024 MB; 0 recomputes them)",
    )
    group.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("checkpoint", help="ckpt.pt written by invfast train")
    _options.add_transform_arguments(parser, default=None)
    parser.set_defaults(transform=None)
    for action in parser._actions:  # the checkpoint's transformation unless given
        if action.dest == "transform":
            action.required = False
            action.help = "transformation (default: the checkpoint's)"
    _options.add_data_arguments(parser)
    parser.set_defaults(data=None, split_seed=None, test_fraction=None)
    add_analysis_arguments(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--out", default="report", help="report folder (default ./report)")
    out.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")


def data_overrides(args: argparse.Namespace) -> dict | None:
    options = {
        "image_size": args.image_size, "channels": args.channels, "split_seed": args.split_seed,
        "test_fraction": args.test_fraction, "max_per_class": args.max_per_class,
        "synthetic_classes": args.synthetic_classes,
        "synthetic_per_class": args.synthetic_per_class, "cache_dir": args.cache_dir,
    }  # fmt: skip
    options = {k: v for k, v in options.items() if v is not None}
    return options or None


def config_from_args(args: argparse.Namespace, command: str | None = None):
    from invfast.neurons.analysis import AnalysisConfig

    return AnalysisConfig(
        checkpoint=args.checkpoint,
        transform=args.transform,
        transform_params=_options.transform_params(args),
        layers=args.layers,
        neurons=args.neurons,
        taus=args.taus,
        tau=args.tau,
        ablation=args.ablation,
        ablate_layer=args.ablate_layer,
        goodfellow=args.goodfellow,
        activation=args.activation,
        data=args.data,
        data_options=data_overrides(args),
        split=args.split,
        batch_size=args.batch_size,
        device=args.device,
        backend=args.backend,
        seed=args.seed,
        progress=not args.no_progress,
        command=command,
        cache_budget=int(args.cache_budget * (1 << 20)),
    )


def run(args: argparse.Namespace) -> int:
    import os

    from invfast.core.runtime.outputs import check_output_folder
    from invfast.neurons import analysis, report

    inputs = [args.checkpoint]
    check_output_folder(args.out, overwrite=args.overwrite, inputs=inputs)  # before any work
    command = shlex.join(["invfast", *getattr(args, "_argv", sys.argv[1:])])
    result = analysis.analyze(config_from_args(args, command))
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    out = report.write_report(result, args.out, overwrite=args.overwrite, inputs=inputs)
    print(report.format_table(result.report))
    print(f"report written to {out}/")
    return 0

"""``invfast metrics``: P3 Table 1 — accuracy, LI, DI, SI and σ_max of checkpoints."""

from __future__ import annotations

import argparse
import math
import shlex
import statistics
import sys

from invfast.cli import p3_options as _p3

HELP = "P3 Table 1: accuracy, LI, DI, SI, sigma_max of checkpoints (mean ± std over seeds)"

EPILOG = """\
Metrics are means over the images and every group element, the identity included
(docs/p3-metrics.md). Accuracy is top-1 over every g x. SI costs |G| x 50 gradient passes
per image, sigma_max one backward pass per logit (exact; up to 100 power iterations for
models with more than 64 outputs): they use the first --si-images / --sigma-images
images. Checkpoints that differ only in their seed are one configuration: the table shows
mean ± std (sample std over the seeds) and the JSON keeps every run.

example:
  invfast metrics runs/da-s*/ckpt.pt runs/ir-s*/ckpt.pt runs/wt-s*/ckpt.pt --group R4 \\
      --out table1.json
"""

METRICS = (  # key, row label, scale for the table
    ("accuracy", "accuracy %", 100.0),
    ("LI", "LI", 1.0),
    ("DI", "DI", 1.0),
    ("SI", "SI", 1.0),
    ("sigma_max", "σ_max", 1.0),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("checkpoints", nargs="+", metavar="CKPT", help="checkpoint files")
    _p3.add_eval_arguments(parser, group_help="the group (default: each checkpoint's own)")
    parser.add_argument(
        "--max-images",
        type=int,
        default=None,
        metavar="N",
        help="accuracy / LI / DI on the first N images (default all)",
    )
    parser.add_argument(
        "--si-images",
        type=int,
        default=1000,
        metavar="N",
        help="SI on the first N images (default 1000)",
    )
    parser.add_argument(
        "--sigma-images",
        type=int,
        default=1000,
        metavar="N",
        help="sigma_max on the first N images (default 1000)",
    )
    parser.add_argument(
        "--steps", type=int, default=50, help="integrated-gradient steps of SI (default 50, P3)"
    )
    parser.add_argument("--out", default=None, metavar="FILE.json", help="write the results")


def evaluate_checkpoint(path: str, ckpt: dict, args: argparse.Namespace, device) -> dict:
    from invfast.core import checkpoint, data
    from invfast.learning import metrics

    group = _p3.group_of(ckpt, args.group, path)
    model = checkpoint.build_model(ckpt).to(device)
    _, images = checkpoint.evaluation_data(
        ckpt, spec=args.data, split=args.split, cache_dir=args.cache_dir
    )
    batches = data.loader(images, args.batch_size)
    common = {"preprocess": checkpoint.preprocess(ckpt), "device": device}
    results = metrics.orbit_metrics(model, batches, group, max_images=args.max_images, **common)
    results["SI"] = metrics.saliency_invariance(
        model, batches, group, max_images=args.si_images, steps=args.steps, **common
    )
    results["sigma_max"] = metrics.jacobian_sigma_max(
        model, batches, max_images=args.sigma_images, seed=ckpt["seed"], **common
    )
    return {"group": group, "metrics": {k: r.to_dict() for k, r in results.items()}}


def summarize(runs: list[dict]) -> list[dict]:
    """One entry per configuration: mean and sample std over its runs."""
    configs: dict[str, dict] = {}
    for run in runs:
        entry = configs.setdefault(
            run["configuration"], {"label": run["configuration"], "group": run["group"],
                                   "checkpoints": [], "seeds": []},
        )  # fmt: skip
        entry["checkpoints"].append(run["path"])
        entry["seeds"].append(run["seed"])
    for entry in configs.values():
        members = [r for r in runs if r["configuration"] == entry["label"]]
        entry["n"] = len(members)
        entry["mean"], entry["std"] = {}, {}
        for key, _, _ in METRICS:
            values = [r["metrics"][key]["value"] for r in members if key in r["metrics"]]
            if not values:
                continue
            entry["mean"][key] = math.fsum(values) / len(values)
            entry["std"][key] = statistics.stdev(values) if len(values) > 1 else None
    return list(configs.values())


def format_table(configs: list[dict]) -> str:
    """Rows = metrics, columns = configurations (P3 Table 1)."""

    def cell(entry: dict, key: str, scale: float) -> str:
        if key not in entry["mean"]:
            return "-"
        mean, std = entry["mean"][key] * scale, entry["std"][key]
        text = f"{mean:.4g}"
        return text if std is None else f"{text} ± {std * scale:.2g}"

    headers = [f"{c['label']} [{c['group']}]" for c in configs]
    rows = [[label, *(cell(c, key, scale) for c in configs)] for key, label, scale in METRICS]
    rows.append(["runs (seeds)", *(str(c["n"]) for c in configs)])
    widths = [max(len(r[0]) for r in rows)] + [
        max(len(h), *(len(r[i + 1]) for r in rows)) for i, h in enumerate(headers)
    ]

    def line(cells: list[str]) -> str:
        padded = [t.ljust(w) if i == 0 else t.rjust(w)
                  for i, (t, w) in enumerate(zip(cells, widths, strict=True))]  # fmt: skip
        return "  ".join(padded)

    lines = [line(["", *headers]), "  ".join("-" * w for w in widths)]
    lines += [line(row) for row in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from invfast.core.runtime.device import resolve_device

    for name in ("batch_size", "max_images", "si_images", "sigma_images", "steps"):
        _p3.positive(f"--{name.replace('_', '-')}", getattr(args, name))
    out = _p3.prepare_out_file(args.out, args.overwrite) if args.out else None
    device = resolve_device(args.device)
    loaded = [(path, _p3.load_checkpoint(path)) for path in args.checkpoints]  # fail early
    for path, ckpt in loaded:
        _p3.group_of(ckpt, args.group, path)
    keys, labels = zip(*(_p3.configuration(ckpt) for _, ckpt in loaded), strict=True)
    labels = _p3.unique_labels(list(labels), list(keys))
    runs = []
    for (path, ckpt), label in zip(loaded, labels, strict=True):
        print(f"{path}: {label}, seed {ckpt['seed']} ...", file=sys.stderr)
        result = evaluate_checkpoint(path, ckpt, args, device)
        runs.append({"path": path, "configuration": label, "seed": ckpt["seed"], **result})
    configs = summarize(runs)
    print(format_table(configs))
    if out is not None:
        payload = {
            "command": shlex.join(["invfast", *sys.argv[1:]]),
            "convention": "mean over images x and every g in G (identity included); "
            "std: sample standard deviation over the runs of one configuration",
            "configurations": configs,
            "checkpoints": runs,
        }
        _p3.write_json(out, payload)
        print(f"wrote {out}")
    return 0

"""Report folders of ``invfast analyze`` / ``compare`` / ``demo`` (docs/architecture.md).

A report is a folder: ``report.json`` (every summary number, with versions, backend,
device, seed, command line and the checkpoint's SHA-256), ``arrays.npz`` (per-neuron I_k,
S_k, #A_k for every τ and group; per-image active counts) and PNG figures (matplotlib's
Agg canvas, no display). The folder is written beside the destination and renamed into
place (:func:`invfast.core.runtime.outputs.output_folder`), so an interrupted run leaves
no half report; an existing destination is refused unless ``overwrite``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from invfast.core.runtime.figures import GROUP_COLORS, new_figure, save_figure
from invfast.core.runtime.outputs import output_folder, write_json
from invfast.neurons.analysis import AnalysisResult
from invfast.neurons.summaries import GROUPS


def load_report(folder: str | os.PathLike) -> dict:
    """``report.json`` of a report folder; ValueError when missing or not an analyze report."""
    path = Path(folder) / "report.json"
    if not path.is_file():
        raise ValueError(f"{folder}: no report.json (not an invfast analyze report folder)")
    try:
        report = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: corrupt report.json ({exc})") from None
    if not isinstance(report, dict) or report.get("tool") != "invfast analyze":
        raise ValueError(f"{path}: not an invfast analyze report")
    return report


# ------------------------------------------------------------------------ figures
def plot_violins(report: dict, arrays: Mapping[str, np.ndarray], path: Path) -> Path:
    """I_k per layer at the selected τ, seen / unseen side by side (P1 Figs. 3–4)."""
    layers = report["layer_order"]
    index = report["tau"]["index"]
    fig = new_figure(max(5.0, 1.3 * len(layers) + 2), 4.0)
    ax = fig.add_subplot()
    width = 0.38
    for g, group in enumerate(GROUPS):
        data, positions = [], []
        for j, name in enumerate(layers):
            values = arrays[f"{name}/I"][g, index]
            values = values[np.isfinite(values)]
            if values.size:
                data.append(values)
                positions.append(j + (g - 0.5) * width)
        if data:
            parts = ax.violinplot(data, positions=positions, widths=width, showmedians=True)
            for body in parts["bodies"]:
                body.set_facecolor(GROUP_COLORS[group])
                body.set_alpha(0.55)
        ax.plot([], [], color=GROUP_COLORS[group], lw=6, label=f"{group}-transformed categories")
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(layers, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"invariance $I_k$ (τ = {report['tau']['value']:g})")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{report['checkpoint']['arch']}, {report['transform']['name']}")
    ax.legend(fontsize=8, loc="lower left")
    return save_figure(fig, path)


def _layer_curve(layer: dict, group: str, key: str) -> list[float]:
    return [np.nan if row[key] is None else row[key] for row in layer["groups"][group]["by_tau"]]


def plot_tau_curves(report: dict, path: Path) -> Path:
    """Mean I_k against τ, one line per layer and group."""
    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot()
    taus = report["taus"]
    for layer in report["layers"]:
        for group in GROUPS:
            style = "-" if group == "seen" else "--"
            ax.plot(taus, _layer_curve(layer, group, "mean_I"), style,
                    label=f"{layer['name']} ({group})")  # fmt: skip
    ax.axvline(report["tau"]["value"], color="grey", lw=0.8)
    ax.set_xlabel("τ")
    ax.set_ylabel("mean $I_k$ over non-silent neurons")
    ax.legend(fontsize=6, ncol=2)
    return save_figure(fig, path)


def plot_ablation(report: dict, path: Path) -> Path:
    """Accuracy with the inactive / active neurons ablated against τ (P1 Fig. 7)."""
    ablation = report["ablation"]
    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot()
    for mode, style in (("inactive", "-"), ("active", "--")):
        for images, marker in (("clean", "o"), ("transformed", "s")):
            ax.plot(ablation["taus"], [100 * a for a in ablation[mode][f"{images}_accuracy"]],
                    style, marker=marker, ms=3, label=f"{mode} ablated, {images}")  # fmt: skip
    ax.axvline(report["tau"]["value"], color="grey", lw=0.8)
    ax.set_xlabel("τ")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"ablation in {ablation['layer']}")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_layer_means(report: dict, path: Path) -> Path:
    """Layer-wise mean invariance at the selected τ, seen vs unseen (P1 Fig. 11)."""
    layers = report["layer_order"]
    by_name = {layer["name"]: layer for layer in report["layers"]}
    fig = new_figure(max(5.0, 0.9 * len(layers) + 2), 3.8)
    ax = fig.add_subplot()
    for group in GROUPS:
        values = [by_name[n]["groups"][group]["at_tau"]["mean_I"] for n in layers]
        ax.plot(range(len(layers)), [np.nan if v is None else v for v in values], "-o",
                color=GROUP_COLORS[group], label=f"{group}-transformed")  # fmt: skip
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(layers, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"mean $I_k$ (τ = {report['tau']['value']:g})")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def write_figures(result: AnalysisResult, folder: Path) -> list[str]:
    report, arrays = result.report, result.arrays
    written = [
        plot_violins(report, arrays, folder / "invariance_violins.png"),
        plot_tau_curves(report, folder / "invariance_vs_tau.png"),
        plot_layer_means(report, folder / "layer_mean_invariance.png"),
    ]
    if report.get("ablation"):
        written.append(plot_ablation(report, folder / "ablation.png"))
    return [p.name for p in written]


# ------------------------------------------------------------------------ writing
def write_report(
    result: AnalysisResult,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
) -> Path:
    """The report folder of one analysis, written whole or not at all; ``inputs`` (the
    checkpoint) may not be inside it."""
    with output_folder(out, overwrite=overwrite, inputs=inputs) as folder:
        np.savez_compressed(folder / "arrays.npz", **result.arrays)
        figures = write_figures(result, folder)
        write_json(folder / "report.json", {**result.report, "files": ["arrays.npz", *figures]})
    return Path(out)


def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:6.1f}"


def _num(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


def format_table(report: dict) -> str:
    """The terminal summary: accuracy, τ, and per layer / group the invariance at τ."""
    acc = report["accuracy"]
    tau = report["tau"]
    lines = [
        f"{report['checkpoint']['arch']} · {report['transform']['name']} "
        f"{report['transform']['params']} · {report['data']['images']} images · "
        f"{report['num_seen_transformed']} seen-transformed categories · backend "
        f"{report['backend']} on {report['device']}",
        f"accuracy (%): clean {_pct(acc['clean_accuracy'])}  within {_pct(acc['within_accuracy'])}"
        f"  across {_pct(acc['across_accuracy'])}",
        f"τ = {tau['value']:g} ({tau['mode']}"
        + (f", ablation in {tau['ablate_layer']}" if tau["mode"] == "auto" else "")
        + ")",
        f"{'layer':<24} {'neurons':>8}  {'group':<6} {'mean I':>6} {'median':>6} "
        f"{'mean S':>6} {'silent':>7} {'#A_k':>8}",
    ]
    for layer in report["layers"]:
        for group in GROUPS:
            row = layer["groups"][group]["at_tau"]
            active = row["active_per_neuron"]["mean"]
            lines.append(
                f"{layer['name']:<24} {layer['neurons']:>8}  {group:<6} {_num(row['mean_I'])} "
                f"{_num(row['median_I'])} {_num(row['mean_S'])} {row['silent']:>7} "
                f"{'-' if active is None else f'{active:8.1f}':>8}"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------ compare
def compare_rows(reports: Sequence[dict], layer: str | None = None) -> list[dict]:
    """One row per report: number of seen-transformed categories, seed, invariance of
    ``layer`` (default: each report's penultimate layer) per group at its τ, and accuracies."""
    rows = []
    for report in reports:
        layers = {entry["name"]: entry for entry in report["layers"]}
        name = layer or report["layers"][0]["name"]
        if name not in layers:
            raise ValueError(f"--layer {name!r} is not in every report; valid: {', '.join(layers)}")
        entry = layers[name]
        rows.append({
            "seen_transformed": report["num_seen_transformed"],
            "seed": report.get("seed"),
            "layer": name,
            "tau": report["tau"]["value"],
            "mean_I_seen": entry["groups"]["seen"]["at_tau"]["mean_I"],
            "mean_I_unseen": entry["groups"]["unseen"]["at_tau"]["mean_I"],
            "within_accuracy": report["accuracy"]["within_accuracy"],
            "across_accuracy": report["accuracy"]["across_accuracy"],
            "clean_accuracy": report["accuracy"]["clean_accuracy"],
            "checkpoint_sha256": report["checkpoint"]["sha256"],
        })  # fmt: skip
    rows.sort(key=lambda r: (r["seen_transformed"], -1 if r["seed"] is None else r["seed"]))
    return rows


COMPARED = ("mean_I_seen", "mean_I_unseen", "within_accuracy", "across_accuracy",
            "clean_accuracy")  # fmt: skip


def compare_means(rows: Sequence[dict]) -> list[dict]:
    """Rows of the same seen-transformed count (runs with different seeds) averaged: one row
    per count with the mean, min and max of each compared number over its runs."""
    out = []
    for count in sorted({r["seen_transformed"] for r in rows}):
        runs = [r for r in rows if r["seen_transformed"] == count]
        row: dict = {"seen_transformed": count, "runs": len(runs), "layer": runs[0]["layer"]}
        for key in COMPARED:
            values = [r[key] for r in runs if r[key] is not None]
            row[key] = float(np.mean(values)) if values else None
            row[f"{key}_min"] = min(values) if values else None
            row[f"{key}_max"] = max(values) if values else None
        out.append(row)
    return out


def plot_compare(rows: Sequence[dict], path: Path) -> Path:
    """Invariance and across-category accuracy against #seen-transformed (P1 Figs. 4–5).
    With several runs per count (seeds), the lines join the means and every run is a dot."""
    means = compare_means(rows)
    xs = [m["seen_transformed"] for m in means]
    repeated = any(m["runs"] > 1 for m in means)
    fig = new_figure(9.0, 3.8)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)

    def draw(axes, key: str, style: str, color: str, label: str, scale: float = 1.0) -> None:
        ys = [np.nan if m[key] is None else scale * m[key] for m in means]
        axes.plot(xs, ys, style, color=color, label=label + (" (mean)" if repeated else ""))
        if repeated:
            dots = [(r["seen_transformed"], scale * r[key]) for r in rows if r[key] is not None]
            axes.plot([d[0] for d in dots], [d[1] for d in dots], ".", color=color, alpha=0.4)

    for group in GROUPS:
        draw(left, f"mean_I_{group}", "-o", GROUP_COLORS[group], f"{group}-transformed categories")
    left.set_xlabel("number of seen-transformed categories")
    left.set_ylabel(f"mean $I_k$ ({rows[0]['layer']})")
    left.legend(fontsize=8)
    draw(right, "across_accuracy", "-o", GROUP_COLORS["unseen"], "across (unseen-transformed)",
         100)  # fmt: skip
    draw(right, "within_accuracy", "-s", GROUP_COLORS["seen"], "within (seen-transformed)", 100)
    draw(right, "clean_accuracy", ":", "grey", "clean", 100)
    right.set_xlabel("number of seen-transformed categories")
    right.set_ylabel("accuracy on transformed test images (%)")
    right.legend(fontsize=8)
    return save_figure(fig, path)


def format_compare(rows: Sequence[dict]) -> str:
    """One line per run; with several runs per count, one more line per count: their mean."""
    lines = [f"{'seen':>4} {'seed':>4} {'τ':>5} {'I seen':>7} {'I unseen':>8} {'within %':>8} "
             f"{'across %':>8}"]  # fmt: skip
    for r in rows:
        seed = "-" if r.get("seed") is None else r["seed"]
        lines.append(
            f"{r['seen_transformed']:>4} {seed:>4} {r['tau']:>5g} {_num(r['mean_I_seen']):>7} "
            f"{_num(r['mean_I_unseen']):>8} {_pct(r['within_accuracy']):>8} "
            f"{_pct(r['across_accuracy']):>8}"
        )
    means = compare_means(rows)
    if any(m["runs"] > 1 for m in means):
        for m in means:
            lines.append(
                f"{m['seen_transformed']:>4} {'mean':>4} {'':>5} {_num(m['mean_I_seen']):>7} "
                f"{_num(m['mean_I_unseen']):>8} {_pct(m['within_accuracy']):>8} "
                f"{_pct(m['across_accuracy']):>8}   ({m['runs']} runs)"
            )
    return "\n".join(lines)


def write_compare(
    reports: Sequence[dict], sources: Sequence[str], out: str | os.PathLike, *,
    layer: str | None = None, overwrite: bool = False, command: str | None = None,
) -> tuple[Path, list[dict]]:  # fmt: skip
    """The comparison folder of several reports, written whole or not at all; the report
    folders read (``sources``) may not be inside it."""
    rows = compare_rows(reports, layer)
    with output_folder(out, overwrite=overwrite, inputs=sources) as folder:
        write_compare_files(folder, rows, sources, command)
    return Path(out), rows


def write_compare_files(
    folder: Path, rows: Sequence[dict], sources: Sequence[str], command: str | None
) -> None:
    """``compare.png`` and ``compare.json`` (the runs and their per-count means) in folder."""
    plot_compare(rows, folder / "compare.png")
    write_json(folder / "compare.json", {"tool": "invfast compare", "command": command,
                                        "reports": list(sources), "rows": list(rows),
                                        "means": compare_means(rows)})  # fmt: skip


__all__ = [
    "compare_rows", "format_table", "load_report", "write_compare", "write_report",
]  # fmt: skip

"""What ``invfast screen`` writes: the accuracy and softmax figures of P2 Fig. 6/11, the
table of critical magnitudes, and ``screening.json``."""

from __future__ import annotations

import math
import os
from pathlib import Path

from invfast.core.runtime.figures import new_figure, save_figure
from invfast.core.runtime.outputs import write_bytes
from invfast.screening.sensitivity import ScreeningResult


def _class_label(label: int, name: str | None) -> str:
    return f"{label} ({name})" if name else str(label)


def plot_accuracy(result: ScreeningResult, path: str | os.PathLike) -> Path:
    """Accuracy vs magnitude: overall, per class (thin), threshold and critical magnitude."""
    figure = new_figure(6.4, 4.2)
    axes = figure.subplots()
    for c in result.classes:
        axes.plot(result.magnitudes, c.accuracy, color="0.6", linewidth=0.7, alpha=0.5)
    axes.plot(result.magnitudes, result.accuracy, "o-", color="C0", label="all classes")
    axes.axhline(
        result.threshold,
        color="C3",
        linestyle="--",
        linewidth=1,
        label=f"{result.fraction:.0%} of clean accuracy",
    )
    if result.critical_magnitude is not None:
        axes.axvline(result.critical_magnitude, color="C3", linestyle=":", linewidth=1)
    axes.set_xlabel(result.parameter or "magnitude")
    axes.set_ylabel("top-1 accuracy")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(f"screening: {result.transform or 'transform'}")
    axes.legend(loc="best", fontsize=8)
    return save_figure(figure, path)


def plot_softmax(
    result: ScreeningResult, out_dir: str | os.PathLike, *, per_page: int = 12
) -> list[Path]:
    """P2 Fig. 6 style panels, one per class: three top classes, "others", class accuracy."""
    paths = []
    pages = [result.classes[i : i + per_page] for i in range(0, len(result.classes), per_page)]
    names = {c.label: c.name for c in result.classes}
    for number, page in enumerate(pages):
        cols = min(3, len(page))
        rows = math.ceil(len(page) / cols)
        figure = new_figure(4.2 * cols, 3.2 * rows)
        grid = figure.subplots(rows, cols, squeeze=False)
        for axes in grid.flat[len(page) :]:
            axes.set_visible(False)
        for axes, c in zip(grid.flat, page, strict=False):
            for i, (q, curve) in enumerate(zip(c.top_classes, c.top_softmax, strict=True)):
                axes.plot(
                    result.magnitudes, curve, color=f"C{i}", label=_class_label(q, names.get(q))
                )
            if c.others_softmax is not None:
                axes.plot(
                    result.magnitudes,
                    c.others_softmax,
                    color="0.5",
                    linestyle="--",
                    label="others (max)",
                )
            axes.plot(result.magnitudes, c.accuracy, color="k", linestyle=":", label="accuracy")
            axes.set_ylim(-0.02, 1.02)
            axes.set_title(f"class {_class_label(c.label, c.name)}, n={c.count}", fontsize=9)
            axes.set_xlabel(result.parameter or "magnitude", fontsize=8)
            axes.set_ylabel("mean softmax", fontsize=8)
            axes.legend(fontsize=7, loc="best")
        figure.suptitle(f"screening: {result.transform or 'transform'}")
        paths.append(save_figure(figure, Path(out_dir) / f"softmax_{number:03d}.png"))
    return paths


def _format_critical(
    value: float | None, magnitudes: list[float], accuracy: list[float], threshold: float
) -> str:
    if value is None:
        return "never"
    if accuracy[0] < threshold:
        return f"<= {magnitudes[0]:g}"
    return f"{value:.4g}"


def format_table(result: ScreeningResult) -> str:
    """Terminal table of the critical magnitudes (overall first, then per class)."""
    header = (
        f"critical {result.parameter or 'magnitude'} of {result.transform or 'transform'}: "
        f"first below {result.fraction:.0%} of clean accuracy (linear interpolation)"
    )
    lines = [header, f"{'class':<24}{'images':>8}{'clean acc':>11}{'critical':>12}"]
    rows = [
        ("all", result.count, result.clean_accuracy, result.accuracy, result.critical_magnitude)
    ]
    rows += [
        (_class_label(c.label, c.name), c.count, c.clean_accuracy, c.accuracy, c.critical_magnitude)
        for c in result.classes
    ]
    for name, count, clean, accuracy, value in rows:
        cell = _format_critical(value, result.magnitudes, accuracy, result.fraction * clean)
        lines.append(f"{name[:23]:<24}{count:>8}{clean:>11.4f}{cell:>12}")
    return "\n".join(lines)


def write_report(result: ScreeningResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """``screening.json``, ``accuracy.png`` and ``softmax_NNN.png`` pages in ``out_dir``."""
    out_dir = Path(out_dir)
    paths = {
        "json": write_bytes(out_dir / "screening.json", result.to_json().encode()),
        "accuracy": plot_accuracy(result, out_dir / "accuracy.png"),
    }
    for i, path in enumerate(plot_softmax(result, out_dir)):
        paths[f"softmax_{i:03d}"] = path
    return paths

"""One figure style for every invfast figure, and atomic PNG files.

matplotlib is imported inside :func:`new_figure` on purpose: it costs about 0.3 s, and
most commands and library calls draw nothing.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from invfast.core.runtime.outputs import write_bytes

#: seen- and unseen-transformed categories, the same in every figure
GROUP_COLORS = {"seen": "#1f77b4", "unseen": "#d62728"}
DPI = 100


def new_figure(width: float, height: float):
    """An empty figure (inches) on matplotlib's Agg canvas, with constrained layout and no
    pyplot state: add axes with ``figure.subplots(...)``."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save_figure(figure, path: str | os.PathLike) -> Path:
    """Render ``figure`` to a PNG at ``path`` atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return write_bytes(path, buffer.getvalue())

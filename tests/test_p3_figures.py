"""invfast.learning.figures: the saliency grid (P3 Fig. 3) and the drift plot (Fig. 4) as PNGs."""

from __future__ import annotations

import pytest

from invfast.learning import drift, metrics
from invfast.learning import figures as p3_figures
from p3_helpers import images, labels, weight_tied

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_saliency_grid_png(tmp_path):
    model = weight_tied("R4", seed=0)
    x, y = images(3), labels(3)
    maps = metrics.saliency_orbit(model, x, y, "R4", steps=4)
    path = p3_figures.save_saliency_grid(
        maps, tmp_path / "fig" / "saliency.png", images=x, group="R4"
    )
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert [p.name for p in path.parent.iterdir()] == ["saliency.png"]  # no temporary left
    assert path.stat().st_mode & 0o777 == 0o644
    with pytest.raises(ValueError, match="maps"):
        p3_figures.save_saliency_grid(maps[0], tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"\.png"):
        p3_figures.save_saliency_grid(maps, tmp_path / "saliency.jpg")


def test_drift_plot_png(tmp_path):
    curve = drift.DriftResult(
        betas=(0.0, 0.5, 1.0),
        di=(0.0, 0.1, 0.4),
        li=(0.0, 1.0, 4.0),
        accuracy=(0.9, 0.6, 0.3),
        accuracy_ratio=(1.0, 2 / 3, 1 / 3),
        accuracy_d1=0.9,
        n_images=10,
        group="R4",
        convention="",
    )
    path = p3_figures.save_drift_plot({"DA": curve, "WT": curve}, tmp_path / "drift.png", title="t")
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert p3_figures.save_drift_plot(curve, tmp_path / "one.png").exists()
    with pytest.raises(ValueError, match="at least one"):
        p3_figures.save_drift_plot({}, tmp_path / "none.png")

"""invfast.learning.drift: D(β) = (1 − β)·D1 + β·D2, DI and the accuracy ratio (P3 §4.3, Fig. 4)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from invfast.learning import drift, metrics
from p3_helpers import TinyMLP, chunks, labels, weight_tied


def raw_images(n, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 6, 6), generator=gen, dtype=torch.uint8)


def standardize(x):
    return (x.float() - 127.5) / 64.0


def test_parse_betas():
    assert drift.parse_betas("0:1:0.1") == pytest.approx([i / 10 for i in range(11)])
    assert drift.parse_betas("0:1:0.25")[-1] == 1.0
    assert drift.parse_betas("0, 0.5,1") == [0.0, 0.5, 1.0]
    assert drift.parse_betas([0.2]) == [0.2]
    for bad in ("0:1", "1:0:0.1", "0:1:0", "a,b", "0,1.5", []):
        with pytest.raises(ValueError, match="betas"):
            drift.parse_betas(bad)


def test_mix_images_is_the_convex_blend_in_pixels():
    a, b = raw_images(3, 0), raw_images(3, 1)
    mixed = drift.mix_images(a, b, 0.3)
    torch.testing.assert_close(mixed, 0.7 * a.float() + 0.3 * b.float())
    assert torch.equal(drift.mix_images(a, b, 0.0), a.float())
    with pytest.raises(ValueError, match="same shape"):
        drift.mix_images(a, b[:, :, :5], 0.5)


@given(
    sizes1=st.lists(st.integers(1, 5), min_size=1, max_size=5),
    sizes2=st.lists(st.integers(1, 5), min_size=1, max_size=5),
)
def test_pairs_line_up_image_by_image_whatever_the_batch_sizes(sizes1, sizes2):
    n1, n2 = sum(sizes1), sum(sizes2)
    x1, y1 = torch.arange(n1).view(n1, 1, 1, 1), torch.arange(n1)
    x2 = 1000 + torch.arange(n2).view(n2, 1, 1, 1)
    pairs = list(drift.paired_batches(chunks(x1, y1, sizes1), chunks(x2, x2[:, 0, 0, 0], sizes2)))
    got1 = torch.cat([p[0] for p in pairs]).flatten()
    got2 = torch.cat([p[2] for p in pairs]).flatten()
    assert got1.tolist() == list(range(min(n1, n2)))
    assert got2.tolist() == [1000 + i for i in range(min(n1, n2))]
    assert torch.cat([p[1] for p in pairs]).tolist() == got1.tolist()


def test_drift_curve_endpoints_match_the_orbit_metrics():
    model = TinyMLP((1, 6, 6), classes=5, seed=1)
    d1, y1 = raw_images(9, 1), labels(9, classes=5, seed=1)
    d2 = raw_images(12, 2)
    curve = drift.drift_curve(model, (d1, y1), d2, "R4", "0:1:0.5", preprocess=standardize)
    assert curve.betas == (0.0, 0.5, 1.0) and curve.n_images == 9
    start = metrics.orbit_metrics(model, (d1, y1), "R4", preprocess=standardize)
    end = metrics.orbit_metrics(model, (d2[:9], y1), "R4", preprocess=standardize)
    assert curve.di[0] == pytest.approx(start["DI"].value, rel=1e-9)
    assert curve.li[-1] == pytest.approx(end["LI"].value, rel=1e-9)
    assert curve.accuracy[0] == curve.accuracy_d1 == start["accuracy"].value
    assert curve.accuracy[-1] == end["accuracy"].value
    assert curve.accuracy_ratio[0] == 1.0
    ratio = curve.accuracy[1] / curve.accuracy[0]
    assert curve.accuracy_ratio[1] == pytest.approx(ratio)
    assert "labels of D1" in curve.convention and "mean over images" in curve.convention
    assert curve.to_dict()["di"] == list(curve.di)


def test_drift_curve_streams_and_batching_does_not_matter():
    model = TinyMLP((1, 6, 6), classes=5, seed=2)
    d1, y1 = raw_images(10, 3), labels(10, classes=5, seed=3)
    d2 = raw_images(10, 4)
    whole = drift.drift_curve(model, (d1, y1), (d2, y1), "T3", [0.2, 0.7], preprocess=standardize)
    split = drift.drift_curve(
        model,
        chunks(d1, y1, [3, 3]),
        chunks(d2, y1, [4, 1]),
        "T3",
        [0.2, 0.7],
        preprocess=standardize,
    )
    assert whole.betas == (0.2, 0.7)  # β = 0 is measured for the ratio but not reported
    for field in ("di", "li", "accuracy", "accuracy_ratio"):
        assert getattr(split, field) == pytest.approx(getattr(whole, field), rel=1e-6)
    assert whole.accuracy_d1 == split.accuracy_d1


def test_weight_tied_model_stays_invariant_under_drift():
    model = weight_tied("R4", classes=5, seed=5)
    d1, y1 = raw_images(6, 5), labels(6, classes=5, seed=5)
    curve = drift.drift_curve(
        model, (d1, y1), raw_images(6, 6), "R4", "0:1:0.25", preprocess=standardize
    )
    assert max(abs(v) for v in curve.di) < 1e-10
    assert max(curve.li) < 1e-8


def test_drift_errors():
    model = TinyMLP((1, 6, 6), classes=5)
    with pytest.raises(ValueError, match="must have labels"):
        drift.drift_curve(model, raw_images(3, 0), raw_images(3, 1), "R4", [0.5])
    with pytest.raises(ValueError, match="no image pairs"):
        drift.drift_curve(model, (raw_images(3, 0), labels(3)), [], "R4", [0.5])
    curve = drift.drift_curve(
        model, (raw_images(3, 0), torch.full((3,), 9)), raw_images(3, 1), "R4", [1.0]
    )
    assert curve.accuracy_d1 == 0.0 and math.isnan(curve.accuracy_ratio[0])

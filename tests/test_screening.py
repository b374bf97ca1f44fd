"""invfast.screening (P2 §3.3): accuracy, softmax curves, critical magnitudes."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from invfast import screening

PNG = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- fixtures
pytestmark = pytest.mark.usefixtures("one_thread")


def per_image(x: torch.Tensor) -> torch.Tensor:
    flat = x.float().flatten(1)
    std = flat.std(dim=1, unbiased=False, keepdim=True).clamp_min(1 / math.sqrt(flat.shape[1]))
    return ((flat - flat.mean(dim=1, keepdim=True)) / std).view(x.shape)


def brightness(x: torch.Tensor, m: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Test transform: add m (pixel units) then standardize; m = 0 is exactly the identity."""
    del ids
    return per_image((x.float() + m[:, None, None, None]).clamp(0, 255))


def random_setup(seed: int, n: int = 37, classes: int = 5, batch: int = 8):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(24, classes),
    )  # fmt: skip
    images = torch.randint(0, 256, (n, 3, 6, 6), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, classes, (n,), generator=g)
    data = [
        (images[i : i + batch], labels[i : i + batch], torch.arange(i, min(i + batch, n)))
        for i in range(0, n, batch)
    ]
    return model, images, labels, data


class BinModel(nn.Module):
    """Predicts the brightness bin of an image: class k for mean value in (64k, 64k + 64].

    Logits −(v − centre_k)² with centres 64k + 32; a value exactly on a boundary ties and
    argmax keeps the lower (true) class."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = x.flatten(1).mean(dim=1) * 255.0
        centres = torch.arange(4, dtype=x.dtype) * 64 + 32
        return -((value[:, None] - centres) ** 2) / 64.0


def bin_data(batch: int = 5):
    """Class k ∈ 0..3 images of uniform value 64k + o, o ∈ {10, 26, 42, 58}, two copies each."""
    values, labels = [], []
    for k in range(4):
        for o in (10, 26, 42, 58):
            values += [64 * k + o] * 2
            labels += [k] * 2
    images = torch.tensor(values, dtype=torch.uint8)[:, None, None, None].expand(-1, 1, 2, 2)
    labels = torch.tensor(labels)
    return [(images[i : i + batch], labels[i : i + batch]) for i in range(0, len(values), batch)]


def shift_scaled(x, m, ids):
    del ids
    return (x.float() + m[:, None, None, None]) / 255.0


def scaled(x):
    return x.float() / 255.0


def naive_curves(model, data, transform_fn, standardize_fn, magnitudes):
    """One image and one magnitude at a time: per-class accuracy and mean softmax [S, K]."""
    model.eval()
    per_class: dict[int, list] = {}
    with torch.no_grad():
        for images, labels, ids in data:
            for i in range(images.shape[0]):
                x, y = images[i : i + 1], int(labels[i])
                rows = [torch.softmax(model(standardize_fn(x)), 1)[0]]
                for m in magnitudes:
                    out = transform_fn(x, torch.tensor([m], dtype=torch.float32), ids[i : i + 1])
                    rows.append(torch.softmax(model(out), 1)[0])
                per_class.setdefault(y, []).append(torch.stack(rows).double())
    return {y: torch.stack(v) for y, v in per_class.items()}  # [n, S, K]


# --------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("max_batch", [1, 7, 8, 20, 10_000])
def test_identity_magnitude_reproduces_clean_accuracy(max_batch):
    model, images, labels, data = random_setup(0)
    result = screening.screen(
        model, data, brightness, [0.0, 30.0, 120.0], standardize_fn=per_image,
        max_batch=max_batch,
    )  # fmt: skip
    with torch.no_grad():
        expected = (model(per_image(images)).argmax(1) == labels).double().mean().item()
    assert result.count == images.shape[0]
    assert result.clean_accuracy == expected
    assert result.accuracy[0] == result.clean_accuracy
    for c in result.classes:
        assert c.accuracy[0] == c.clean_accuracy
    assert 0.0 < result.clean_accuracy < 1.0  # the data is not trivially all right or wrong


def test_known_breaking_point():
    magnitudes = list(range(61))
    result = screening.screen(
        BinModel(), bin_data(), shift_scaled, magnitudes, standardize_fn=scaled, max_batch=64
    )
    assert result.clean_accuracy == 1.0
    by_label = {c.label: c for c in result.classes}
    for k in range(3):  # image 64k + o breaks once o + m > 64: at m = 7, 23, 39, 55
        c = by_label[k]
        expected = [sum(o + m <= 64 for o in (10, 26, 42, 58)) / 4 for m in magnitudes]
        assert c.accuracy == expected
        assert c.critical_magnitude == 38.0  # accuracy 0.5 at m = 38, 0.25 at m = 39
    assert by_label[3].accuracy == [1.0] * 61
    assert by_label[3].critical_magnitude is None
    # saturated softmax: classes 0 and 1 tie at exactly 0 for class 3; the lower index wins
    assert by_label[3].top_classes == [3, 2, 0]
    assert by_label[3].others_softmax == [0.0] * 61
    assert by_label[0].top_classes == [0, 1, 2]  # predictions drift to the next bins
    # overall (3a + 1)/4: 0.625 at m = 38, 0.4375 at m = 39 → 38 + 0.125 / 0.1875
    assert result.critical_magnitude == pytest.approx(38 + 2 / 3, abs=1e-12)
    strict = screening.screen(
        BinModel(), bin_data(), shift_scaled, magnitudes, standardize_fn=scaled, fraction=0.9,
        classes=None,
    )  # fmt: skip
    assert strict.classes == []
    assert strict.critical_magnitude == pytest.approx(6 + 0.1 / 0.1875, abs=1e-12)


def test_critical_magnitude_rules():
    m = [0.0, 10.0, 20.0, 30.0]
    assert screening.critical_magnitude(m, [1.0, 0.8, 0.6, 0.4], 1.0, 0.5) == pytest.approx(25.0)
    assert screening.critical_magnitude(m, [1.0, 0.9, 0.9, 0.9], 1.0, 0.5) is None
    assert screening.critical_magnitude(m, [0.3, 0.9, 0.1, 0.1], 1.0, 0.5) == 0.0  # at first
    # the first crossing counts, even when the accuracy recovers (P2 Fig. 6, rotation by 180°)
    assert screening.critical_magnitude(m, [1.0, 0.2, 1.0, 0.2], 1.0, 0.5) == pytest.approx(
        10 * 0.5 / 0.8
    )
    assert screening.critical_magnitude(m, [1.0, 0.5, 0.5, 0.5], 1.0, 0.5) is None  # not below
    descending = [0.0, -5.0, -10.0]
    assert screening.critical_magnitude(descending, [0.8, 0.6, 0.2], 0.8) == pytest.approx(-7.5)
    with pytest.raises(ValueError, match="accuracies"):
        screening.critical_magnitude(m, [1.0], 1.0)


@given(
    accuracy=st.lists(st.floats(0, 1), min_size=1, max_size=12),
    fraction=st.floats(0.05, 1.0),
)
def test_critical_magnitude_lies_on_the_crossing_segment(accuracy, fraction):
    magnitudes = [2.0 * j for j in range(len(accuracy))]
    value = screening.critical_magnitude(magnitudes, accuracy, 1.0, fraction)
    below = [j for j, a in enumerate(accuracy) if a < fraction]
    if not below:
        assert value is None
    elif below[0] == 0:
        assert value == magnitudes[0]
    else:
        j = below[0]
        assert magnitudes[j - 1] <= value <= magnitudes[j]


# --------------------------------------------------------------------------- softmax curves
@pytest.mark.parametrize("max_batch", [3, 4096])
def test_softmax_curves_match_one_image_at_a_time(max_batch):
    model, _, _, data = random_setup(3, n=17, classes=6, batch=9)
    magnitudes = [0.0, 40.0, 90.0, 200.0]
    result = screening.screen(
        model, data, brightness, magnitudes, standardize_fn=per_image, max_batch=max_batch
    )
    naive = naive_curves(model, data, brightness, per_image, magnitudes)
    assert sorted(c.label for c in result.classes) == sorted(naive)
    for c in result.classes:
        probs = naive[c.label]
        mean = probs.mean(dim=0)  # [S, K]
        assert c.count == probs.shape[0]
        peak = mean[1:].max(dim=0).values
        order = sorted(range(6), key=lambda q: (-float(peak[q]), q))
        assert c.top_classes == order[:3]
        for q, curve in zip(c.top_classes, c.top_softmax, strict=True):
            torch.testing.assert_close(torch.tensor(curve, dtype=torch.float64), mean[1:, q])
        others = mean[1:, order[3:]].max(dim=1).values
        torch.testing.assert_close(torch.tensor(c.others_softmax, dtype=torch.float64), others)
        torch.testing.assert_close(
            torch.tensor(c.clean_top_softmax, dtype=torch.float64), mean[0, c.top_classes]
        )


def test_one_transform_call_and_one_forward_per_batch_when_it_fits():
    model, _, _, data = random_setup(1, n=16, batch=8)
    calls = {"forward": [], "transform": []}
    model.register_forward_hook(lambda m, i, o: calls["forward"].append(i[0].shape[0]))

    def counting(x, m, ids):
        calls["transform"].append(sorted(set(m.tolist())))
        return brightness(x, m, ids)

    magnitudes = [0.0, 10.0, 20.0, 30.0]
    screening.screen(model, data, counting, magnitudes, standardize_fn=per_image, max_batch=40)
    assert calls["forward"] == [40, 40]  # (clean + 4 magnitudes) × 8 images, per batch
    assert calls["transform"] == [magnitudes, magnitudes]
    calls["forward"].clear()
    screening.screen(model, data, counting, magnitudes, standardize_fn=per_image, max_batch=16)
    assert calls["forward"] == [16, 16, 8] * 2  # two settings per forward


def test_rows_of_one_image_keep_its_id():
    model, _, _, data = random_setup(2, n=12, batch=5)
    marked = []
    for images, labels, ids in data:
        images = images.clone()
        images[:, 0, 0, 0] = (ids % 256).to(torch.uint8)
        marked.append((images, labels, ids + 1000))

    def checking(x, m, ids):
        assert torch.equal(x[:, 0, 0, 0].long(), (ids - 1000) % 256)
        return brightness(x, m, ids)

    screening.screen(
        model, marked, checking, [1.0, 2.0, 3.0], standardize_fn=per_image, max_batch=7
    )


def test_classifier_mode_restored_and_evaluated_without_grad():
    model, _, _, data = random_setup(4)
    model.train()
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append((m.training, o.requires_grad)))
    screening.screen(model, data, brightness, [0.0, 5.0], standardize_fn=per_image)
    assert seen and all(mode == (False, False) for mode in seen)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_chosen_classes():
    model, _, labels, data = random_setup(5, classes=5)
    present = sorted(set(labels.tolist()))
    result = screening.screen(
        model, data, brightness, [0.0, 50.0], standardize_fn=per_image, classes=[present[-1]],
        class_names=[f"c{i}" for i in range(5)],
    )  # fmt: skip
    assert [c.label for c in result.classes] == [present[-1]]
    assert result.classes[0].name == f"c{present[-1]}"
    absent = [k for k in range(5) if k not in present]
    if absent:
        with pytest.raises(ValueError, match="no image"):
            screening.screen(
                model, data, brightness, [0.0], standardize_fn=per_image, classes=absent[:1]
            )
    with pytest.raises(ValueError, match="out of range"):
        screening.screen(model, data, brightness, [0.0], standardize_fn=per_image, classes=[9])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"magnitudes": []}, "magnitudes"),
        ({"magnitudes": [0.0, float("nan")]}, "magnitudes"),
        ({"fraction": 0.0}, "fraction"),
        ({"max_batch": 0}, "max_batch"),
        ({"classes": "some"}, "classes"),
        ({"data": [(torch.zeros(2, 3, 6), torch.zeros(2, dtype=torch.long))]}, "images"),
        ({"data": [(torch.zeros(2, 3, 6, 6), torch.zeros(3, dtype=torch.long))]}, "labels"),
        ({"data": [(torch.zeros(2, 3, 6, 6), torch.full((2,), 7))]}, "labels must lie"),
        ({"data": []}, "no images"),
        ({"transform_fn": lambda x, m, i: per_image(x)[:1]}, "one image per input row"),
    ],
)
def test_bad_arguments_raise_one_line_errors(kwargs, match):
    model, _, _, data = random_setup(6, classes=5)
    args = {"data": data, "magnitudes": [0.0, 1.0], "transform_fn": brightness}
    args.update({k: v for k, v in kwargs.items() if k in args})
    options = {k: v for k, v in kwargs.items() if k not in args}
    with pytest.raises((ValueError, TypeError), match=match) as info:
        screening.screen(
            model, args["data"], args["transform_fn"], args["magnitudes"],
            standardize_fn=per_image, **options,
        )  # fmt: skip
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- outputs
def test_report_json_figures_and_table(tmp_path):
    result = screening.screen(
        BinModel(), bin_data(), shift_scaled, list(range(0, 61, 4)), standardize_fn=scaled,
        transform="brightness", parameter="shift",
    )  # fmt: skip
    paths = screening.write_report(result, tmp_path / "screen")
    assert set(paths) == {"json", "accuracy", "softmax_000"}
    for key in ("accuracy", "softmax_000"):
        assert paths[key].read_bytes().startswith(PNG)
    loaded = json.loads(paths["json"].read_text())
    assert screening.ScreeningResult.from_dict(loaded) == result
    assert loaded["critical_magnitude"] == result.critical_magnitude
    assert not list((tmp_path / "screen").glob(".*tmp"))  # no temporary left behind
    table = screening.format_table(result)
    lines = table.splitlines()
    assert "brightness" in lines[0] and "50%" in lines[0]
    assert lines[2].split()[:2] == ["all", "32"]
    assert lines[-1].split()[-1] == "never"  # class 3 never breaks
    # already below threshold at the first magnitude
    early = screening.screen(
        BinModel(), bin_data(), shift_scaled, [60.0, 61.0], standardize_fn=scaled
    )
    assert "<= 60" in screening.format_table(early)


def test_many_classes_are_paged(tmp_path):
    model, _, _, data = random_setup(7, n=40, classes=7, batch=20)
    result = screening.screen(model, data, brightness, [0.0, 100.0], standardize_fn=per_image)
    paths = screening.plot_softmax(result, tmp_path, per_page=3)
    assert len(result.classes) > 3
    assert len(paths) == math.ceil(len(result.classes) / 3)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0:180:10", [float(v) for v in range(0, 181, 10)]),
        ("0:1:0.1", [i * 0.1 for i in range(11)]),
        ("0:-20:-5", [0.0, -5.0, -10.0, -15.0, -20.0]),
        ("0:10:3", [0.0, 3.0, 6.0, 9.0]),
        ("1, 2.5,4", [1.0, 2.5, 4.0]),
        ("7", [7.0]),
    ],
)
def test_parse_magnitudes(spec, expected):
    assert screening.parse_magnitudes(spec) == pytest.approx(expected)


@pytest.mark.parametrize("spec", ["", "0:10:0", "0:10:-1", "a:b:c", "1,,2", "0:inf:1", "nan"])
def test_parse_magnitudes_rejects(spec):
    with pytest.raises(ValueError, match="values"):
        screening.parse_magnitudes(spec)

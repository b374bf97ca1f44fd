"""invfast.screening.itn (P2 §3.4, docs/p2-screening-itn.md): the Invariant Transformer Net."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from invfast.screening import itn

PNG = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_classifier(seed: int, channels: int = 3, size: int = 8, classes: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * size * size, classes),
    )  # fmt: skip
    with torch.no_grad():  # non-trivial running statistics, so eval and train modes differ
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def make_data(seed: int, n: int = 24, channels: int = 3, size: int = 8, batch: int = 8,
              labels: str = "predicted", model: nn.Module | None = None):  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    if labels == "predicted":
        with torch.no_grad():
            y = model(itn.per_image_standardize(images.float())).argmax(1)
    else:
        y = torch.randint(0, 4, (n,), generator=g)
    return [
        (images[i : i + batch], y[i : i + batch], torch.arange(i, min(i + batch, n)))
        for i in range(0, n, batch)
    ]


def trainer_for(model, channels=3, **config) -> itn.ITNTrainer:
    return itn.ITNTrainer(
        model, channels=channels, standardize_fn=itn.per_image_standardize,
        config=itn.ITNConfig(**config),
    )  # fmt: skip


# --------------------------------------------------------------------------- identity
@pytest.mark.parametrize("channels", [1, 3])
def test_identity_init_is_exactly_the_identity(channels):
    model = tiny_classifier(0, channels)
    data = make_data(1, channels=channels, labels="random")
    trainer = trainer_for(model, channels, init="identity")
    c = torch.rand(50, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        theta, matrix = trainer.itn.spatial(c), trainer.itn.color(c)
    assert torch.equal(theta, torch.eye(2, 3).expand(50, 2, 3))
    assert torch.equal(matrix, torch.eye(channels, channels + 1).expand(50, channels, channels + 1))
    images = data[0][0]
    out = trainer.itn.transform(images, c[: len(images)], c.flip(0)[: len(images)])
    assert torch.equal(out, images.float())
    # the frozen classifier's accuracy through the identity ITN is the clean accuracy
    with torch.no_grad():
        correct = sum(
            int((model(itn.per_image_standardize(x.float())).argmax(1) == y).sum())
            for x, y, _ in data
        )
    clean = correct / sum(len(y) for _, y, _ in data)
    assert 0.0 < clean < 1.0
    assert trainer.evaluate(data) == clean
    assert trainer.evaluate(data, c_s="random", c_c="random", seed=5) == clean
    assert trainer.evaluate(data, c_s=1.0, c_c=0.3) == clean


def test_random_init_starts_near_but_not_at_the_identity():
    trainer = trainer_for(tiny_classifier(0), init="random", seed=3)
    with torch.no_grad():
        theta = trainer.itn.spatial(torch.linspace(0, 1, 11))
    delta = (theta - torch.eye(2, 3)).abs()
    assert 0.0 < float(delta.max()) < 0.5
    assert not torch.allclose(theta[0], theta[-1])  # the matrix depends on c


def test_warp_keeps_the_gradient_at_the_identity():
    images = torch.rand(2, 3, 6, 6) * 255
    theta = torch.eye(2, 3).expand(2, 2, 3).clone().requires_grad_(True)
    out = itn.warp(images, theta)
    assert torch.equal(out, images)
    (out * torch.linspace(0, 1, 6)).sum().backward()  # brighter to the right: shift matters
    assert float(theta.grad.abs().sum()) > 0


# --------------------------------------------------------------------------- losses
def test_transformer_loss_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    extended = itn.extend(torch.eye(2, 3) + 0.3 * torch.randn(5, 2, 3, generator=g))
    c = torch.rand(5, generator=g)
    v = itn.random_unit_vectors(7, 3, g)
    u = itn.random_unit_vectors(7, 3, g)
    assert torch.allclose(v.norm(dim=1), torch.ones(7))
    terms = itn.transformer_loss(extended, c, v, u, diversity_weight=0.5)
    m = torch.tensor(
        [sum(float((a @ vj - vj).norm()) for vj in v) / 7 for a in extended], dtype=torch.float64
    )
    c64 = c.double()
    assert float(terms["magnitude"]) == pytest.approx(float(-m.mean()), rel=1e-5)
    assert float(terms["diversity"]) == pytest.approx(float(((1 - c64) * m).mean()), rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(
        float(-m.mean() + 0.5 * ((1 - c64) * m).mean()), rel=1e-5
    )
    full = itn.transformer_loss(extended, c, v, u, diversity_weight=1.0)["loss"]
    assert float(full) == pytest.approx(float(-(c64 * m).mean()), rel=1e-5)


def test_subgradient_at_zero_displacement():
    g = torch.Generator().manual_seed(1)
    extended = itn.extend(torch.eye(3, 4).expand(2, 3, 4).clone()).requires_grad_(True)
    c = torch.tensor([0.25, 1.0])
    v, u = itn.random_unit_vectors(5, 4, g), itn.random_unit_vectors(5, 4, g)
    loss = itn.transformer_loss(extended, c, v, u)["loss"]
    assert float(loss.detach()) == 0.0
    loss.backward()
    # d/dA of −(1/B) Σ_i c_i (1/n) Σ_j u_j·(A_i − I) v_j
    expected = -(c[:, None, None] / 2) * (u[:, :, None] * v[:, None, :]).mean(0)
    assert torch.allclose(extended.grad, expected)


def test_choose_branch():
    assert itn.choose_branch(0.9, 0.9) == itn.BRANCH_MAGNITUDE  # at the target: magnitude
    assert itn.choose_branch(1.0, 0.9) == itn.BRANCH_MAGNITUDE
    assert itn.choose_branch(0.8999, 0.9) == itn.BRANCH_CLASSIFICATION
    assert itn.choose_branch(0.0, 0.0) == itn.BRANCH_MAGNITUDE


def _expected_gradients(fresh: itn.ITNTrainer, images, labels, branch: str):
    """Replay one step's random draws on a same-seed trainer and differentiate the branch loss."""
    cfg, b, channels = fresh.config, len(images), fresh.itn.channels
    c_s, c_c = fresh._uniform(b), fresh._uniform(b)
    v_s, u_s = fresh._vectors(3)
    v_c, u_c = fresh._vectors(channels + 1)
    theta, matrix = fresh.itn.spatial(c_s), fresh.itn.color(c_c)
    if branch == itn.BRANCH_CLASSIFICATION:
        x = itn.warp(itn.recolor(images.float(), matrix), theta)
        loss = F.cross_entropy(fresh.classifier(itn.per_image_standardize(x)), labels)
    else:
        spatial = itn.transformer_loss(itn.extend(theta), c_s, v_s, u_s, cfg.diversity_weight)
        color = itn.transformer_loss(itn.extend(matrix), c_c, v_c, u_c, cfg.diversity_weight)
        loss = spatial["loss"] + cfg.color_weight * color["loss"]
    params = list(fresh.itn.parameters())
    return torch.autograd.grad(loss, params, allow_unused=True)


@pytest.mark.parametrize(
    ("wrong", "branch"),
    [(0, itn.BRANCH_MAGNITUDE), (4, itn.BRANCH_MAGNITUDE), (5, itn.BRANCH_CLASSIFICATION),
     (8, itn.BRANCH_CLASSIFICATION)],
)  # fmt: skip
def test_switch_picks_the_branch_and_its_loss(wrong, branch):
    model = tiny_classifier(2)
    images, labels, _ = make_data(3, n=8, model=model)[0]
    labels = labels.clone()
    labels[:wrong] = (labels[:wrong] + 1) % 4  # batch accuracy (8 − wrong) / 8, target 0.5
    config = {"init": "identity", "target_accuracy": 0.5, "color_weight": 5.0, "seed": 11}
    trainer, fresh = trainer_for(model, **config), trainer_for(model, **config)
    seen = {}
    original_step = trainer.optimizer.step

    def capture(*args, **kwargs):
        seen["grads"] = [p.grad.clone() for p in trainer.itn.parameters()]
        return original_step(*args, **kwargs)

    trainer.optimizer.step = capture
    record = trainer.step(images, labels)
    assert record["batch_accuracy"] == (8 - wrong) / 8
    assert record["branch"] == branch
    if branch == itn.BRANCH_MAGNITUDE:
        assert record["loss"] == pytest.approx(record["spatial_loss"] + 5 * record["color_loss"])
    else:
        assert record["loss"] == record["classification_loss"]
    expected = _expected_gradients(fresh, images, labels, branch)
    for got, want in zip(seen["grads"], expected, strict=True):
        torch.testing.assert_close(got, torch.zeros_like(got) if want is None else want)
    assert any(float(g.abs().sum()) > 0 for g in seen["grads"])


def test_magnitude_steps_leave_the_identity():
    model = tiny_classifier(2)
    data = make_data(3, n=16, model=model)
    trainer = trainer_for(model, init="identity", target_accuracy=0.0, lr=1e-2)
    trainer.fit(data, epochs=3)
    assert all(r["branch"] == itn.BRANCH_MAGNITUDE for r in trainer.history)
    displacement = [r["spatial_displacement"] for r in trainer.history]
    assert displacement[0] == 0.0 and displacement[-1] > displacement[1] > 0.0
    assert trainer.history[-1]["color_displacement"] > 0.0


# --------------------------------------------------------------------------- frozen classifier
def test_classifier_weights_unchanged_and_frozen_during_training():
    model = tiny_classifier(4)
    data = make_data(5, n=16, model=model)
    before = copy.deepcopy(model.state_dict())
    model.train()  # the caller's mode, restored afterwards
    seen = []
    model.register_forward_hook(
        lambda m, i, o: seen.append((m.training, any(p.requires_grad for p in m.parameters())))
    )
    trainer = trainer_for(model, init="random", target_accuracy=0.6, lr=5e-2)
    trainer.fit(data, epochs=2)
    trainer.evaluate(data, c_s=0.5)
    branches = {r["branch"] for r in trainer.history}
    assert branches == {itn.BRANCH_MAGNITUDE, itn.BRANCH_CLASSIFICATION}  # both branches ran
    assert seen and all(s == (False, False) for s in seen)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. BatchNorm statistics
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert model.training


# --------------------------------------------------------------------------- decomposition
def test_decompose_spatial_rotation_scale_translation():
    h = w = 9
    # θ = R(90°) moves content anticlockwise on screen: a pixel right of centre goes up
    theta = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]])
    image = torch.zeros(1, 1, h, w)
    image[0, 0, 4, 7] = 255
    moved = itn.warp(image, theta)
    assert tuple((moved[0, 0] > 128).nonzero()[0].tolist()) == (1, 4)
    parts = itn.decompose_spatial(theta[0], h, w)
    assert parts["rotation_deg"] == pytest.approx(90.0)
    assert parts["scale_min"] == pytest.approx(1.0) and parts["scale_max"] == pytest.approx(1.0)
    assert parts["translation_px"] == pytest.approx(0.0, abs=1e-12)
    # θ = 2I samples twice the field of view: content shrinks by 2 (zoom out)
    zoom = itn.decompose_spatial(torch.tensor([[2.0, 0, 0], [0, 2.0, 0]]), h, w)
    assert zoom["scale_max"] == pytest.approx(0.5) and zoom["scale_min"] == pytest.approx(0.5)
    # a shift of 0.5 in normalized x moves content left by W/4 pixels (non-square image)
    shift = itn.decompose_spatial(torch.tensor([[1.0, 0, 0.5], [0, 1.0, 0]]), 10, 20)
    assert shift["translation_px"] == pytest.approx(5.0)
    # content map L = s·R(φ) on screen, built back into θ
    for angle, scale in ((30.0, 0.7), (-75.0, 1.4)):
        phi = math.radians(angle)
        screen = torch.tensor(
            [[math.cos(phi), math.sin(phi)], [-math.sin(phi), math.cos(phi)]], dtype=torch.float64
        )  # anticlockwise on screen in (x right, y down) coordinates
        d = torch.diag(torch.tensor([w / 2.0, h / 2.0], dtype=torch.float64))
        a = torch.linalg.inv(torch.linalg.inv(d) @ (scale * screen) @ d)
        theta = torch.cat([a, torch.tensor([[0.1], [-0.2]], dtype=torch.float64)], dim=1)
        parts = itn.decompose_spatial(theta, h, w)
        assert parts["rotation_deg"] == pytest.approx(angle)
        assert parts["scale_min"] == pytest.approx(scale)
        assert parts["translation_px"] == pytest.approx(
            float((d @ torch.linalg.inv(a) @ torch.tensor([0.1, -0.2], dtype=torch.float64)).norm())
        )
        assert parts["reflection"] is False
    assert itn.decompose_spatial(torch.zeros(2, 3), h, w)["rotation_deg"] is None


def test_decompose_color():
    matrix = torch.cat(
        [torch.diag(torch.tensor([2.0, 1.0, 0.5])), torch.tensor([[0.1], [-0.2], [0]])], 1
    )
    parts = itn.decompose_color(matrix)
    assert parts["shift"] == pytest.approx(51.0)
    assert parts["bias"] == pytest.approx([25.5, -51.0, 0.0])
    assert parts["gain_max"] == pytest.approx(2.0) and parts["gain_min"] == pytest.approx(0.5)


def test_reach_is_the_extreme_over_grid_points_at_target():
    model = tiny_classifier(6)
    data = make_data(7, n=16, model=model)
    trainer = trainer_for(model, init="identity", target_accuracy=0.75, sweep_points=6)
    with torch.no_grad():  # θ(c) = (1 + 3c)·[I | 0]: zoom out growing with c
        hidden, out = trainer.itn.spatial.hidden, trainer.itn.spatial.out
        hidden.weight.zero_(), hidden.bias.zero_(), out.weight.zero_()
        hidden.weight[0, 0] = 1.0
        out.weight[0, 0] = out.weight[4, 0] = 3.0
    rows, reach = itn.measure_reach(trainer, data, height=8, width=8)
    assert [r["c"] for r in rows] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    for r in rows:
        assert r["spatial"]["scale_min"] == pytest.approx(1 / (1 + 3 * r["c"]), rel=1e-5)
        assert r["color_accuracy"] == 1.0 and r["color"]["shift"] == 0.0
    assert rows[0]["spatial_accuracy"] == 1.0 and rows[0]["spatial"]["pixel_change"] == 0.0
    kept = [r for r in rows if r["spatial_accuracy"] >= 0.75]
    assert reach["spatial_c_max"] == max(r["c"] for r in kept)
    assert reach["scale_min"] == min(r["spatial"]["scale_min"] for r in kept)
    assert reach["spatial_pixel_change"] == max(r["spatial"]["pixel_change"] for r in kept)
    assert reach["color_c_max"] == 1.0
    assert rows[-1]["spatial_accuracy"] < 1.0  # a 4× zoom out does change predictions


# --------------------------------------------------------------------------- runs and outputs
def test_short_run_writes_all_outputs(tmp_path):
    model = tiny_classifier(8)
    data = make_data(9, n=16, model=model)
    config = itn.ITNConfig(epochs=2, target_accuracy=0.8, sweep_points=3, grid_points=2, seed=1)
    trainer, result = itn.run_itn(
        model, data, standardize_fn=itn.per_image_standardize, config=config, out_dir=tmp_path
    )
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"itn_transformers.pt", "itn_losses.json", "itn_losses.png", "itn_grid.png",
                     "itn_result.json"}  # fmt: skip
    for png in ("itn_losses.png", "itn_grid.png"):
        assert (tmp_path / png).read_bytes().startswith(PNG)
    losses = json.loads((tmp_path / "itn_losses.json").read_text())
    assert len(losses["steps"]) == 4 == result.steps
    assert {"branch", "batch_accuracy", "classification_loss", "spatial_loss", "color_loss",
            "spatial_diversity", "color_magnitude"} <= set(losses["steps"][0])  # fmt: skip
    summary = json.loads((tmp_path / "itn_result.json").read_text())
    assert summary["clean_accuracy"] == 1.0
    assert len(summary["sweep"]) == 3
    assert {"rotation_deg", "scale_min", "scale_max", "translation_px", "color_shift",
            "color_gain_min", "color_gain_max"} <= set(summary["reach"])  # fmt: skip
    payload = torch.load(tmp_path / "itn_transformers.pt", weights_only=True)
    assert payload["format"] == itn.FORMAT and payload["channels"] == 3
    loaded = itn.load_transformers(tmp_path / "itn_transformers.pt")
    c = torch.linspace(0, 1, 5)
    with torch.no_grad():
        assert torch.equal(loaded.spatial(c), trainer.itn.spatial(c))
        assert torch.equal(loaded.color(c), trainer.itn.color(c))
    assert "magnitude reached" in itn.format_reach(result)
    # a grayscale classifier gets its grid too
    gray = trainer_for(tiny_classifier(8, channels=1), channels=1, grid_points=2)
    assert itn.plot_grid(gray, data[0][0][0, :1], tmp_path / "gray.png").read_bytes()[:8] == PNG


def test_same_seed_same_run_and_other_seed_differs():
    model = tiny_classifier(10)
    data = make_data(11, n=16, model=model)

    def run(seed):
        config = itn.ITNConfig(epochs=2, target_accuracy=0.7, sweep_points=2, seed=seed)
        return itn.run_itn(model, data, standardize_fn=itn.per_image_standardize, config=config)

    (t1, r1), (t2, r2), (_, r3) = run(3), run(3), run(4)
    assert r1.history == r2.history and r1.sweep == r2.sweep and r1.reach == r2.reach
    s1, s2 = t1.itn.state_dict(), t2.itn.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert r3.history != r1.history


# --------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    ("field", "value"),
    [("epochs", -1), ("target_accuracy", 1.5), ("color_weight", -1.0), ("init", "zeros"),
     ("unit_vectors", 0), ("lr", 0.0), ("sweep_points", 1)],
)  # fmt: skip
def test_bad_config_raises_one_line_error(field, value):
    with pytest.raises(ValueError, match=field) as info:
        itn.ITNConfig(**{field: value}).validate()
    assert "\n" not in str(info.value)


def test_bad_inputs():
    model = tiny_classifier(0)
    data = make_data(1, model=model)
    trainer = trainer_for(model)
    with pytest.raises(ValueError, match="re-iterable"):
        trainer.fit(iter(data), epochs=2)
    with pytest.raises(ValueError, match="images must be"):
        trainer.step(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="c_s"):
        trainer.evaluate(data, c_s=2.0)
    with pytest.raises(ValueError, match="no images"):
        itn.run_itn(model, [], standardize_fn=itn.per_image_standardize)
    with pytest.raises(TypeError, match=r"nn\.Module"):
        itn.ITNTrainer(lambda x: x, channels=3, standardize_fn=itn.per_image_standardize)


def test_load_transformers_rejects_other_files(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"format": "something else"}, path)
    with pytest.raises(ValueError, match="not an invfast ITN"):
        itn.load_transformers(path)


def test_standardizers():
    x = torch.rand(3, 2, 5, 5) * 255
    std = itn.make_standardizer("per-image")(x)
    flat = x.flatten(1)
    expected = (flat - flat.mean(1, keepdim=True)) / flat.std(1, unbiased=False, keepdim=True)
    torch.testing.assert_close(std.flatten(1), expected)
    constant = itn.per_image_standardize(torch.full((1, 1, 4, 4), 7.0))
    assert torch.equal(constant, torch.zeros(1, 1, 4, 4))  # std floored at 1/√N, no NaN
    assert torch.equal(itn.make_standardizer("none")(x), x)
    channel = itn.make_standardizer(([10.0, 20.0], [2.0, 4.0]))(x)
    torch.testing.assert_close(channel[:, 1], (x[:, 1] - 20.0) / 4.0)
    with pytest.raises(ValueError, match="standardize"):
        itn.make_standardizer("imagenet")
    with pytest.raises(ValueError, match="std"):
        itn.make_standardizer(([0.0], [0.0]))

"""invfast.learning.data: P3's padding / left-out-class protocol and standardization."""

from __future__ import annotations

import pytest
import torch

from invfast.core import checkpoint
from invfast.learning import data as p3_data


def mnist_like(n=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(1, 256, (n, 28, 28), generator=gen, dtype=torch.uint8)
    y = torch.arange(n) % 10
    return x, y


def test_r4_protocol_pads_to_36_and_leaves_out_nines():
    x, y = mnist_like()
    data = p3_data.apply_protocol(x, y, group="R4")
    assert data.images.shape == (36, 1, 36, 36) and data.images.dtype == torch.uint8
    assert data.left_out == (9,) and 9 not in data.labels.tolist()
    assert data.labels.max() == 8
    # centred: a 4-pixel zero border, the original pixels inside
    assert torch.equal(data.images[:, 0, 4:32, 4:32], x[data.kept_indices])
    border = data.images.clone()
    border[:, :, 4:32, 4:32] = 0
    assert int(border.sum()) == 0
    assert torch.equal(data.labels, y[data.kept_indices])


def test_t3_protocol_keeps_every_class_and_channels_pass_through():
    x, y = mnist_like()
    data = p3_data.apply_protocol(x.unsqueeze(1).expand(-1, 3, -1, -1), y, group="T3")
    assert data.images.shape == (40, 3, 36, 36) and data.left_out == ()
    assert torch.equal(data.labels, y)


def test_leaving_out_a_middle_class_renumbers_contiguously():
    x, y = mnist_like()
    data = p3_data.apply_protocol(x, y, leave_out=[3, 7], size=30)
    assert data.images.shape[-1] == 30
    kept = y[data.kept_indices]
    want = kept - (kept > 3).long() - (kept > 7).long()
    assert torch.equal(data.labels, want) and sorted(set(data.labels.tolist())) == list(range(8))


def test_protocol_errors():
    x, y = mnist_like(4)
    with pytest.raises(TypeError, match="uint8"):
        p3_data.apply_protocol(x.float(), y)
    with pytest.raises(ValueError, match="at least"):
        p3_data.apply_protocol(x, y, size=20)
    with pytest.raises(ValueError, match="labels"):
        p3_data.apply_protocol(x, y[:3])


def test_standardization_from_training_statistics():
    x, y = mnist_like(50, seed=1)
    images = p3_data.apply_protocol(x, y, group="R4").images
    mean, std = p3_data.channel_stats(images, chunk=7)
    flat = images.double()
    assert mean[0] == pytest.approx(float(flat.mean()), rel=1e-12)
    assert std[0] == pytest.approx(float(flat.std(unbiased=False)), rel=1e-10)
    one_chunk = p3_data.channel_stats(images, chunk=1000)
    assert one_chunk[0] == pytest.approx(mean) and one_chunk[1] == pytest.approx(std)
    standardized = checkpoint.standardizer((mean, std))(images)
    assert float(standardized.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(standardized.std(unbiased=False)) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="std > 0"):
        checkpoint.standardizer(([0.0], [0.0]))


def test_recipe_defaults_are_p3s():
    recipe = p3_data.P3_RECIPE
    assert (recipe["lr"], recipe["batch_size"], recipe["optimizer"]) == (8e-4, 512, "adam")
    assert recipe["image_size"] == 36 and recipe["target_si"] == 0.95
    assert p3_data.default_leave_out("R4") == (9,) and p3_data.default_leave_out("T3") == ()

"""invfast.core.models.weight_tied: P3's weight-tied MLP is exactly invariant by construction."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from invfast.core import groups
from invfast.core.models.weight_tied import MLP5WeightTied


@pytest.mark.parametrize("group", ["R4", "T3"])
@pytest.mark.parametrize("pool", ["mean", "max"])
@settings(max_examples=8)
@given(seed=st.integers(0, 2**16))
def test_outputs_are_invariant_for_any_weights(group, pool, seed):
    torch.manual_seed(seed)
    model = MLP5WeightTied(4, 2, 6, group=group, hidden=16, pool=pool)
    x = 3.0 * torch.randn(5, 2, 6, 6)
    with torch.no_grad():
        reference = model(x)
        for k in groups.get(group).elements():
            torch.testing.assert_close(model(groups.get(group).act(x, k)), reference)


def test_p3_size_and_shapes():
    model = MLP5WeightTied(10)
    # 5 linear layers of width 128 on 36×36 inputs: P3's "about 230k" parameters
    assert (
        sum(p.numel() for p in model.parameters())
        == 1296 * 128 + 128 + 3 * (128 * 128 + 128) + 1290
    )
    assert len([m for m in model.modules() if isinstance(m, torch.nn.Linear)]) == 5
    assert model(torch.zeros(3, 1, 36, 36)).shape == (3, 10)
    assert model.invariant_group == "R4"


def test_analysis_layers_are_post_relu_and_penultimate_last():
    torch.manual_seed(0)
    model = MLP5WeightTied(3, 1, 6, group="T3", hidden=8)
    seen = {}
    names = model.analysis_layers()
    hooks = [
        model.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: seen.__setitem__(name, out)
        )
        for name in names
    ]
    hooks.append(model.fc5.register_forward_pre_hook(lambda _m, args: seen.update(fc5=args[0])))
    model(torch.randn(4, 1, 6, 6))
    for hook in hooks:
        hook.remove()
    assert list(seen) == [*names, "fc5"]  # forward order
    for name in names:
        assert seen[name].shape == (4, 8) and bool((seen[name] >= 0).all())
    assert torch.equal(seen[names[-1]], seen["fc5"])  # penultimate: feeds the classifier


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"input must be \[B, 1, 36, 36\]"):
        MLP5WeightTied(10, 1, 36, group="R4")(torch.zeros(1, 1, 36, 30))
    with pytest.raises(ValueError, match="divisible by 3"):
        MLP5WeightTied(10, 1, 28, group="T3")
    with pytest.raises(ValueError, match="num_classes"):
        MLP5WeightTied(0)
    with pytest.raises(ValueError, match="pool"):
        MLP5WeightTied(10, pool="sum")
    with pytest.raises(ValueError, match="group"):
        MLP5WeightTied(10, group="Z5")

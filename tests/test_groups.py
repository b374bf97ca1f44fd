"""invfast.core.groups: R4 and T3 act as groups, by the documented pixel permutations."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from invfast.core import groups

GROUPS = [groups.R4, groups.T3]


def image_batch(group, seed, batch=3, dtype=torch.float32, side=None):
    gen = torch.Generator().manual_seed(seed)
    side = side or (5 if group is groups.R4 else 6)
    x = torch.randint(0, 256, (batch, 2, side, side), generator=gen)
    return x.to(dtype)


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
@given(seed=st.integers(0, 2**16), a=st.integers(0, 11), b=st.integers(0, 11), c=st.integers(0, 11))
def test_group_laws(group, seed, a, b, c):
    a, b, c = a % group.order, b % group.order, c % group.order
    x = image_batch(group, seed)
    act = group.act
    # identity, compatibility (a∘b)x = a(bx), inverse, associativity of compose
    assert torch.equal(act(x, group.identity), x)
    assert torch.equal(act(x, group.compose(a, b)), act(act(x, b), a))
    assert torch.equal(act(act(x, a), group.inverse(a)), x)
    assert group.compose(a, group.inverse(a)) == group.identity
    assert group.compose(group.compose(a, b), c) == group.compose(a, group.compose(b, c))
    assert 0 <= group.compose(a, b) < group.order


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_order_is_the_smallest_period(group):
    x = image_batch(group, 1)
    generator = 1
    y = x
    for step in range(1, group.order + 1):
        y = group.act(y, generator)
        assert torch.equal(y, x) == (step == group.order)


def test_r4_is_anticlockwise_rotation():
    x = torch.arange(16.0).view(4, 4)
    y = groups.R4.act(x, 1)
    for i in range(4):
        for j in range(4):
            # anticlockwise as displayed: the right column becomes the top row
            assert y[i, j] == x[j, 3 - i]
    assert torch.equal(groups.R4.act(x, 2), x.flip(0).flip(1))


@given(width=st.sampled_from([3, 6, 9, 36]), k=st.integers(0, 2))
def test_t3_shifts_right_by_thirds(width, k):
    x = torch.arange(2 * width, dtype=torch.float32).view(2, width)
    y = groups.T3.act(x, k)
    shift = k * width // 3
    for j in range(width):
        assert y[0, j] == x[0, (j - shift) % width]


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_actions_permute_pixels_and_keep_dtype(group, dtype):
    x = image_batch(group, 3, dtype=dtype)
    for k in group.elements():
        y = group.act(x, k)
        assert y.dtype == dtype and y.shape == x.shape
        assert torch.equal(y.flatten(-2).sort(dim=-1).values, x.flatten(-2).sort(dim=-1).values)


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
@given(seed=st.integers(0, 2**16))
def test_per_sample_elements_match_one_by_one(group, seed):
    x = image_batch(group, seed, batch=7)
    gen = torch.Generator().manual_seed(seed)
    elements = torch.randint(0, group.order, (7,), generator=gen)
    y = group.act(x, elements)
    for i in range(7):
        assert torch.equal(y[i], group.act(x[i], int(elements[i])))
    assert torch.equal(group.act(y, group.inverse(elements)), x)


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_orbit(group):
    x = image_batch(group, 5)
    orbit = group.orbit(x)
    assert orbit.shape == (group.order, *x.shape)
    assert torch.equal(orbit[0], x)
    for g in group.elements():
        moved = group.orbit(group.act(x, g))
        for k in group.elements():
            # the orbit of g x is the orbit of x, reordered: k (g x) = (k∘g) x
            assert torch.equal(moved[k], orbit[group.compose(k, g)])


def test_bad_inputs():
    with pytest.raises(ValueError, match="square"):
        groups.R4.act(torch.zeros(1, 4, 5), 1)
    with pytest.raises(ValueError, match="divisible by 3"):
        groups.T3.act(torch.zeros(1, 28, 28), 1)
    with pytest.raises(ValueError, match="element"):
        groups.R4.act(torch.zeros(4, 4), 4)
    with pytest.raises(ValueError, match="element"):
        groups.T3.act(torch.zeros(3, 3), -1)
    with pytest.raises(TypeError, match="integer"):
        groups.R4.act(torch.zeros(2, 1, 4, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="one per image"):
        groups.R4.act(torch.zeros(2, 1, 4, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        groups.R4.act(torch.zeros(2, 1, 4, 4), torch.tensor([0, 4]))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        groups.R4.act([[0.0]], 0)
    with pytest.raises(ValueError, match="H, W"):
        groups.T3.orbit(torch.zeros(3))


def test_registry():
    assert groups.names() == ["R4", "T3"]
    assert groups.get("R4") is groups.R4 and groups.get(groups.T3) is groups.T3
    with pytest.raises(ValueError, match="R4, T3"):
        groups.get("SO2")

"""invfast.neurons.invariance: the two-pass analysis through hooks, streaming Goodfellow."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from helpers import activations
from invfast import kernels as ops
from invfast.neurons.invariance import GoodfellowStreaming, InvarianceAccumulator


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(12, 30), nn.ReLU(), nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 3)
    )


def convnet() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.ReLU())


def make_batches(shape, count, seed, groups=2):
    """Uneven batches of (x, T(x), group ids); T is a fixed perturbation of x."""
    g = torch.Generator().manual_seed(seed)
    sizes = [int(s) for s in torch.randint(1, 9, (count,), generator=g)]
    batches = []
    for size in sizes:
        x = torch.randn(size, *shape, generator=g)
        tx = x.flip(-1) + 0.3 * torch.randn(size, *shape, generator=g)
        batches.append((x, tx, torch.randint(0, groups, (size,), generator=g)))
    return batches


def direct(model, layer, batches, neurons="unit", groups=2):
    """The same statistics from every activation held at once (reference backend)."""
    captured = []
    module = model.get_submodule(layer)
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    with torch.no_grad():
        for x, tx, _ in batches:
            model(x)
            model(tx)
    handle.remove()
    a, b = torch.cat(captured[0::2]), torch.cat(captured[1::2])
    ids = torch.cat([g for _, _, g in batches])
    acc = ops.invariance_accumulator(groups, ops.num_neurons(a.shape, neurons))
    ops.neuron_max(a, acc["neuron_max"], b, neurons=neurons, backend="reference")
    ops.invariance_update(a, b, acc["neuron_max"], ids, acc, neurons=neurons, backend="reference")
    return acc, ops.invariance_finalize(acc)


@pytest.mark.parametrize(
    ("build", "shape", "layers", "neurons"),
    [
        (mlp, (12,), ["1", "3"], "unit"),
        (convnet, (2, 9, 9), ["1", "3"], "unit"),
        (convnet, (2, 9, 9), ["1", "3"], "channel-max"),
        (convnet, (2, 9, 9), ["3"], "channel-mean"),
    ],
)
def test_hooked_run_equals_direct_computation(build, shape, layers, neurons):
    model = build()
    batches = make_batches(shape, 9, seed=3)
    analysis = InvarianceAccumulator(model, layers, groups=2, neurons=neurons, image_active=True)
    results = analysis.run(batches)
    assert list(results) == layers
    images = sum(x.shape[0] for x, _, _ in batches)
    for layer in layers:
        acc, expected = direct(model, layer, batches, neurons)
        got = results[layer]
        assert torch.equal(got.neuron_max, acc["neuron_max"])
        assert torch.equal(got.active, expected["active"])
        assert torch.equal(got.silent, expected["silent"])
        torch.testing.assert_close(got.I, expected["I"], equal_nan=True, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(got.S, expected["S"], equal_nan=True, rtol=1e-9, atol=1e-12)
        assert int(got.pairs.sum()) == images
        assert got.image_active.shape == (images, 21)
        # Σ_x n(x, τ) = Σ_k #A_k(τ) summed over groups.
        assert torch.equal(got.image_active.sum(0), got.active.sum(dim=(0, 2)))
        assert got.mean_invariance().shape == (2, 21)
    assert model.training  # the mode is restored


def test_backends_agree():
    model = mlp()
    batches = make_batches((12,), 6, seed=5, groups=3)
    runs = {
        backend: InvarianceAccumulator(model, ["1", "3"], groups=3, backend=backend).run(batches)
        for backend in ("reference", "cpu")
    }
    for layer in ("1", "3"):
        ref, cpu = runs["reference"][layer], runs["cpu"][layer]
        assert torch.equal(cpu.active, ref.active)
        torch.testing.assert_close(cpu.I, ref.I, equal_nan=True, rtol=1e-9, atol=0)
        torch.testing.assert_close(cpu.S, ref.S, equal_nan=True, rtol=1e-9, atol=1e-12)


def test_negative_activations_name_the_layer():
    model = mlp()
    batches = make_batches((12,), 2, seed=6)
    with pytest.raises(ValueError, match=r"layer '2': neuron_max: .*non-negative.*activation="):
        InvarianceAccumulator(model, ["1", "2"], groups=2).run(batches)
    for activation in ("relu", "abs"):
        results = InvarianceAccumulator(model, ["2"], groups=2, activation=activation).run(batches)
        assert results["2"].active.shape == (2, 21, 16)


def test_shards_reduced_like_all_reduce_equal_one_run():
    model = mlp()
    batches = make_batches((12,), 10, seed=7)
    whole = InvarianceAccumulator(model, ["1", "3"], groups=2).run(batches)
    shards = [InvarianceAccumulator(model, ["1", "3"], groups=2) for _ in range(2)]
    halves = [batches[:4], batches[4:]]

    def all_reduce(op_name):  # in-place reduction across the two shards' tensors
        def reduce(pass_index):
            states = [shard.state() for shard in shards]
            for layer in states[0]:
                keys = ["neuron_max"] if pass_index == 1 else ["count", "h_sum", "s_sum"]
                for key in keys:
                    tensors = [state[layer][key] for state in states]
                    combined = tensors[0].clone()
                    for t in tensors[1:]:
                        combined = torch.maximum(combined, t) if op_name == "max" else combined + t
                    for t in tensors:
                        t.copy_(combined)

        return reduce

    for shard, half in zip(shards, halves, strict=True):
        for x, tx, _ in half:
            shard.observe_max(x, tx)
    seen = []
    shards[0].reduce_pass1(lambda t, op: seen.append(op))
    assert seen == ["max", "max"]
    all_reduce("max")(1)
    for shard, half in zip(shards, halves, strict=True):
        for x, tx, g in half:
            shard.observe_pairs(x, tx, g)
    all_reduce("sum")(2)
    merged = shards[0].results()
    for layer in ("1", "3"):
        assert torch.equal(merged[layer].active, whole[layer].active)
        torch.testing.assert_close(
            merged[layer].I, whole[layer].I, equal_nan=True, rtol=1e-12, atol=0
        )


@pytest.mark.parametrize("budget", [1 << 30, 3000])
def test_cached_activations_give_the_same_bits_and_skip_the_second_iteration(budget):
    """With a budget that holds pass 1's activations, pass 2 reads them (the batches are
    iterated once); with one that does not, the cache gives up and pass 2 recomputes them.
    Either way every accumulator is bitwise the one of a run without a cache."""
    batches = make_batches((2, 9, 9), 7, seed=11)
    iterations = []

    def source():
        iterations.append(1)
        return iter(batches)

    def analysed(cache_budget):
        analysis = InvarianceAccumulator(convnet(), ["1", "3"], groups=2)
        analysis.run(source, cache_budget=cache_budget)
        return analysis.state()

    plain = analysed(0)
    assert len(iterations) == 2
    iterations.clear()
    cached = analysed(budget)
    assert len(iterations) == (1 if budget > 1 << 20 else 2)
    for name, acc in plain.items():
        for key in ("neuron_max", "count", "h_sum", "s_sum"):
            assert torch.equal(acc[key], cached[name][key]), (name, key)


def test_state_does_not_grow_with_images():
    model = convnet()

    def state_bytes(batches):
        analysis = InvarianceAccumulator(model, ["1", "3"], groups=2, neurons="channel-max")
        analysis.run(lambda: iter(batches))  # a callable giving a fresh iterator per pass
        return sum(
            t.numel() * t.element_size() for acc in analysis.state().values() for t in acc.values()
        )

    assert state_bytes(make_batches((2, 9, 9), 2, 8)) == state_bytes(make_batches((2, 9, 9), 30, 9))


def test_bad_arguments():
    model = mlp()
    with pytest.raises(ValueError, match="not a submodule"):
        InvarianceAccumulator(model, ["9"], groups=2)
    with pytest.raises(ValueError, match="non-empty"):
        InvarianceAccumulator(model, [], groups=2)
    with pytest.raises(ValueError, match="neurons must be"):
        InvarianceAccumulator(model, ["1"], groups=2, neurons="pixels")
    with pytest.raises(ValueError, match="activation must be"):
        InvarianceAccumulator(model, ["1"], groups=2, activation="gelu")
    with pytest.raises(ValueError, match="groups must be"):
        InvarianceAccumulator(model, ["1"], groups=0)
    with pytest.raises(ValueError, match="empty"):
        InvarianceAccumulator(model, ["1"], groups=2).run([])
    with pytest.raises(ValueError, match="tuple"):
        InvarianceAccumulator(model, ["1"], groups=2).run([torch.zeros(2, 12)])
    with pytest.raises(ValueError, match="pass 1"):
        InvarianceAccumulator(model, ["1"], groups=2).observe_pairs(
            torch.zeros(2, 12), torch.zeros(2, 12), torch.zeros(2, dtype=torch.int64)
        )
    batches = make_batches((12,), 2, seed=1)
    with pytest.raises(ValueError, match=r"layer '1': invariance_update: group_ids"):
        InvarianceAccumulator(model, ["1"], groups=1).run(batches)


@pytest.mark.parametrize("resolution", [16, 1024])
def test_goodfellow_streaming_is_within_its_error_bound(resolution):
    a = activations((400, 30), torch.float32, 2)
    b = activations((400, 30), torch.float32, 3)
    m = torch.zeros(30)
    ops.neuron_max(a, m)  # thresholds come from the untransformed images
    stream = GoodfellowStreaming(torch.maximum(m, torch.zeros(30)), resolution=resolution)
    for r0 in range(0, 400, 64):
        stream.update(a[r0 : r0 + 64], b[r0 : r0 + 64])
    got = stream.finalize()
    exact = ops.goodfellow_invariance(a, b)
    for i, p in enumerate(ops.GOODFELLOW_PERCENTS):
        top = math.ceil(p / 100 * 400)
        assert bool((got["firing"][i] <= top).all())
        missed = exact["firing"][i] - got["firing"][i]
        assert bool(((missed >= 0) & (missed <= got["firing_error"][i])).all())
        missed = exact["still_firing"][i] - got["still_firing"][i]
        assert bool(((missed >= 0) & (missed <= got["still_firing_error"][i])).all())
    if resolution == 1024:  # a fine grid is close to exact on these activities
        assert float(got["firing_error"].float().mean()) < 2.0

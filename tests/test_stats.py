"""invfast.ops.stats against invfast.reference.stats (DESIGN.md §2)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import ACTIVATION_DTYPES, activations, dtypes, layouts, maybe_strided
from invfast import kernels as ops
from invfast.kernels import reference

CPU_BACKENDS = ["reference", "cpu"]


def run_neuron_max(a, b, backend, device="cpu"):
    out = torch.zeros(
        a[0].numel() if a.shape[0] else int(torch.Size(a.shape[1:]).numel()), device=device
    )
    return ops.neuron_max(a.to(device), out, None if b is None else b.to(device), backend=backend)


# --------------------------------------------------------------------------- neuron_max
@settings(max_examples=50)
@given(
    batch=st.integers(0, 64),
    neuron_shape=st.sampled_from([(1,), (7,), (300,), (4097,), (3, 5, 5), (2, 1, 9)]),
    dtype=dtypes,
    layout=layouts,
    with_b=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_neuron_max_cpu_equals_reference(batch, neuron_shape, dtype, layout, with_b, seed):
    shape = (batch, *neuron_shape)
    a = maybe_strided(activations(shape, dtype, seed), layout)
    b = activations(shape, dtype, seed + 1) if with_b else None
    expected = run_neuron_max(a, b, "reference")
    got = run_neuron_max(a, b, "cpu")
    assert torch.equal(got, expected)


def test_neuron_max_known_values_and_accumulates():
    a = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.5, 2.0]])
    b = torch.tensor([[0.0, 4.0, 1.0], [1.0, 0.0, 0.0]])
    for backend in CPU_BACKENDS:
        out = torch.tensor([0.0, 0.0, 5.0])
        ops.neuron_max(a, out, b, backend=backend)
        assert out.tolist() == [3.0, 4.0, 5.0]
        ops.neuron_max(a * 2, out, backend=backend)
        assert out.tolist() == [6.0, 4.0, 5.0]


def test_neuron_max_default_backend_is_cpu_kernel():
    from invfast.kernels import backends

    assert backends.default_backend("cpu") == "cpu"


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), -1.0])
@pytest.mark.parametrize("where", ["a", "b"])
def test_neuron_max_rejects_bad_values_and_keeps_out(backend, bad, where):
    a, b = torch.rand(5, 40), torch.rand(5, 40)
    (a if where == "a" else b)[2, 17] = bad
    out = torch.full((40,), 0.25)
    expected = "NaN or Inf" if bad != -1.0 else "non-negative"
    with pytest.raises(ValueError, match=expected):
        ops.neuron_max(a, out, b, backend=backend)
    assert torch.equal(out, torch.full((40,), 0.25))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("bad", [float("nan"), -0.5])
def test_neuron_max_finds_a_bad_value_in_any_column_block(dtype, bad):
    """K spans several column blocks of the CPU kernel; the bad value sits in the last."""
    a = torch.rand(7, 5000).to(dtype)
    a[6, 4999] = bad
    out = torch.zeros(5000)
    with pytest.raises(ValueError, match="NaN or Inf" if bad != bad else "non-negative"):
        ops.neuron_max(a, out, backend="cpu")
    assert torch.equal(out, torch.zeros(5000))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"a": [[1.0]]}, TypeError, "a must be a torch.Tensor"),
        ({"a": torch.ones(4, 3, dtype=torch.float64)}, TypeError, "a must have dtype"),
        ({"a": torch.ones(4, dtype=torch.float32)}, ValueError, r"a must be \[B, K\]"),
        ({"out": torch.zeros(5)}, ValueError, "out must have 3 elements"),
        ({"out": torch.zeros(3, dtype=torch.float64)}, TypeError, "out must have dtype float32"),
        ({"out": torch.zeros(6)[::2]}, ValueError, "out must be contiguous"),
        ({"b": torch.ones(4, 4)}, ValueError, "b has shape"),
        ({"b": torch.ones(4, 3, dtype=torch.float16)}, ValueError, "b has dtype"),
        ({"backend": "gpu"}, ValueError, "backend must be one of"),
        ({"backend": "cuda"}, ValueError, "backend 'cuda' needs CUDA tensors"),
    ],
)
def test_neuron_max_bad_arguments(kwargs, error, match):
    args = {"a": torch.ones(4, 3), "out": torch.zeros(3), "b": None, "backend": None}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.neuron_max(args["a"], args["out"], args["b"], backend=args["backend"])


def test_neuron_max_indexes_beyond_int32():
    # rows * cols > 2**31 elements: the last row sits past any 32-bit index. torch.zeros
    # maps untouched pages lazily, so this reads 4 GiB without using 4 GiB of memory.
    cols = 65536
    rows = 2**31 // cols + 2
    a = torch.zeros(rows, cols, dtype=torch.float16)
    a[-1, -3:] = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float16)
    out = torch.zeros(cols)
    ops.neuron_max(a, out, backend="cpu")
    assert out[-3:].tolist() == [1.0, 2.0, 3.0]
    assert int(torch.count_nonzero(out)) == 3


def test_reference_is_independent_of_kernels():
    # The oracle must not route through the compiled module.
    a = activations((9, 33), torch.float32, 3)
    out = torch.zeros(33)
    assert reference.neuron_max(a, out) == 0
    assert torch.equal(out, a.amax(0))


# --------------------------------------------------------------- neuron_max, channel modes
NEURON_MODES = ["unit", "channel-max", "channel-mean"]


@settings(max_examples=40)
@given(
    batch=st.integers(1, 40),
    shape=st.sampled_from([(1, 1, 1), (3, 5, 5), (7, 2, 9), (2, 33)]),
    neurons=st.sampled_from(NEURON_MODES),
    dtype=dtypes,
    with_b=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_neuron_max_channel_modes_cpu_equals_reference(batch, shape, neurons, dtype, with_b, seed):
    a = activations((batch, *shape), dtype, seed)
    b = activations((batch, *shape), dtype, seed + 1) if with_b else None
    k = ops.num_neurons(a.shape, neurons)
    outs = []
    for backend in CPU_BACKENDS:
        out = torch.zeros(k)
        outs.append(ops.neuron_max(a, out, b, neurons=neurons, backend=backend))
    assert torch.equal(outs[0], outs[1])


def test_neuron_max_channel_values_by_hand():
    a = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]], [[5.0, 5.0], [5.0, 1.0]]]])  # [1, 2, 2, 2]
    for backend in CPU_BACKENDS:
        out = torch.zeros(2)
        ops.neuron_max(a, out, neurons="channel-max", backend=backend)
        assert out.tolist() == [3.0, 5.0]
        out = torch.zeros(2)
        ops.neuron_max(a, out, neurons="channel-mean", backend=backend)
        assert out.tolist() == [1.5, 4.0]


# ------------------------------------------------------------------- pass 2: helpers
def plant_ties(a, b, neuron_max, taus, seed):
    """Set some activations to exactly τ_i·M_k (float32 product), where the dtype holds it."""
    g = torch.Generator().manual_seed(seed)
    flat_a, flat_b = a.view(a.shape[0], -1), b.view(b.shape[0], -1)
    thresholds = taus[None, :] * neuron_max[:, None]  # [K, T] float32
    for flat in (flat_a, flat_b):
        mask = torch.rand(flat.shape, generator=g) < 0.3
        pick = torch.randint(0, taus.numel(), flat.shape, generator=g)
        tie = thresholds[torch.arange(flat.shape[1])[None, :].expand_as(pick), pick]
        flat[mask] = tie[mask].to(flat.dtype)


def run_update(a, b, neuron_max, group_ids, groups, taus, backend, neurons="unit", images=True):
    k = ops.num_neurons(a.shape, neurons)
    acc = ops.invariance_accumulator(groups, k, taus)
    counts = torch.zeros(a.shape[0], len(acc["taus"]), dtype=torch.int64) if images else None
    ops.invariance_update(
        a, b, neuron_max, group_ids, acc, neurons=neurons, active_counts=counts, backend=backend
    )
    return acc, counts


def assert_accumulators_agree(got, expected):
    """Counts exactly; sums within 1e-9 of the sum of |term| (each |h|, |s| <= 1)."""
    assert torch.equal(got["count"], expected["count"])
    scale = 1e-9 * expected["count"].clamp(min=1).double()
    assert bool(((got["h_sum"] - expected["h_sum"]).abs() <= scale).all())
    assert bool(((got["s_sum"] - expected["s_sum"]).abs() <= scale).all())


TAU_GRIDS = {
    "paper": ops.DEFAULT_TAUS,
    "dyadic": tuple(i / 16 for i in range(17)),  # τ·M exact in float16 when M is a power of 2
    "single": (0.0,),
    "uneven": (0.0, 0.013, 0.3, 0.3, 0.31, 0.9999),
}


@st.composite
def update_cases(draw):
    k = draw(st.sampled_from([1, 2, 7, 64, 65, 129, 1000, 4097, 30000, 100000]))
    batch = draw(st.integers(1, min(512, max(1, 300_000 // k))))
    return {
        "k": k,
        "batch": batch,
        "groups": draw(st.integers(1, 4)),
        "dtype": draw(dtypes),
        "grid": draw(st.sampled_from(sorted(TAU_GRIDS))),
        "seed": draw(st.integers(0, 2**16)),
        "silent": draw(st.booleans()),
    }


def make_case(case):
    shape = (case["batch"], case["k"])
    a = activations(shape, case["dtype"], case["seed"])
    b = activations(shape, case["dtype"], case["seed"] + 7)
    a[0, 0] = 4.0  # M_0 = 4, a power of 2: dyadic ties are exact in every dtype
    if case["silent"]:
        a[:, ::3] = 0
        b[:, ::3] = 0
    taus = torch.tensor(TAU_GRIDS[case["grid"]], dtype=torch.float32)
    m = torch.zeros(case["k"])
    ops.neuron_max(a, m, b, backend="reference")
    plant_ties(a, b, m, taus, case["seed"])
    m = torch.zeros(case["k"])
    ops.neuron_max(a, m, b, backend="reference")
    g = torch.Generator().manual_seed(case["seed"])
    group_ids = torch.randint(0, case["groups"], (case["batch"],), generator=g)
    return a, b, m, group_ids, taus


# ------------------------------------------------------------ pass 2: cpu vs reference
@settings(max_examples=50)
@given(case=update_cases())
def test_invariance_update_cpu_equals_reference(case):
    a, b, m, group_ids, taus = make_case(case)
    ref, ref_counts = run_update(a, b, m, group_ids, case["groups"], taus, "reference")
    got, got_counts = run_update(a, b, m, group_ids, case["groups"], taus, "cpu")
    assert_accumulators_agree(got, ref)
    assert torch.equal(got_counts, ref_counts)
    # Every pair lands in exactly one bin.
    assert int(got["count"].sum()) == case["batch"] * case["k"]


def test_ties_at_threshold_are_not_active():
    # M = 4 and τ = 0.5: a pair whose max is exactly τ·M = 2 sits in bin 1 (only τ = 0 below).
    taus = torch.tensor([0.0, 0.5, 1.0])
    a = torch.tensor([[2.0], [4.0], [0.0]])
    b = torch.tensor([[1.0], [0.0], [0.0]])
    m = torch.tensor([4.0])
    for backend in CPU_BACKENDS:
        acc, counts = run_update(a, b, m, torch.zeros(3, dtype=torch.int64), 1, taus, backend)
        assert acc["count"][0, 0].tolist() == [1, 1, 1, 0]  # zeros → 0, tie → 1, max → 2
        assert counts.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]


@pytest.mark.parametrize("neurons", ["channel-max", "channel-mean"])
@pytest.mark.parametrize("dtype", ACTIVATION_DTYPES)
def test_invariance_update_channel_modes_cpu_equals_reference(neurons, dtype):
    shape = (45, 6, 5, 7)
    a, b = activations(shape, dtype, 11), activations(shape, dtype, 12)
    a[:, 2] = 0
    b[:, 2] = 0
    m = torch.zeros(6)
    ops.neuron_max(a, m, b, neurons=neurons)
    group_ids = torch.arange(45) % 3
    taus = torch.tensor(ops.DEFAULT_TAUS)
    ref, ref_counts = run_update(a, b, m, group_ids, 3, taus, "reference", neurons)
    got, got_counts = run_update(a, b, m, group_ids, 3, taus, "cpu", neurons)
    assert_accumulators_agree(got, ref)
    assert torch.equal(got_counts, ref_counts)
    assert int(got["count"][:, 2, 1:].sum()) == 0  # the silent channel never leaves bin 0


def test_invariance_update_cpu_is_independent_of_thread_count():
    a, b = activations((70, 3000), torch.float32, 1), activations((70, 3000), torch.float32, 2)
    m = torch.zeros(3000)
    ops.neuron_max(a, m, b)
    group_ids = torch.arange(70) % 2
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(run_update(a, b, m, group_ids, 2, ops.DEFAULT_TAUS, "cpu"))
    finally:
        torch.set_num_threads(threads)
    for acc, counts in results[1:]:
        for key in ("count", "h_sum", "s_sum"):
            assert torch.equal(acc[key], results[0][0][key])
        assert torch.equal(counts, results[0][1])


# --------------------------------------------------------------- hand-worked example
def test_hand_worked_invariance_coefficients():
    # Three images, two neurons; P1 §2.2: f = â / M, A_k(τ) = {x : f(x) > τ or f(Tx) > τ},
    # h = 1 − |f(Tx) − f(x)| / (f(Tx) + f(x)), I_k = mean of h over A_k.
    a = torch.tensor([[2.0, 0.0], [1.0, 3.0], [0.0, 0.0]])  # â(x)
    b = torch.tensor([[2.0, 1.0], [3.0, 1.0], [4.0, 0.0]])  # â(T(x))
    taus = (0.0, 0.5, 1.0)
    # Neuron 0: M = 4. f pairs (.5,.5), (.25,.75), (0, 1); h = 1, 1/2, 0; s = 0, 1/2, 1.
    #   τ = 0: A = {x1, x2, x3}: I = (1 + 1/2 + 0)/3 = 1/2, S = (0 + 1/2 + 1)/3 = 1/2.
    #   τ = 0.5: x1's max f is exactly 0.5, not > 0.5: A = {x2, x3}: I = 1/4, S = 3/4.
    # Neuron 1: M = 3. f pairs (0, 1/3), (1, 1/3), (0, 0); h = 0, 1/2, (1); s = 1, −1/2, (0).
    #   τ = 0: x3 never fires: A = {x1, x2}: I = 1/4, S = 1/4.  τ = 0.5: A = {x2}: I = 1/2,
    #   S = −1/2.  τ = 1: both A are empty (f > 1 is impossible): NaN, 2 silent neurons.
    expected_i = [[0.5, 0.25], [0.25, 0.5], [math.nan, math.nan]]
    expected_s = [[0.5, 0.25], [0.75, -0.5], [math.nan, math.nan]]
    for backend in CPU_BACKENDS:
        acc = ops.invariance_accumulator(1, 2, taus)
        ops.neuron_max(a, acc["neuron_max"], b, backend=backend)
        assert acc["neuron_max"].tolist() == [4.0, 3.0]
        counts = torch.zeros(3, 3, dtype=torch.int64)
        ops.invariance_update(
            a,
            b,
            acc["neuron_max"],
            torch.zeros(3, dtype=torch.int64),
            acc,
            active_counts=counts,
            backend=backend,
        )
        result = ops.invariance_finalize(acc)
        torch.testing.assert_close(
            result["I"][0], torch.tensor(expected_i, dtype=torch.float64), equal_nan=True
        )
        torch.testing.assert_close(
            result["S"][0], torch.tensor(expected_s, dtype=torch.float64), equal_nan=True
        )
        assert result["active"][0].tolist() == [[3, 2], [2, 1], [0, 0]]
        assert result["silent"][0].tolist() == [0, 0, 2]
        assert result["pairs"].tolist() == [3]
        # n(x, τ): neurons active per image.
        assert counts.tolist() == [[2, 0, 0], [2, 2, 0], [1, 1, 0]]
        # Ablation at τ = 0.5 (thresholds 2 and 1.5): only x2's neuron 1 is active.
        kept = ops.ablate(a, acc["neuron_max"], 0.5, "inactive", backend=backend)
        assert kept.tolist() == [[0.0, 0.0], [0.0, 3.0], [0.0, 0.0]]
        dropped = ops.ablate(a, acc["neuron_max"], 0.5, "active", backend=backend)
        assert dropped.tolist() == [[2.0, 0.0], [1.0, 0.0], [0.0, 0.0]]


def test_finalize_matches_the_definition():
    # I_k(τ) computed straight from P1's definition, τ by τ, against the binned suffix sums.
    a, b = activations((90, 50), torch.float32, 5), activations((90, 50), torch.float32, 6)
    group_ids = torch.arange(90) % 2
    acc = ops.invariance_accumulator(2, 50)
    ops.neuron_max(a, acc["neuron_max"], b)
    ops.invariance_update(a, b, acc["neuron_max"], group_ids, acc)
    result = ops.invariance_finalize(acc)
    m = acc["neuron_max"]
    total = a + b
    h = torch.where(total > 0, 1 - (b - a).abs() / total, torch.ones_like(total)).double()
    s = torch.where(total > 0, (b - a) / total, torch.zeros_like(total)).double()
    for g in range(2):
        rows = group_ids == g
        for i, tau in enumerate(ops.DEFAULT_TAUS):
            inside = (torch.maximum(a, b) > torch.tensor(tau) * m)[rows]  # [n, K]
            n = inside.sum(0)
            assert torch.equal(result["active"][g, i], n)
            mean_h = (h[rows] * inside).sum(0) / n
            mean_s = (s[rows] * inside).sum(0) / n
            torch.testing.assert_close(
                result["I"][g, i], mean_h, equal_nan=True, rtol=1e-12, atol=0
            )
            torch.testing.assert_close(
                result["S"][g, i], mean_s, equal_nan=True, rtol=1e-9, atol=1e-12
            )
            assert int(result["silent"][g, i]) == int((n == 0).sum())


# ----------------------------------------------------------------- streaming and merging
def uneven_batches(rows, pieces, seed):
    g = torch.Generator().manual_seed(seed)
    cuts = torch.randperm(rows - 1, generator=g)[: pieces - 1] + 1
    edges = [0, *sorted(cuts.tolist()), rows]
    return list(itertools.pairwise(edges))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("neurons", ["unit", "channel-mean"])
def test_streaming_one_batch_equals_37_uneven_batches(backend, neurons):
    shape = (400, 4, 3, 5)
    a, b = activations(shape, torch.bfloat16, 21), activations(shape, torch.bfloat16, 22)
    group_ids = torch.randint(0, 3, (400,), generator=torch.Generator().manual_seed(3))
    k = ops.num_neurons(shape, neurons)

    def stream(spans):
        acc = ops.invariance_accumulator(3, k)
        for r0, r1 in spans:
            ops.neuron_max(a[r0:r1], acc["neuron_max"], b[r0:r1], neurons=neurons, backend=backend)
        counts = torch.zeros(400, 21, dtype=torch.int64)
        for r0, r1 in spans:
            ops.invariance_update(
                a[r0:r1],
                b[r0:r1],
                acc["neuron_max"],
                group_ids[r0:r1],
                acc,
                neurons=neurons,
                active_counts=counts[r0:r1],
                backend=backend,
            )
        return acc, counts

    spans = uneven_batches(400, 37, 4)
    assert len(spans) == 37 and len({r1 - r0 for r0, r1 in spans}) > 5
    whole, whole_counts = stream([(0, 400)])
    pieces, piece_counts = stream(spans)
    assert torch.equal(pieces["neuron_max"], whole["neuron_max"])
    assert torch.equal(piece_counts, whole_counts)
    if backend == "cpu":  # each (g, k, bin) is summed in row order: bit-identical
        for key in ("count", "h_sum", "s_sum"):
            assert torch.equal(pieces[key], whole[key])
    else:
        assert_accumulators_agree(pieces, whole)


def test_merge_accumulators_of_shards_equals_one_run():
    a, b = activations((120, 40), torch.float32, 8), activations((120, 40), torch.float32, 9)
    group_ids = torch.arange(120) % 2
    shards = [(0, 50), (50, 51), (51, 120)]
    whole = ops.invariance_accumulator(2, 40)
    ops.neuron_max(a, whole["neuron_max"], b)
    ops.invariance_update(a, b, whole["neuron_max"], group_ids, whole)
    parts = [ops.invariance_accumulator(2, 40) for _ in shards]
    for part, (r0, r1) in zip(parts, shards, strict=True):
        ops.neuron_max(a[r0:r1], part["neuron_max"], b[r0:r1])
    pass1 = ops.merge_accumulators(parts)
    assert torch.equal(pass1["neuron_max"], whole["neuron_max"])
    for part, (r0, r1) in zip(parts, shards, strict=True):
        ops.invariance_update(a[r0:r1], b[r0:r1], pass1["neuron_max"], group_ids[r0:r1], part)
    merged = ops.merge_accumulators(parts)
    assert_accumulators_agree(merged, whole)
    assert parts[0]["count"].sum() == 50 * 40  # inputs are not modified


def test_merge_accumulators_rejects_mismatches():
    one = ops.invariance_accumulator(2, 5)
    with pytest.raises(ValueError, match="different shape"):
        ops.merge_accumulators([one, ops.invariance_accumulator(1, 5)])
    with pytest.raises(ValueError, match="different τ grid"):
        ops.merge_accumulators(
            [one, ops.invariance_accumulator(2, 5, (0.0, 0.01, *ops.DEFAULT_TAUS[2:]))]
        )
    with pytest.raises(ValueError, match="at least one"):
        ops.merge_accumulators([])


# ------------------------------------------------------------------- pass 2: bad input
def small_update_args():
    a, b = torch.rand(6, 10), torch.rand(6, 10)
    acc = ops.invariance_accumulator(2, 10)
    ops.neuron_max(a, acc["neuron_max"], b)
    ops.invariance_update(a, b, acc["neuron_max"], torch.arange(6) % 2, acc)  # not all zeros
    return a, b, acc


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.5])
@pytest.mark.parametrize("where", ["a", "b"])
@pytest.mark.parametrize("neurons", ["unit", "channel-max"])
def test_invariance_update_rejects_bad_values_and_keeps_acc(backend, bad, where, neurons):
    a, b = torch.rand(6, 2, 5), torch.rand(6, 2, 5)
    k = ops.num_neurons(a.shape, neurons)
    acc = ops.invariance_accumulator(2, k)
    ops.neuron_max(a, acc["neuron_max"], b, neurons=neurons)
    ops.invariance_update(a, b, acc["neuron_max"], torch.arange(6) % 2, acc, neurons=neurons)
    before = {key: t.clone() for key, t in acc.items()}
    counts = torch.full((6, 21), 7, dtype=torch.int64)
    (a if where == "a" else b)[5, 1, 4] = bad
    match = "invariance_update: activations a/b " + ("contain NaN" if bad != -0.5 else "must be")
    with pytest.raises(ValueError, match=match):
        ops.invariance_update(
            a,
            b,
            acc["neuron_max"],
            torch.arange(6) % 2,
            acc,
            neurons=neurons,
            active_counts=counts,
            backend=backend,
        )
    for key, t in acc.items():
        assert torch.equal(t, before[key]), key
    assert bool((counts == 7).all())


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda s: s.update(b=None), TypeError, "b .* is required"),
        (lambda s: s.update(b=torch.rand(6, 11)), ValueError, "b has shape"),
        (lambda s: s.update(b=torch.rand(6, 10).half()), ValueError, "b has dtype"),
        (lambda s: s.update(b=torch.rand(6, 10, device="meta")), ValueError, "b is on meta"),
        (lambda s: s.update(a=torch.rand(6, 10).double()), TypeError, "a must have dtype"),
        (lambda s: s.update(neuron_max=torch.rand(9)), ValueError, "neuron_max must have 10"),
        (lambda s: s.update(neuron_max=-torch.rand(10)), ValueError, "neuron_max must be finite"),
        (lambda s: s.update(neuron_max=torch.rand(10).double()), ValueError, "neuron_max must"),
        (lambda s: s.update(group_ids=torch.tensor([0, 1, 2, 0, 1, 0])), ValueError, r"\[0, 2\)"),
        (lambda s: s.update(group_ids=torch.tensor([0, 1, -1, 0, 1, 0])), ValueError, r"\[0, 2\)"),
        (lambda s: s.update(group_ids=torch.zeros(6)), ValueError, "integer tensor"),
        (lambda s: s.update(group_ids=torch.zeros(5, dtype=torch.int64)), ValueError, "shape"),
        (
            lambda s: s["acc"].update(count=torch.zeros(2, 11, 22, dtype=torch.int64)),
            ValueError,
            "acc",
        ),
        (lambda s: s["acc"].update(h_sum=torch.zeros(2, 10, 22)), ValueError, "float64"),
        (lambda s: s["acc"].update(taus=torch.zeros(5)), ValueError, "taus"),
        (lambda s: s["acc"].pop("s_sum"), ValueError, "missing"),
        (lambda s: s.update(neurons="pixel"), ValueError, "neurons must be one of"),
        (
            lambda s: s.update(active_counts=torch.zeros(6, 20, dtype=torch.int64)),
            ValueError,
            "active_counts must have 126",
        ),
        (
            lambda s: s.update(active_counts=torch.zeros(6, 21, dtype=torch.int32)),
            TypeError,
            "active_counts must have dtype int64",
        ),
        (lambda s: s.update(backend="gpu"), ValueError, "backend must be one of"),
    ],
)
def test_invariance_update_bad_arguments_keep_acc(change, error, match):
    a, b, acc = small_update_args()
    before = {key: t.clone() for key, t in acc.items()}
    args = {
        "a": a,
        "b": b,
        "neuron_max": acc["neuron_max"],
        "group_ids": torch.arange(6) % 2,
        "acc": dict(acc),
        "neurons": "unit",
        "active_counts": None,
        "backend": None,
    }
    change(args)
    with pytest.raises(error, match=match):
        ops.invariance_update(
            args["a"],
            args["b"],
            args["neuron_max"],
            args["group_ids"],
            args["acc"],
            neurons=args["neurons"],
            active_counts=args["active_counts"],
            backend=args["backend"],
        )
    for key, t in acc.items():
        assert torch.equal(t, before[key]), key


def test_invariance_accumulator_checks_its_arguments():
    acc = ops.invariance_accumulator(3, 7, (0.0, 0.5))
    assert acc["count"].shape == (3, 7, 3) and acc["count"].dtype == torch.int64
    assert acc["h_sum"].dtype == acc["s_sum"].dtype == torch.float64
    assert acc["taus"].dtype == torch.float32 and acc["neuron_max"].shape == (7,)
    assert ops.invariance_accumulator(1, 1)["taus"].tolist() == [
        torch.tensor(t, dtype=torch.float32).item() for t in ops.DEFAULT_TAUS
    ]
    for kwargs, match in [
        ({"groups": 0}, "groups"),
        ({"neurons": 0}, "neurons"),
        ({"taus": (0.5, 0.1)}, "ascending"),
        ({"taus": (-0.1, 0.1)}, ">= 0"),
        ({"taus": (0.0, float("nan"))}, "finite"),
        ({"taus": ()}, "1 to 1024"),
    ]:
        args = {"groups": 2, "neurons": 3, "taus": ops.DEFAULT_TAUS, **kwargs}
        with pytest.raises(ValueError, match=match):
            ops.invariance_accumulator(args["groups"], args["neurons"], args["taus"])


def test_invariance_update_empty_batch_is_a_no_op():
    acc = ops.invariance_accumulator(1, 4)
    empty = torch.zeros(0, 4)
    ops.invariance_update(empty, empty, torch.ones(4), torch.zeros(0, dtype=torch.int64), acc)
    assert int(acc["count"].sum()) == 0


# ---------------------------------------------------------------------------- ablation
@settings(max_examples=40)
@given(
    shape=st.sampled_from([(9, 40), (5, 3, 4, 4), (1, 1), (16, 8, 1, 3)]),
    neurons=st.sampled_from(NEURON_MODES),
    mode=st.sampled_from(["inactive", "active"]),
    dtype=dtypes,
    tau=st.sampled_from([0.0, 0.05, 0.25, 0.5, 1.0]),
    in_place=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_ablate_cpu_equals_reference(shape, neurons, mode, dtype, tau, in_place, seed):
    acts = activations(shape, dtype, seed)
    m = torch.zeros(ops.num_neurons(shape, neurons))
    ops.neuron_max(acts, m, neurons=neurons)
    if neurons == "unit":  # activities exactly at τ·M_k: not active (strict >)
        flat = acts.view(shape[0], -1)
        plant_ties(flat, flat.clone(), m, torch.tensor([tau]), seed)
    expected = ops.ablate(acts, m, tau, mode, neurons=neurons, backend="reference")
    if in_place:
        got = acts.clone()
        ops.ablate(got, m, tau, mode, got, neurons=neurons, backend="cpu")
    else:
        got = ops.ablate(acts, m, tau, mode, neurons=neurons, backend="cpu")
    assert torch.equal(got, expected)
    both = ops.ablate(acts, m, tau, "inactive", neurons=neurons) + ops.ablate(
        acts, m, tau, "active", neurons=neurons
    )
    assert torch.equal(both, acts)  # every element is kept by exactly one of the two modes


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_ablate_rejects_bad_input_and_keeps_out(backend):
    acts = torch.rand(4, 6)
    acts[2, 3] = float("nan")
    out = torch.full((4, 6), 3.0)
    with pytest.raises(ValueError, match="ablate: activations acts contain NaN"):
        ops.ablate(acts, torch.ones(6), 0.1, out=out, backend=backend)
    assert bool((out == 3.0).all())
    with pytest.raises(ValueError, match="mode must be"):
        ops.ablate(torch.rand(4, 6), torch.ones(6), 0.1, "all")
    with pytest.raises(ValueError, match="out has shape"):
        ops.ablate(torch.rand(4, 6), torch.ones(6), 0.1, out=torch.zeros(4, 5))
    with pytest.raises(ValueError, match="neuron_max must have 6"):
        ops.ablate(torch.rand(4, 6), torch.ones(5), 0.1)


# --------------------------------------------------------------------- Goodfellow 2009
@settings(max_examples=40)
@given(
    images=st.integers(3, 300),
    k=st.integers(1, 50),
    dtype=dtypes,
    seed=st.integers(0, 2**16),
)
def test_goodfellow_equals_sorting_reference(images, k, dtype, seed):
    a, b = activations((images, k), dtype, seed), activations((images, k), dtype, seed + 1)
    percents = [p for p in ops.GOODFELLOW_PERCENTS if math.ceil(p / 100 * images) < images]
    got = ops.goodfellow_invariance(a, b, percents)
    for i, p in enumerate(percents):
        expected = reference.goodfellow_invariance(a, b, p)
        for key in ("threshold", "firing", "still_firing"):
            assert torch.equal(got[key][i], expected[key]), key
        torch.testing.assert_close(got["invariance"][i], expected["invariance"], equal_nan=True)
        assert bool((got["firing"][i] <= math.ceil(p / 100 * images)).all())


def test_goodfellow_by_hand():
    # 10 images; top 20% = 2 images; threshold = 3rd largest activity.
    a = torch.tensor([[9.0], [8.0], [7.0], [1.0], [1.0], [0.0], [0.0], [2.0], [3.0], [0.0]])
    b = torch.tensor([[9.5], [1.0], [0.0], [9.0], [9.0], [0.0], [0.0], [0.0], [0.0], [0.0]])
    got = ops.goodfellow_invariance(a, b, [20.0])
    assert got["threshold"].tolist() == [[7.0]]
    assert got["firing"].tolist() == [[2]]  # images 0 and 1
    assert got["still_firing"].tolist() == [[1]]  # only image 0 stays above 7 after T
    assert got["invariance"].tolist() == [[0.5]]
    with pytest.raises(ValueError, match="every image"):
        ops.goodfellow_invariance(a, b, [95.0])


# ------------------------------------------------------------------------------ CUDA
@pytest.mark.requires_cuda
@given(
    batch=st.integers(0, 300),
    neuron_shape=st.sampled_from([(1,), (255,), (257,), (70000,), (3, 7, 7)]),
    dtype=dtypes,
    with_b=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_neuron_max_cuda_equals_reference(batch, neuron_shape, dtype, with_b, seed):
    shape = (batch, *neuron_shape)
    a = activations(shape, dtype, seed)
    b = activations(shape, dtype, seed + 1) if with_b else None
    expected = run_neuron_max(a, b, "reference")
    got = run_neuron_max(a, b, "cuda", device="cuda")
    assert torch.equal(got.cpu(), expected)


@pytest.mark.requires_cuda
def test_neuron_max_cuda_rejects_nan_and_keeps_out():
    a = torch.rand(5, 40, device="cuda")
    a[1, 1] = float("nan")
    out = torch.full((40,), 0.5, device="cuda")
    with pytest.raises(ValueError, match="NaN or Inf"):
        ops.neuron_max(a, out, backend="cuda")
    assert torch.equal(out.cpu(), torch.full((40,), 0.5))


@pytest.mark.requires_cuda
@settings(max_examples=30)
@given(case=update_cases(), neurons=st.sampled_from(NEURON_MODES))
def test_invariance_update_cuda_equals_cpu_bit_for_bit(case, neurons):
    a, b, m, group_ids, taus = make_case(case)
    if neurons != "unit":
        a, b = a.reshape(a.shape[0], 1, -1), b.reshape(b.shape[0], 1, -1)
        m = torch.zeros(1)
        ops.neuron_max(a, m, b, neurons=neurons)
    cpu, cpu_counts = run_update(a, b, m, group_ids, case["groups"], taus, "cpu", neurons)
    k = ops.num_neurons(a.shape, neurons)
    acc = ops.invariance_accumulator(case["groups"], k, taus, device="cuda")
    counts = torch.zeros(a.shape[0], taus.numel(), dtype=torch.int64, device="cuda")
    ops.invariance_update(
        a.cuda(),
        b.cuda(),
        m.cuda(),
        group_ids.cuda(),
        acc,
        neurons=neurons,
        active_counts=counts,
        backend="cuda",
    )
    for key in ("count", "h_sum", "s_sum"):
        assert torch.equal(acc[key].cpu(), cpu[key]), key
    assert torch.equal(counts.cpu(), cpu_counts)


@pytest.mark.requires_cuda
def test_invariance_update_cuda_rejects_nan_and_keeps_acc():
    a, b = torch.rand(5, 40, device="cuda"), torch.rand(5, 40, device="cuda")
    acc = ops.invariance_accumulator(1, 40, device="cuda")
    ops.neuron_max(a, acc["neuron_max"], b)
    b[3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        ops.invariance_update(
            a,
            b,
            acc["neuron_max"],
            torch.zeros(5, dtype=torch.int64, device="cuda"),
            acc,
            backend="cuda",
        )
    assert int(acc["count"].sum()) == 0


@pytest.mark.requires_cuda
@pytest.mark.parametrize("neurons", NEURON_MODES)
@pytest.mark.parametrize("mode", ["inactive", "active"])
def test_ablate_and_neuron_max_cuda_equal_cpu(neurons, mode):
    acts = activations((33, 5, 3, 3), torch.float16, 4)
    m = torch.zeros(ops.num_neurons(acts.shape, neurons))
    ops.neuron_max(acts, m, neurons=neurons)
    m_cuda = torch.zeros_like(m, device="cuda")
    ops.neuron_max(acts.cuda(), m_cuda, neurons=neurons, backend="cuda")
    assert torch.equal(m_cuda.cpu(), m)
    expected = ops.ablate(acts, m, 0.3, mode, neurons=neurons, backend="cpu")
    got = ops.ablate(acts.cuda(), m_cuda, 0.3, mode, neurons=neurons, backend="cuda")
    assert torch.equal(got.cpu(), expected)

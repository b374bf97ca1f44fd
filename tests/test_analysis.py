"""invfast.neurons.analysis: the report's numbers against an independent numpy computation of
P1's formula, backends, batch sizes, τ selection, distributed shards."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch

from analysis_helpers import SEEN, tiny_checkpoint
from invfast.core import checkpoint, data, transforms
from invfast.neurons import analysis


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "ckpt.pt")


def run(ckpt_path, **kwargs):
    options = dict(checkpoint=str(ckpt_path), tau=0.1, device="cpu")
    options.update(kwargs)
    return analysis.analyze(analysis.AnalysisConfig(**options))


def numpy_invariance(a: np.ndarray, b: np.ndarray, groups: np.ndarray, taus, n_groups=2):
    """P1 §2.2 written directly: [G, T, K] I_k(τ), NaN where A_k(τ) is empty."""
    a = a.reshape(len(a), -1).astype(np.float32)
    b = b.reshape(len(b), -1).astype(np.float32)
    m = np.maximum(a, b).max(axis=0)  # M_k over x and T(x)
    peak = np.maximum(a, b)
    total = a.astype(np.float64) + b
    with np.errstate(invalid="ignore", divide="ignore"):
        h = np.where(total > 0, 1.0 - np.abs(b.astype(np.float64) - a) / total, 1.0)
    out = np.full((n_groups, len(taus), a.shape[1]), np.nan)
    for g in range(n_groups):
        rows = groups == g
        for i, tau in enumerate(taus):
            member = (np.float32(tau) * m < peak) & rows[:, None]  # A_k(τ), strict
            n = member.sum(axis=0)
            s = np.where(member, h, 0.0).sum(axis=0)
            out[g, i] = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    return out


def captured_activations(ckpt_path, layer: str):
    ckpt = checkpoint.load(ckpt_path)
    model = checkpoint.build_model(ckpt)
    dataset = data.load(ckpt["data"]["spec"], **ckpt["data"]["options"])
    images, labels, ids = dataset.test.images, dataset.test.labels, dataset.test.ids
    blur = transforms.get("blur", **ckpt["transform"]["params"])
    x = transforms.get("identity")(images, index=ids, standardize="per-image")
    tx = blur(images, seed=ckpt["seed"], index=ids, standardize="per-image")
    store = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: store.append(o))
    with torch.no_grad():
        model(x)
        model(tx)
    handle.remove()
    groups = np.where(np.isin(labels.numpy(), SEEN), 0, 1)
    return store[0].numpy(), store[1].numpy(), groups


@pytest.mark.parametrize("layer", ["features.relu2", "classifier.relu4"])
def test_invariance_equals_numpy_formula(ckpt_path, layer):
    result = run(ckpt_path, layers=layer, backend="cpu")
    a, b, groups = captured_activations(ckpt_path, layer)
    expected = numpy_invariance(a, b, groups, result.report["taus"])
    got = result.arrays[f"{layer}/I"]
    assert got.shape == expected.shape
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    assert np.isfinite(expected).sum() > 0  # the test compares real numbers
    np.testing.assert_allclose(got[np.isfinite(got)], expected[np.isfinite(expected)], atol=1e-6)
    # the summary at τ uses the same numbers
    tau_index = result.report["tau"]["index"]
    layer_report = result.report["layers"][0]
    for g, group in enumerate(analysis.GROUPS):
        reported = layer_report["groups"][group]["at_tau"]["mean_I"]
        assert reported == pytest.approx(np.nanmean(got[g, tau_index]), abs=1e-12)
        # h is evaluated in float32 by the kernels (docs/invariance.md), numpy in float64
        assert reported == pytest.approx(np.nanmean(expected[g, tau_index]), abs=1e-6)
        assert layer_report["groups"][group]["pairs"] == int((groups == g).sum())


def _numbers(result):
    out = {}
    for layer in result.report["layers"]:
        for group in analysis.GROUPS:
            for row in layer["groups"][group]["by_tau"]:
                key = (layer["name"], group, row["tau"])
                out[key] = (
                    row["silent"],
                    row["mean_I"],
                    row["mean_S"],
                    row["active_per_neuron"]["mean"],
                    row["active_per_image"]["mean"],
                )
    return out


def _assert_same(r1, r2, tolerance=1e-9):
    for key in ("I", "S", "active"):
        for name in r1.report["layer_order"]:
            x, y = r1.arrays[f"{name}/{key}"], r2.arrays[f"{name}/{key}"]
            if key == "active":
                assert np.array_equal(x, y), (name, key)
            else:
                assert np.array_equal(np.isnan(x), np.isnan(y))
                np.testing.assert_allclose(x[~np.isnan(x)], y[~np.isnan(y)], atol=tolerance, rtol=0)
    n1, n2 = _numbers(r1), _numbers(r2)
    assert n1.keys() == n2.keys()
    for key in n1:
        assert n1[key][0] == n2[key][0]
        for u, v in zip(n1[key][1:], n2[key][1:], strict=True):
            assert (u is None) == (v is None)
            if u is not None:
                assert u == pytest.approx(v, abs=tolerance)
    assert r1.report["accuracy"] == r2.report["accuracy"]


def test_reference_and_cpu_backends_agree(ckpt_path):
    ref = run(ckpt_path, backend="reference", tau="auto")
    cpu = run(ckpt_path, backend="cpu", tau="auto")
    assert ref.report["backend"] == "reference" and cpu.report["backend"] == "cpu"
    _assert_same(ref, cpu)
    assert ref.report["tau"]["value"] == cpu.report["tau"]["value"]


def test_batch_size_does_not_change_numbers(ckpt_path):
    small = run(ckpt_path, batch_size=7, cache_budget=0)
    large = run(ckpt_path, batch_size=256)
    # The statistics are batch-invariant (bitwise, given the same activations: see
    # test_stats.py's 37-batch test); PyTorch's float32 forward pass is not bitwise so across batch
    # shapes. Its noise is absolute, so a pair of small activations can move its h by ~1e-6:
    # the largest change of a mean seen was 1.2e-6 (oneDNN on AMD EPYC), under 1e-6 on Xeon.
    # Means within 1e-5 then; the counts are exact.
    _assert_same(small, large, tolerance=1e-5)


def test_activation_cache_changes_no_number(ckpt_path, monkeypatch):
    """--cache-budget large enough for pass 1's activations: pass 2 runs no forward pass and
    every array of the report, Goodfellow's included, is bitwise that of a run without it."""
    forwards = []
    original = analysis.InvarianceAccumulator._forward

    def counted(self, x):
        forwards.append(x.shape[0])
        return original(self, x)

    monkeypatch.setattr(analysis.InvarianceAccumulator, "_forward", counted)
    plain = run(ckpt_path, cache_budget=0, goodfellow=True)
    recomputed = len(forwards)
    forwards.clear()
    cached = run(ckpt_path, cache_budget=1 << 30, goodfellow=True)
    assert len(forwards) == recomputed // 2  # pass 1 only
    assert plain.arrays.keys() == cached.arrays.keys()
    for key, value in plain.arrays.items():
        np.testing.assert_array_equal(value, cached.arrays[key], err_msg=key)


def test_channel_neurons_and_goodfellow(ckpt_path):
    result = run(
        ckpt_path, neurons="channel-max", goodfellow=True, layers="features.relu1,classifier.relu4"
    )
    assert result.arrays["features.relu1/I"].shape[2] == 2  # width 2: two channel neurons
    rows = result.report["goodfellow"]["by_percent"]
    assert [r["percent"] for r in rows] == [0.5, 1.0, 5.0, 10.0, 20.0, 40.0]


# ------------------------------------------------------------------------ τ selection
def test_select_tau_known_answer_with_few_evaluations():
    taus = [round(0.05 * i, 2) for i in range(21)]
    # accuracy drops 0.4 points per grid step after τ = 0.3: loss ≤ 1 point up to τ = 0.4
    accuracy = [0.9 if t <= 0.3 else 0.9 - 0.004 * round((t - 0.3) / 0.05) for t in taus]
    calls = []

    def accuracy_at(i):
        calls.append(i)
        return accuracy[i]

    index, evaluated = analysis.select_tau(taus, accuracy_at, baseline=0.9)
    assert taus[index] == 0.4
    assert len(calls) == len(set(calls)) <= math.ceil(math.log2(len(taus))) + 1
    assert all(evaluated[i] == accuracy[i] for i in evaluated)
    # with the whole curve known, nothing is evaluated and the answer is the same
    index2, _ = analysis.select_tau(
        taus, lambda i: pytest.fail("evaluated"), 0.9, known=dict(enumerate(accuracy))
    )
    assert index2 == index


def test_select_tau_edges():
    taus = [0.0, 0.5, 1.0]
    assert analysis.select_tau(taus, lambda i: 0.5, baseline=0.9)[0] is None
    assert analysis.select_tau(taus, lambda i: 0.9, baseline=0.9)[0] == 2
    # exactly one point lost still qualifies
    assert analysis.select_tau(taus, lambda i: [0.9, 0.89, 0.7][i], baseline=0.9)[0] == 1


def test_tau_auto_on_constructed_model(tmp_path):
    """A model whose prediction ignores the ablation layer loses nothing: auto τ = 1."""
    path = tiny_checkpoint(tmp_path / "ckpt.pt")
    ckpt = checkpoint.load(path)
    state = dict(ckpt["state_dict"])
    state["classifier.fc5.weight"] = torch.zeros_like(state["classifier.fc5.weight"])
    state["classifier.fc5.bias"] = torch.tensor([0.0, 1.0, 0.0, 0.0])  # always class 1
    checkpoint.save(tmp_path / "const.pt", arch="convnet-small", state_dict=state,
                    num_classes=4, in_channels=3, image_size=16,
                    arch_kwargs=ckpt["arch"]["kwargs"], data=ckpt["data"],
                    transform=ckpt["transform"], seen_transformed=SEEN, seed=3)  # fmt: skip
    result = run(tmp_path / "const.pt", tau="auto", ablation=True)
    assert result.report["tau"]["value"] == 1.0
    curve = result.report["ablation"]["inactive"]["clean_accuracy"]
    assert curve == [0.25] * 21  # 4 balanced classes, always class 1


def test_parse_taus():
    assert analysis.parse_taus("0:1:0.25") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert analysis.parse_taus("0.1,0.2") == [0.1, 0.2]
    for bad in ("1:0:0.1", "0:1:0", "a,b", "0.2,0.1", "-1,0", ""):
        with pytest.raises(ValueError):
            analysis.parse_taus(bad)


# ------------------------------------------------------------------------ distributed
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank, world, port, ckpt, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    import torch.distributed as tdist

    try:
        result = analysis.analyze(
            analysis.AnalysisConfig(
                checkpoint=ckpt, tau="auto", ablation=True, batch_size=5, device="cpu"
            )
        )
        if rank == 0:
            np.savez(out, **result.arrays)
            import json

            with open(out + ".json", "w") as f:
                json.dump(_numbers_json(result), f)
    finally:
        tdist.destroy_process_group()


def _numbers_json(result):
    return {
        "accuracy": result.report["accuracy"],
        "tau": result.report["tau"]["value"],
        "ablation": result.report["ablation"],
        "images": result.report["data"]["images"],
    }


def test_two_processes_equal_one(ckpt_path, tmp_path):
    import json

    import torch.multiprocessing as mp

    out = str(tmp_path / "dist.npz")
    mp.spawn(_rank_main, args=(2, _free_port(), str(ckpt_path), out), nprocs=2, join=True)
    single = run(ckpt_path, tau="auto", ablation=True, batch_size=5)
    merged = np.load(out)
    for name in single.report["layer_order"]:
        for key in ("I", "S", "active", "neuron_max"):
            np.testing.assert_allclose(merged[f"{name}/{key}"], single.arrays[f"{name}/{key}"],
                                       atol=1e-9, rtol=0)  # fmt: skip
        # per-image counts: same multiset per group (ranks hold disjoint shards)
        for g in (0, 1):
            a = merged[f"{name}/image_active"][merged["image_groups"] == g]
            b = single.arrays[f"{name}/image_active"][single.arrays["image_groups"] == g]
            assert sorted(map(tuple, a)) == sorted(map(tuple, b))
    with open(out + ".json") as f:
        dist_numbers = json.load(f)
    assert dist_numbers == json.loads(json.dumps(_numbers_json(single)))

"""invfast.backends and the ``invfast`` command line basics."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import invfast
from invfast import kernels as ops
from invfast.cli import main
from invfast.kernels import _launch, backends
from invfast.kernels.reference import stats as ref_stats
from invfast.kernels.reference import transforms as ref_transforms


def test_cpu_backend_is_built():
    names = {row.name: row for row in backends.status()}
    assert names["reference"].available
    assert names["cpu"].available, names["cpu"].detail


def test_cuda_status_explains_itself():
    row = {r.name: r for r in backends.status()}["cuda"]
    if not row.available:
        assert row.detail.startswith("CUDA module"), row.detail


def test_resolve_prefers_kernel_for_cpu_tensors():
    assert backends.resolve(None, torch.device("cpu"), "op") == "cpu"
    assert backends.resolve("reference", torch.device("cpu"), "op") == "reference"
    with pytest.raises(ValueError, match="op: backend 'cuda' needs CUDA tensors"):
        backends.resolve("cuda", torch.device("cpu"), "op")


def test_cli_version_and_backends(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert invfast.__version__ in capsys.readouterr().out
    assert main(["backends"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["reference", "cpu", "cuda"]


def test_import_needs_no_gpu():
    code = "import invfast, invfast.ops; print(invfast.__version__)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0, result.stderr


def _binding_parameters(function) -> list[str]:
    """Parameter names of a pybind11 function, from its signature line."""
    signature = function.__doc__.splitlines()[0]
    return re.findall(r"[(,] ?(\w+): ", signature)


def test_cuda_launches_match_the_compiled_signatures(monkeypatch):
    """The CUDA branch of every op, driven with CPU tensors into a recording stand-in: the
    keyword arguments must be exactly the compiled module's parameters, and a status the
    kernel writes must come back (no GPU needed)."""
    compiled = backends.cuda_module()
    if compiled is None:
        pytest.skip("the CUDA module is not built here")
    calls: dict[str, dict] = {}

    class Recorder:
        def __getattr__(self, name):
            def kernel(**arguments):
                calls[name] = arguments
                if "status" in arguments:  # the op sees a clean batch
                    ctypes.c_int32.from_address(arguments["status"]).value = 0

            return kernel

    monkeypatch.setattr(_launch, "cuda", lambda: Recorder())
    monkeypatch.setattr(_launch, "cuda_stream", lambda device: 7)
    monkeypatch.setattr(_launch, "cuda_device_index", lambda device: 0)
    monkeypatch.setattr(_launch, "compiled", lambda which: compiled)
    monkeypatch.setattr(backends, "resolve", lambda backend, device, op: "cuda")

    a, b = torch.rand(3, 5), torch.rand(3, 5)
    acc = ops.invariance_accumulator(2, 5)
    ops.neuron_max(a, acc["neuron_max"], b)
    ops.invariance_update(a, b, acc["neuron_max"], torch.tensor([0, 1, 1]), acc)
    ops.ablate(a, acc["neuron_max"], 0.5, "active", neurons="unit")
    ops.image_transform(torch.rand(2, 3, 8, 8), "blur", params={"sigma": 1.0})

    assert set(calls) == {"neuron_max", "invariance_update", "ablate", "image_transform"}
    for name, arguments in calls.items():
        assert sorted(arguments) == sorted(_binding_parameters(getattr(compiled, name))), name
        assert arguments["stream"] == 7 and arguments["device"] == 0
    update = calls["invariance_update"]
    assert update["a"] == a.data_ptr() and update["h_sum"] == acc["h_sum"].data_ptr()
    assert (update["rows"], update["channels"], update["groups"]) == (3, 5, 2)
    assert update["num_taus"] == 21
    assert update["active_counts"] == 0
    assert calls["ablate"]["ablate_mode"] == compiled.ABLATE_MODES["active"]


@pytest.mark.parametrize("op", ["neuron_max", "invariance_update", "ablate", "image_transform"])
def test_cpu_and_cuda_kernels_take_the_same_keywords(op):
    """One launch helper serves both modules: the parameters differ only in what each adds
    (``threads`` on the CPU; ``status``, ``device``, ``stream`` on CUDA)."""
    cpu, cuda = backends.cpu_module(), backends.cuda_module()
    if cpu is None or cuda is None:
        pytest.skip("needs both compiled modules")
    cpu_names = [n for n in _binding_parameters(getattr(cpu, op)) if n != "threads"]
    cuda_names = [
        n for n in _binding_parameters(getattr(cuda, op)) if n not in ("status", "device", "stream")
    ]
    assert cpu_names == cuda_names


def _compiled_modules() -> list:
    modules = [backends.cpu_module(), backends.cuda_module()]
    if modules[0] is None:
        pytest.skip("the CPU module is not built")
    return [m for m in modules if m is not None]


def test_python_copies_of_the_compiled_constants_are_equal():
    """The reference works without a compiled module, so it keeps copies of the constants of
    csrc/common/; they must be the ones the modules export."""
    for module in _compiled_modules():
        assert (module.ACTIVATION_OK, module.ACTIVATION_NONFINITE, module.ACTIVATION_NEGATIVE) == (
            ref_stats.ACTIVATION_OK,
            ref_stats.ACTIVATION_NONFINITE,
            ref_stats.ACTIVATION_NEGATIVE,
        )
        assert module.NEURON_MODES == {n: i for i, n in enumerate(ref_stats.NEURON_MODES)}
        assert module.ABLATE_MODES == {n: i for i, n in enumerate(ref_stats.ABLATE_MODES)}
        assert module.MAX_TAUS == ref_stats.MAX_TAUS == ops.stats.MAX_TAUS
        assert module.EXTRA_BINS == ref_stats.EXTRA_BINS
        assert module.ACCUMULATOR_DIMS == ("group", "neuron", "bin")
        assert module.TRANSFORM_OPS == ref_transforms.KERNEL_OPS
        assert module.TRANSFORM_OP_COUNT == len(ref_transforms.KERNEL_OPS)
        assert module.TRANSFORM_TABLE_WIDTH == ref_transforms.TABLE_WIDTH
        assert module.RNG_STREAM_NOISE == ref_transforms.STREAM_NOISE
        assert module.RNG_STREAM_SALTPEPPER == ref_transforms.STREAM_SALTPEPPER
        assert set(module.STANDARDIZE_MODES) == {"none", "per-image", "fixed"}
        assert sorted(module.DTYPES) == sorted(_launch.DTYPE_NAMES.values())


def test_compiled_constants_are_what_the_kernels_return():
    """The status bits the CPU kernel returns for NaN and for a negative value are the
    exported ones, and the exported mode ids select the modes they name."""
    (module, *_) = _compiled_modules()
    a = torch.tensor([[0.0, 2.0, 1.0, 3.0]])
    out = torch.zeros(1, dtype=torch.float32)

    def status_of(values):
        return module.neuron_max(
            a=values.numpy(), b=None, rows=1, channels=1, spatial=4,
            mode=module.NEURON_MODES["channel-max"], dtype="float32", acc=out.numpy(), threads=1,
        )  # fmt: skip

    assert status_of(a) == module.ACTIVATION_OK and out.item() == 3.0
    assert status_of(torch.tensor([[0.0, float("nan"), 1.0, 1.0]])) == module.ACTIVATION_NONFINITE
    assert status_of(torch.tensor([[0.0, -1.0, 1.0, 1.0]])) == module.ACTIVATION_NEGATIVE
    out.zero_()
    module.neuron_max(
        a=a.numpy(), b=None, rows=1, channels=1, spatial=4,
        mode=module.NEURON_MODES["channel-mean"], dtype="float32", acc=out.numpy(), threads=1,
    )  # fmt: skip
    assert out.item() == 1.5


_AVX2_CHECK = """
import torch
from invfast import kernels as ops
from invfast.core import transforms
assert "AVX512" not in torch.backends.cpu.get_cpu_capability()  # the loader sees no AVX-512
g = torch.Generator().manual_seed(0)
cases = [(37, 9, None), (200, 17, torch.linspace(0, 1, 30)),
         (16, 5, torch.tensor([0.0, 0.3, 0.31, 0.9])), (64, 8, torch.linspace(0.2, 1.4, 25))]
for k, b, taus in cases:
    a = torch.rand(b, k, generator=g)
    a[a < 0.3] = 0
    tx = (a + 0.2 * torch.rand(b, k, generator=g)).clamp(min=0)
    tx[:, ::7] = 0
    ids = torch.arange(b) % 3
    out = {}
    for backend in ("cpu", "reference"):
        acc = ops.invariance_accumulator(3, k, *([] if taus is None else [taus]))
        ops.neuron_max(a, acc["neuron_max"], tx, backend=backend)
        n = torch.zeros(b, acc["taus"].numel(), dtype=torch.int64)
        ops.invariance_update(a, tx, acc["neuron_max"], ids, acc, active_counts=n, backend=backend)
        out[backend] = (acc, n)
    (c, cn), (r, rn) = out["cpu"], out["reference"]
    assert torch.equal(c["neuron_max"], r["neuron_max"]) and torch.equal(c["count"], r["count"])
    assert torch.equal(cn, rn), k
    for key in ("h_sum", "s_sum"):
        torch.testing.assert_close(c[key], r[key], rtol=1e-9, atol=1e-12)
x = (torch.rand(3, 3, 20, 24, generator=g) * 255).round()
for name, params in [("blur", {"sigma": 1.5}), ("grayscale", {}), ("hfilter", {})]:
    t = transforms.get(name, **params)
    torch.testing.assert_close(t(x, backend="cpu"), t(x, backend="reference"), rtol=1e-5, atol=1e-5)
print("avx2 clones agree")
"""


@pytest.mark.slow
def test_avx2_clones_agree_with_the_reference():
    """The CPU kernels are compiled for AVX-512, AVX2 and baseline x86-64 and the loader picks
    one (csrc/cpu/clones.h); on an AVX-512 machine the tests only reach the first. Valgrind
    hides AVX-512 from the program, so under it the AVX2 clones of pass 1, pass 2 and the
    transforms run against the reference (about 2 minutes)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        pytest.skip("valgrind is not installed")
    if not {row.name: row for row in backends.status()}["cpu"].available:
        pytest.skip("the CPU module is not built")
    env = dict(os.environ, OMP_NUM_THREADS="2")
    run = subprocess.run(
        [valgrind, "--tool=none", "-q", sys.executable, "-c", _AVX2_CHECK],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "avx2 clones agree" in run.stdout


_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _baseline_case(rows, channels, groups, taus, seed, nan=False):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(rows, channels, generator=g)
    a[a < 0.3] = 0
    b = (a + 0.2 * torch.rand(rows, channels, generator=g)).clamp(min=0)
    b[:, ::7] = 0
    if channels > 3:
        a[:, 3] = 0  # a dead neuron (M_k = 0)
        b[:, 3] = 0
    b[0, 0] = a[0, 0] = 0.5  # ties at τ·M come from the maximum itself
    if nan:
        b[-1, -1] = float("nan")
    ids = torch.arange(rows) % groups
    return a, b, torch.tensor(taus, dtype=torch.float32), ids


@pytest.mark.slow
def test_baseline_clones_agree_with_the_reference(tmp_path):
    """What a CPU without AVX2 runs: the kernels built with -DINVFAST_NO_CLONES (only their
    baseline x86-64 code, no bin estimate) compute pass 1, pass 2 with per-image counts and
    the ablation like the reference, and a NaN is reported with nothing written."""
    compiler = shutil.which("g++")
    sources = [os.path.join(_REPO, "csrc", "cpu", name) for name in ("stats.cpp", "neuron_max.cpp")]
    driver = os.path.join(_REPO, "tests", "baseline_kernels.cpp")
    if compiler is None or not all(map(os.path.exists, [driver, *sources])):
        pytest.skip("needs g++ and the csrc/ sources (a source checkout)")
    exe = tmp_path / "baseline_kernels"
    build = subprocess.run(
        [compiler, "-O2", "-std=gnu++17", "-fopenmp", "-DINVFAST_OPENMP=1", "-DINVFAST_NO_CLONES",
         "-I", os.path.join(_REPO, "csrc"), driver, *sources, "-o", str(exe)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    uniform = [i / 20 for i in range(21)]
    cases = [
        (37, 50, 2, uniform, False),  # the default grid: the AVX-512 build would estimate bins
        (5, 300, 3, [0.0, 0.3, 0.31, 0.9], False),  # uneven grid
        (64, 16, 1, [0.2 + 0.05 * i for i in range(25)], False),
        (9, 17, 2, uniform, True),  # a NaN in the last element of b
    ]
    for index, (rows, channels, groups, taus, nan) in enumerate(cases):
        a, b, taus_t, ids = _baseline_case(rows, channels, groups, taus, seed=index, nan=nan)
        tau = 0.3
        case = tmp_path / f"case{index}.bin"
        with open(case, "wb") as f:
            f.write(torch.tensor([rows, channels, groups, len(taus), 2]).numpy().tobytes())
            for t in (a, b, taus_t):
                f.write(t.numpy().tobytes())
            f.write(ids.numpy().tobytes())
            f.write(torch.tensor([tau], dtype=torch.float32).numpy().tobytes())
        out = tmp_path / f"out{index}.bin"
        run = subprocess.run([str(exe), str(case), str(out)], capture_output=True, timeout=120)
        assert run.returncode == 0, run.stderr
        raw = out.read_bytes()
        cells = groups * channels * (len(taus) + 1)
        sizes = [("int32", 3), ("float32", channels), ("int64", cells), ("float64", cells),
                 ("float64", cells), ("int64", rows * len(taus)),
                 ("float32", rows * channels)]  # fmt: skip
        parts, at = [], 0
        for dtype, n in sizes:
            parts.append(torch.from_numpy(np.frombuffer(raw, dtype, n, at).copy()))
            at += n * parts[-1].element_size()
        assert at == len(raw)
        status, m, count, h_sum, s_sum, active, ablated = parts
        if nan:
            assert status[0] != 0 and status[1] != 0, status
            assert count.eq(0).all() and h_sum.eq(0).all() and active.eq(0).all()
            continue
        assert status.eq(0).all(), status
        acc = ops.invariance_accumulator(groups, channels, taus_t)
        ops.neuron_max(a, acc["neuron_max"], b, backend="reference")
        n = torch.zeros(rows, len(taus), dtype=torch.int64)
        ops.invariance_update(a, b, acc["neuron_max"], ids, acc, active_counts=n,
                              backend="reference")  # fmt: skip
        assert torch.equal(m, acc["neuron_max"])
        assert torch.equal(count, acc["count"].flatten()), index
        assert torch.equal(active, n.flatten()), index
        for mine, ref in ((h_sum, acc["h_sum"]), (s_sum, acc["s_sum"])):
            torch.testing.assert_close(mine, ref.flatten(), rtol=1e-9, atol=1e-12)
        expected = ops.ablate(a, acc["neuron_max"], tau, "inactive", backend="reference")
        assert torch.equal(ablated, expected.flatten()), index

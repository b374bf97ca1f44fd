"""invfast.transforms: kernels vs the reference, group laws, documented rules (DESIGN §4)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from invfast.core import transforms
from invfast.kernels import backends
from invfast.kernels.reference import transforms as ref

P1 = ["grayscale", "hue180", "blur", "highpass", "hfilter", "vfilter", "invert", "noise",
      "saltpepper", "rot90", "rot180", "thin"]  # fmt: skip
P2 = ["translate", "rotate", "scale", "zoom", "brightness", "contrast", "grayscale-blend"]
P3 = ["R4", "T3"]
ALL = ["identity", *P1, *P2, *P3]
# Pure index maps (and salt & pepper): the issue asks for bit-identical results.
EXACT = {"identity", "invert", "saltpepper", "rot90", "rot180", "thin", "R4", "T3"}
MAX_ELEMENTS = 120_000  # per drawn batch, to keep the whole file well under a minute


def images(shape, dtype=torch.uint8, seed=0) -> torch.Tensor:
    """Random [0, 255] images; float ones are non-integer and partly outside [0, 255]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    if dtype == torch.uint8:
        return x
    return x.float() * 1.1 - 12.0 + torch.rand(shape, generator=g)


def run(name, x, backend="cpu", standardize="none", **kw):
    params = kw.pop("params", {})
    return transforms.get(name, **params)(x, backend=backend, standardize=standardize, **kw)


# ------------------------------------------------------------------ the public API
def test_names_cover_the_three_papers():
    assert transforms.names() == ALL
    info = transforms.describe()
    assert set(info) == set(ALL)
    assert {info[n]["family"] for n in P1} == {"color", "convolutional", "noise", "geometric"}
    assert info["R4"]["group_order"] == 4 and info["T3"]["group_order"] == 3
    assert info["blur"]["params"] == {"sigma": 2.0}
    for name in ALL:
        t = transforms.get(name)
        assert t.name == name and t.family == info[name]["family"]
        json.dumps(t.params)


def test_params_accept_per_image_tensors_and_stay_json():
    t = transforms.get("rotate", angle=torch.tensor([0.0, 90.0]))
    assert json.loads(json.dumps(t.params)) == {"angle": [0.0, 90.0]}
    assert transforms.get("grayscale_blend", alpha=0.25).name == "grayscale-blend"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: transforms.get("nope"), "valid: identity, grayscale"),
        (lambda: transforms.get(3), "unknown transformation"),
        (lambda: transforms.get("blur", sgma=1.0), "valid: sigma"),
        (lambda: transforms.get("invert", sigma=1.0), "valid: none"),
        (lambda: transforms.get("blur", sigma=-1.0), r"sigma must be finite and in \[0, 1000\]"),
        (lambda: transforms.get("noise", sigma=float("nan")), "finite"),
        (lambda: transforms.get("noise", sigma="big"), "must be a number"),
        (lambda: transforms.get("R4", element=4), r"in \[0, 3\]"),
        (lambda: transforms.get("R4", element=1.5), "integer"),
        (lambda: transforms.get("T3", element=torch.tensor([0.0])), "integer tensor"),
        (lambda: transforms.get("zoom", factor=torch.ones(2, 2)), r"\[B\] tensor"),
        (lambda: transforms.get("grayscale-blend", alpha=1.5), r"\[0, 1\]"),
        (lambda: transforms.get("invert").orbit(torch.zeros(1, 1, 2, 2)), "groups R4, T3"),
    ],
)
def test_bad_names_and_parameters_raise_one_line_value_errors(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize(
    ("name", "shape", "kw", "error", "message"),
    [
        ("hue180", (1, 1, 4, 4), {}, ValueError, "needs RGB images"),
        ("grayscale", (1, 2, 4, 4), {}, ValueError, "C = 1 or C = 3"),
        ("T3", (1, 1, 4, 4), {}, ValueError, "divisible by 3"),
        ("invert", (2, 4, 4), {}, ValueError, r"\[B, C, H, W\]"),
        ("invert", (1, 1, 0, 4), {}, ValueError, "C, H, W >= 1"),
        ("invert", (2, 1, 4, 4), {"index": torch.arange(3)}, ValueError, "index must have shape"),
        ("invert", (2, 1, 4, 4), {"index": torch.zeros(2)}, TypeError, "integer tensor"),
        ("invert", (2, 1, 4, 4), {"apply": torch.ones(2)}, TypeError, "bool tensor"),
        ("invert", (2, 1, 4, 4), {"apply": torch.ones(3, dtype=torch.bool)}, ValueError, "shape"),
        ("invert", (1, 1, 4, 4), {"standardize": "z"}, ValueError, "'per-image', 'none'"),
        ("invert", (1, 3, 4, 4), {"standardize": ([1, 2], [1, 1])}, ValueError, "1 or C = 3"),
        ("invert", (1, 1, 4, 4), {"standardize": ([1], [0])}, ValueError, "std must be > 0"),
        ("invert", (1, 1, 4, 4), {"standardize": ([1], ["a"])}, ValueError, "numbers"),
        ("invert", (1, 1, 4, 4), {"seed": 1.5}, TypeError, "seed must be an int"),
    ],
)
def test_bad_calls_raise_before_any_kernel(backend, name, shape, kw, error, message):
    with pytest.raises(error, match=message):
        transforms.get(name)(torch.zeros(shape, dtype=torch.uint8), backend=backend, **kw)


def test_bad_dtype_and_per_image_parameter_count():
    with pytest.raises(TypeError, match="x must have dtype uint8, float32"):
        transforms.get("invert")(torch.zeros(1, 1, 2, 2, dtype=torch.int32))
    with pytest.raises(ValueError, match="expected one per image"):
        transforms.get("blur", sigma=torch.ones(3))(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="backend 'cuda' needs CUDA tensors"):
        transforms.get("invert")(torch.zeros(1, 1, 2, 2), backend="cuda")


def test_compiled_module_shares_the_op_table_and_checks_its_arguments():
    cpu = backends.cpu_module()
    assert cpu.TRANSFORM_OP_COUNT == len(ref.KERNEL_OPS)
    assert cpu.TRANSFORM_TABLE_WIDTH == ref.TABLE_WIDTH
    x = np.zeros((1, 1, 2, 2), dtype=np.uint8)
    out = np.zeros((1, 1, 2, 2), dtype=np.float32)
    table, w, idx = np.zeros((1, 8), np.float32), np.ones(1, np.float32), np.zeros(1, np.int64)
    one = np.ones(1, np.float32)
    args = dict(x=x, dtype="uint8", batch=1, channels=1, height=2, width=2, op=0, table=table,
                weights=w, taps=1, index=idx, apply=None, seed=0, standardize=0, mean=one,
                inv_std=one, out=out, threads=1)  # fmt: skip
    cpu.image_transform(**args)
    for bad, message in [
        ({"op": ref.KERNEL_OPS["hue180"]}, "needs C = 3"),
        ({"op": 99}, "transformation code"),
        ({"taps": 2}, "odd number"),
        ({"out": np.zeros(3, np.float32)}, "out: expected 4 elements"),
        ({"dtype": "float16"}, "uint8 or float32"),
        ({"x": np.zeros((1, 1, 2, 2), np.float32)}, "items of 1 bytes"),
    ]:
        with pytest.raises(ValueError, match=message):
            cpu.image_transform(**{**args, **bad})


# ------------------------------------------------------------------ cpu == reference
def _param_strategy(name: str, batch: int):
    def per_image(values):
        # A float, or a [B] tensor of per-image values drawn from the same range.
        return st.one_of(values, st.lists(values, min_size=batch, max_size=batch).map(
            lambda v: torch.tensor(v, dtype=torch.float64)))  # fmt: skip

    def element(order):
        ints = st.integers(0, order - 1)
        return st.one_of(ints, st.lists(ints, min_size=batch, max_size=batch).map(torch.tensor))

    f = lambda lo, hi: st.floats(lo, hi, allow_nan=False)  # noqa: E731
    table = {
        "blur": {"sigma": per_image(st.one_of(st.just(0.0), f(0.0, 5.0)))},
        "noise": {"sigma": per_image(f(0.0, 80.0))},
        "translate": {"dx": per_image(f(-20, 20)), "dy": per_image(f(-20, 20))},
        "rotate": {"angle": per_image(st.one_of(st.sampled_from([0.0, 90.0]), f(-360, 360)))},
        "scale": {"sx": per_image(f(0.2, 4.0)), "sy": per_image(f(0.2, 4.0))},
        "zoom": {"factor": per_image(f(0.2, 4.0))},
        "brightness": {"delta": per_image(f(-300, 300))},
        "contrast": {"factor": per_image(f(0.0, 3.0))},
        "grayscale-blend": {"alpha": per_image(f(0.0, 1.0))},
        "R4": {"element": element(4)},
        "T3": {"element": element(3)},
    }
    return st.fixed_dictionaries(table.get(name, {}))


@st.composite
def transform_cases(draw, name):
    c = 3 if name == "hue180" else draw(st.sampled_from([1, 3]))
    h = draw(st.one_of(st.integers(1, 8), st.integers(1, 257)))
    w = draw(st.one_of(st.integers(1, 8), st.integers(1, 131)))
    if name == "T3":
        w = max(3, w - w % 3)
    b = draw(st.integers(1, 64))
    b = max(1, min(b, MAX_ELEMENTS // (c * h * w)))
    dtype = draw(st.sampled_from([torch.uint8, torch.float32]))
    x = images((b, c, h, w), dtype, draw(st.integers(0, 2**16)))
    if draw(st.booleans()):  # flat regions: ties in max/min, constant-image standardization
        x[: max(1, b // 2)] = x[: max(1, b // 2), :, :1, :1]
    standardize = draw(st.sampled_from(["none", "per-image", "fixed"]))
    if standardize == "fixed":
        standardize = (torch.linspace(90.0, 130.0, c).tolist(), torch.linspace(50, 70, c).tolist())
    kw = {
        "params": draw(_param_strategy(name, b)),
        "seed": draw(st.one_of(st.integers(0, 3), st.integers(-(2**63), 2**64 - 1))),
        "standardize": standardize,
    }
    if draw(st.booleans()):
        kw["index"] = torch.tensor(draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=b,
                                                 max_size=b)))  # fmt: skip
    if draw(st.booleans()):
        kw["apply"] = torch.tensor(draw(st.lists(st.booleans(), min_size=b, max_size=b)))
    return x, kw


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=10)
@given(data=st.data())
def test_cpu_equals_reference(name, data):
    x, kw = data.draw(transform_cases(name))
    expected = run(name, x, "reference", **dict(kw))
    got = run(name, x, "cpu", **dict(kw))
    assert got.dtype == torch.float32 and got.shape == x.shape
    if name in EXACT:
        assert torch.equal(got, expected)
    else:
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_empty_batch_and_one_pixel(backend):
    for name in ["blur", "highpass", "rot90", "thin", "noise", "rotate"]:
        assert run(name, torch.zeros(0, 3, 5, 5), backend).shape == (0, 3, 5, 5)
        one = torch.full((2, 1, 1, 1), 77, dtype=torch.uint8)
        out = run(name, one, backend, params={"sigma": 0.0} if name == "noise" else {})
        expected = torch.full((2, 1, 1, 1), 0.0 if name == "highpass" else 77.0)
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=0, msg=name)


# ------------------------------------------------------------------ properties
@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("size", [1, 2, 7, 16])
def test_rot90_four_times_is_identity_on_square_images(backend, size):
    x = images((3, 3, size, size), torch.float32).clamp(0, 255)
    y = x
    for _ in range(4):
        y = run("rot90", y, backend)
    assert torch.equal(y, x)
    assert torch.equal(run("rot90", run("rot90", x, backend), backend), run("rot180", x, backend))
    assert torch.equal(run("rot90", x, backend), torch.rot90(x, 1, dims=(2, 3)))


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_quarter_turns_of_non_square_images_keep_shape_about_the_centre(backend):
    x = torch.arange(1, 9, dtype=torch.uint8).view(1, 1, 2, 4)  # [[1,2,3,4],[5,6,7,8]]
    # torch.rot90 gives 4×2 [[4,8],[3,7],[2,6],[1,5]]; its two centre rows sit in a 2×4
    # canvas at column (4-2)//2 = 1, zeros elsewhere.
    expected90 = torch.tensor([[0, 3, 7, 0], [0, 2, 6, 0]], dtype=torch.float32)
    assert torch.equal(run("rot90", x, backend)[0, 0], expected90)
    expected270 = torch.tensor([[0, 6, 2, 0], [0, 7, 3, 0]], dtype=torch.float32)
    assert torch.equal(run("R4", x, backend, params={"element": 3})[0, 0], expected270)
    assert torch.equal(run("rot180", x, backend)[0, 0], x[0, 0].flip(0, 1).float())
    # odd difference: 3×2 → canvas offsets top (3-2)//2 = 0, left (2-3)//2 = -1 (crop)
    y = torch.arange(1, 7, dtype=torch.uint8).view(1, 1, 3, 2)  # [[1,2],[3,4],[5,6]]
    expected = torch.tensor([[4, 6], [3, 5], [0, 0]], dtype=torch.float32)
    assert torch.equal(run("rot90", y, backend)[0, 0], expected)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize(("group", "order", "shape"), [("R4", 4, (2, 3, 9, 9)),
                                                       ("T3", 3, (2, 1, 5, 12))])  # fmt: skip
def test_group_law_inverse_and_orbit(backend, group, order, shape):
    x = images(shape, torch.float32).clamp(0, 255)
    orbit = transforms.get(group).orbit(x, standardize="none", backend=backend)
    assert orbit.shape == (order, *shape)
    assert torch.equal(orbit[0], x)
    for a in range(order):
        ga = transforms.get(group, element=a)
        assert torch.equal(orbit[a], ga(x, standardize="none", backend=backend))
        assert torch.equal(ga.inverse()(orbit[a], standardize="none", backend=backend), x)
        for b in range(order):
            gb = transforms.get(group, element=b)
            composed = gb(orbit[a], standardize="none", backend=backend)
            assert torch.equal(composed, orbit[(a + b) % order]), (a, b)
    distinct = {tuple(o.flatten().tolist()) for o in orbit}
    assert len(distinct) == order  # generic images: the orbit has |G| different elements
    ks = torch.arange(shape[0]) % order + 1
    per_image = transforms.get(group, element=ks % order)(x, standardize="none", backend=backend)
    for i, k in enumerate((ks % order).tolist()):
        assert torch.equal(per_image[i], orbit[k, i])


def test_group_act_permutes_any_tensor_like_the_kernel():
    x = images((3, 2, 9, 12), torch.float32).clamp(0, 255)
    for group, order in [("R4", 4), ("T3", 3)]:
        for k in range(order):
            g = transforms.get(group, element=k)
            assert torch.equal(g.act(x), g(x, standardize="none"))
            if group == "T3":  # (R4 on a non-square image loses its corners: see below)
                saliency = torch.rand(3, 9, 12) * 1e3  # no channel axis, outside [0, 255]
                assert torch.equal(g.inverse().act(g.act(saliency)), saliency)
        per_image = transforms.get(group, element=torch.tensor([0, 1, 2]))
        assert torch.equal(per_image.act(x), per_image(x, standardize="none"))
    square = torch.rand(2, 5, 5)
    r = transforms.get("R4", element=1)
    assert torch.equal(r.inverse().act(r.act(square)), square)
    with pytest.raises(ValueError, match="groups R4, T3"):
        transforms.get("rot90").act(x)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_t3_is_a_cyclic_shift_by_a_third(backend):
    x = images((1, 1, 3, 9), torch.float32).clamp(0, 255)
    y = run("T3", x, backend, params={"element": 1})
    assert torch.equal(y, torch.roll(x, 3, dims=3))


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_invert_is_an_involution(backend):
    x = images((4, 3, 11, 6), torch.uint8)
    once = run("invert", x, backend)
    assert torch.equal(once, 255.0 - x.float())
    assert torch.equal(run("invert", once, backend), x.float())


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_blur_sigma_to_zero_is_identity_and_keeps_constants(backend):
    x = images((3, 3, 9, 14))
    for sigma in [0.0, 1e-3, 0.05]:  # neighbour weights exp(-200) and below: zero
        assert torch.equal(run("blur", x, backend, params={"sigma": sigma}), x.float())
    for sigma, neighbour in [(0.1, 2e-22), (0.2, 3.8e-6), (0.3, 3.9e-3)]:  # → 0 continuously
        near = run("blur", x, backend, params={"sigma": sigma})
        torch.testing.assert_close(near, x.float(), rtol=0, atol=255 * 4 * neighbour + 1e-4)
    constant = torch.full((2, 1, 5, 7), 200, dtype=torch.uint8)
    blurred = run("blur", constant, backend, params={"sigma": 4.0})  # radius 12 > H, W
    torch.testing.assert_close(blurred, constant.float(), rtol=0, atol=1e-4)
    smooth = run("blur", x, backend, params={"sigma": 1.5})
    assert smooth.std() < x.float().std()


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_blur_matches_a_direct_2d_gaussian_with_reflect_border(backend):
    x = images((1, 1, 6, 9), torch.float32).clamp(0, 255).double()
    sigma, r = 1.2, 4
    k = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-(k**2) / (2 * sigma**2))
    g = g / g.sum()
    expected = torch.zeros(6, 9, dtype=torch.float64)
    for y in range(6):
        for xx in range(9):
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    sy = int(ref.reflect_index(torch.tensor(y + dy), 6))
                    sx = int(ref.reflect_index(torch.tensor(xx + dx), 9))
                    expected[y, xx] += g[dy + r] * g[dx + r] * x[0, 0, sy, sx]
    got = run("blur", x.float(), backend, params={"sigma": sigma})
    torch.testing.assert_close(got[0, 0].double(), expected, rtol=0, atol=1e-3)


def test_reflect_index_rule():
    i = torch.arange(-6, 11)
    assert ref.reflect_index(i, 4).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2]
    assert ref.reflect_index(i, 1).tolist() == [0] * 17


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("name", ["highpass", "hfilter", "vfilter"])
def test_filters_on_constant_and_ramp_images(backend, name):
    constant = torch.full((2, 3, 6, 5), 180, dtype=torch.uint8)
    assert torch.equal(run(name, constant, backend), torch.zeros(2, 3, 6, 5))  # clamp(0) = 0
    ramp = torch.arange(8, dtype=torch.float32) * 10.0  # increases along x
    img = ramp.view(1, 1, 1, 8).expand(1, 1, 6, 8).contiguous()
    out = run(name, img, backend)[0, 0, 2:4, 2:6]  # interior
    expected = {"hfilter": 3 * 20.0, "vfilter": 0.0, "highpass": 0.0}[name]
    assert torch.equal(out, torch.full_like(out, expected))
    down = run(name, img.flip(3).contiguous(), backend)[0, 0, 2:4, 2:6]
    assert torch.equal(down, torch.zeros_like(down))  # −60 clamps to 0


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_grayscale_channels_equal_and_blend_endpoints(backend):
    x = images((3, 3, 7, 5))
    g = run("grayscale", x, backend)
    assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2])
    expected = 0.299 * x[:, 0].double() + 0.587 * x[:, 1].double() + 0.114 * x[:, 2].double()
    torch.testing.assert_close(g[:, 0].double(), expected, rtol=0, atol=1e-4)
    assert torch.equal(run("grayscale-blend", x, backend, params={"alpha": 1.0}), g)
    assert torch.equal(run("grayscale-blend", x, backend, params={"alpha": 0.0}), x.float())
    one = x[:, :1]
    assert torch.equal(run("grayscale", one, backend), one.float())


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_hue180_equals_the_hsv_round_trip(backend):
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    x = images((2, 3, 9, 8))
    hsv = rgb_to_hsv(x.permute(0, 2, 3, 1).double().numpy() / 255.0)
    hsv[..., 0] = (hsv[..., 0] + 0.5) % 1.0
    expected = torch.from_numpy(hsv_to_rgb(hsv) * 255.0).permute(0, 3, 1, 2)
    got = run("hue180", x, backend)
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-3)
    assert torch.equal(run("hue180", got, backend), x.float())  # 180° twice


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_noise_is_a_function_of_seed_and_image_index(backend):
    x = torch.full((4, 3, 10, 12), 128, dtype=torch.uint8)
    ids = torch.tensor([7, 8, 9, 7])
    a = run("noise", x, backend, seed=5, index=ids)
    assert torch.equal(a, run("noise", x, backend, seed=5, index=ids))  # same run twice
    assert torch.equal(a[0], a[3])  # same id → same noise
    assert not torch.equal(a[0], a[1])  # different id → different noise
    assert not torch.equal(a, run("noise", x, backend, seed=6, index=ids))
    alone = run("noise", x[:1], backend, seed=5, index=torch.tensor([9]))
    assert torch.equal(alone[0], a[2])  # independent of the rest of the batch
    default = run("noise", x, backend, seed=5)
    assert torch.equal(default[1], run("noise", x[:1], backend, seed=5, index=torch.tensor([1]))[0])
    z = (run("noise", torch.full((8, 3, 64, 64), 128, dtype=torch.uint8), backend,
             params={"sigma": 10.0}) - 128.0) / 10.0  # fmt: skip
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1.0) < 0.01
    channels = z[:, 0].flatten(), z[:, 1].flatten()
    assert abs(torch.corrcoef(torch.stack(channels))[0, 1].item()) < 0.02


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_salt_and_pepper_hits_half_the_pixels_in_all_channels(backend):
    x = torch.full((6, 3, 40, 30), 100, dtype=torch.uint8)
    y = run("saltpepper", x, backend, seed=1)
    hit = y != 100.0
    assert torch.equal(hit[:, 0], hit[:, 1]) and torch.equal(hit[:, 1], hit[:, 2])
    assert torch.equal(y[:, 0], y[:, 2])
    assert set(torch.unique(y[hit]).tolist()) == {0.0, 255.0}
    assert abs(hit.float().mean().item() - 0.5) < 0.02
    assert abs((y[hit] == 255.0).float().mean().item() - 0.5) < 0.03
    assert not torch.equal(y[0], y[1])


def test_salt_pepper_and_noise_streams_are_independent():
    keys_noise = ref.image_keys(3, torch.arange(4), ref.STREAM_NOISE)
    keys_sp = ref.image_keys(3, torch.arange(4), ref.STREAM_SALTPEPPER)
    assert len(set(keys_noise.tolist()) | set(keys_sp.tolist())) == 8


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_thin_halves_the_width_and_pads_both_sides(backend):
    x = torch.tensor([[[[10, 20, 30, 50, 60, 80, 100, 0]]]], dtype=torch.uint8)
    assert run("thin", x, backend)[0, 0, 0].tolist() == [0, 0, 15, 40, 70, 50, 0, 0]
    odd = torch.tensor([[[[3, 6, 9, 12, 15]]]], dtype=torch.uint8)  # Wn = 2: windows 0..3, 2..5
    assert run("thin", odd, backend)[0, 0, 0].tolist() == [0, 6, 12, 0, 0]


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_p2_geometry(backend):
    x = images((2, 3, 12, 12), torch.float32).clamp(0, 255)
    neutral = {
        "translate": {"dx": 0.0, "dy": 0.0},
        "rotate": {"angle": 0.0},
        "scale": {"sx": 1.0, "sy": 1.0},
        "zoom": {"factor": 1.0},
        "brightness": {"delta": 0.0},
        "contrast": {"factor": 1.0},
    }
    for name, params in neutral.items():
        assert torch.equal(run(name, x, backend, params=params), x), name
    shifted = run("translate", x, backend, params={"dx": 3.0, "dy": -2.0})
    expected = torch.zeros_like(x)
    expected[:, :, :10, 3:] = x[:, :, 2:, :9]
    assert torch.equal(shifted, expected)
    half = run("translate", x, backend, params={"dx": 0.5, "dy": 0.0})
    torch.testing.assert_close(half[..., 1:], (x[..., 1:] + x[..., :-1]) / 2)
    turned = run("rotate", x, backend, params={"angle": 90.0})
    torch.testing.assert_close(turned, torch.rot90(x, 1, dims=(2, 3)), rtol=0, atol=1e-3)
    assert torch.equal(run("brightness", x, backend, params={"delta": 300.0}),
                       torch.full_like(x, 255.0))  # fmt: skip
    assert torch.equal(run("contrast", x, backend, params={"factor": 0.5}), x * 0.5)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_zoom_two_samples_the_centre_at_half_steps(backend):
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4) * 10
    out = run("zoom", x, backend, params={"factor": 2.0})
    # centre (1.5, 1.5); output (0, 0) samples (0.75, 0.75): bilinear of 0,10,40,50
    expected = 0.25 * 0.25 * 0 + 0.75 * 0.25 * 10 + 0.25 * 0.75 * 40 + 0.75 * 0.75 * 50
    assert out[0, 0, 0, 0].item() == pytest.approx(expected)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_apply_mask_transforms_only_selected_rows(backend):
    x = images((5, 3, 8, 8))
    mask = torch.tensor([True, False, True, False, False])
    for name in ["noise", "rot90", "blur", "hue180"]:
        y = run(name, x, backend, apply=mask, standardize="per-image")
        full = run(name, x, backend, standardize="per-image")
        clean = run("identity", x, backend, standardize="per-image")
        assert torch.equal(y[mask], full[mask]) and torch.equal(y[~mask], clean[~mask]), name


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_standardization_modes(backend):
    x = images((3, 3, 10, 9))
    y = run("identity", x, backend, standardize="per-image")
    xd = x.double()
    mean = xd.mean(dim=(1, 2, 3), keepdim=True)
    std = xd.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
    torch.testing.assert_close(y.double(), (xd - mean) / std, rtol=1e-5, atol=1e-5)
    constant = torch.full((2, 1, 4, 4), 9, dtype=torch.uint8)
    assert torch.equal(run("identity", constant, backend, standardize="per-image"),
                       torch.zeros(2, 1, 4, 4))  # fmt: skip
    # std below 1/sqrt(N): divided by 1/sqrt(N) instead (tf.image.per_image_standardization)
    tiny = torch.zeros(1, 1, 10, 10)
    tiny[0, 0, 0, 0] = 0.5
    out = run("identity", tiny, backend, standardize="per-image")
    assert out[0, 0, 0, 0].item() == pytest.approx((0.5 - 0.005) * 10.0, rel=1e-6)
    fixed = run("invert", x, backend, standardize=([100.0, 110.0, 120.0], [50.0, 60.0, 70.0]))
    m = torch.tensor([100.0, 110.0, 120.0]).view(1, 3, 1, 1)
    s = torch.tensor([50.0, 60.0, 70.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(fixed, (255.0 - x.float() - m) / s, rtol=1e-6, atol=1e-6)
    scalar = run("identity", x, backend, standardize=(128.0, 64.0))
    torch.testing.assert_close(scalar, (x.float() - 128.0) / 64.0)


def test_uint8_and_integer_float_inputs_agree():
    x = images((4, 3, 13, 12))
    for name in ALL:
        a, b = run(name, x, standardize="per-image"), run(name, x.float(), standardize="per-image")
        assert torch.equal(a, b), name


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_out_buffer_is_filled_and_returned(backend):
    x = images((3, 3, 8, 6))
    expected = run("blur", x, backend, standardize="per-image")
    buf = torch.full((3, 3, 8, 6), float("nan"))
    got = transforms.get("blur")(x, backend=backend, out=buf)
    assert got is buf and torch.equal(buf, expected)
    for bad, message in [
        (torch.zeros(3, 3, 8, 5), "shape"),
        (torch.zeros(3, 3, 8, 6, dtype=torch.float64), "float32"),
        (torch.zeros(3, 3, 6, 8).transpose(2, 3), "contiguous"),
    ]:
        with pytest.raises((ValueError, TypeError), match=message):
            transforms.get("blur")(x, backend=backend, out=bad)
    xf = x.float()
    with pytest.raises(ValueError, match="share memory"):
        transforms.get("blur")(xf, backend=backend, out=xf)


def test_float_inputs_are_clamped_after_the_transformation():
    x = torch.tensor([[[[-50.0, 300.0, 100.0]]]])
    assert run("identity", x)[0, 0, 0].tolist() == [0.0, 255.0, 100.0]
    assert run("invert", x)[0, 0, 0].tolist() == [255.0, 0.0, 155.0]


def test_kernel_uses_every_thread_count_identically():
    x = images((9, 3, 20, 17))
    threads = torch.get_num_threads()
    a = run("blur", x, standardize="per-image")
    torch.set_num_threads(1)
    try:
        b = run("blur", x, standardize="per-image")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(a, b)


# ------------------------------------------------------------------ CUDA
@pytest.mark.requires_cuda
@pytest.mark.parametrize("name", ALL)
@settings(max_examples=8)
@given(data=st.data())
def test_cuda_equals_reference(name, data, cuda_device):
    x, kw = data.draw(transform_cases(name))
    expected = run(name, x, "reference", **dict(kw))
    cuda_kw = {k: (v.to(cuda_device) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    got = run(name, x.to(cuda_device), "cuda", **cuda_kw)
    assert got.device == cuda_device
    # The block reduction sums in another order than the CPU: per-image statistics may
    # differ in the last bit, so exactness is required only without them.
    if name in EXACT and kw["standardize"] != "per-image":
        assert torch.equal(got.cpu(), expected)
    else:
        torch.testing.assert_close(got.cpu(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.requires_cuda
def test_cuda_noise_matches_cpu_within_1e6(cuda_device):
    x = torch.full((4, 3, 33, 17), 128.0)
    ids = torch.tensor([0, 5, 2**40, -3])
    cpu = run("noise", x, "cpu", seed=11, index=ids, params={"sigma": 1.0})
    gpu = run("noise", x.to(cuda_device), "cuda", seed=11, index=ids.to(cuda_device),
              params={"sigma": 1.0})  # fmt: skip
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=2e-5)  # ulp of 128 is 1.5e-5
    sp = run("saltpepper", x.to(cuda_device), "cuda", seed=11, index=ids.to(cuda_device))
    assert torch.equal(sp.cpu(), run("saltpepper", x, "cpu", seed=11, index=ids))


@pytest.mark.requires_cuda
@pytest.mark.parametrize("width", [1536, 2048, 4096, 12272])
def test_cuda_blur_of_wide_images(width, cuda_device):
    """Widths whose row buffers fill the block's shared memory (the static reduction scratch
    included): the launch must fit, and agree with the CPU kernel."""
    x = torch.rand(2, 1, 3, width, generator=torch.Generator().manual_seed(width)) * 255
    cpu = run("blur", x, "cpu", params={"sigma": 1.5})
    gpu = run("blur", x.to(cuda_device), "cuda", params={"sigma": 1.5})
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="12272"):
        run("blur", torch.zeros(1, 1, 2, 12273, device=cuda_device), "cuda")

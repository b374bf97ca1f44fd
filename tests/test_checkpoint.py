"""invfast.core.checkpoint: plain data only, weights_only loading, every bad file refused."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from invfast.core import checkpoint, models

pytestmark = pytest.mark.usefixtures("one_thread")


class NotPlainData:
    """A pickled object a malicious or careless checkpoint could carry."""

    def __reduce__(self):
        return (print, ("this must never run",))


def make_checkpoint(path: Path, **overrides) -> Path:
    torch.manual_seed(0)
    model = models.build("convnet-small", 4, 3, 16, width=4, hidden=8)
    args = dict(
        arch="convnet-small", arch_kwargs={"width": 4, "hidden": 8},
        state_dict=model.state_dict(), num_classes=4, in_channels=3, image_size=16,
        classes=["a", "b", "c", "d"],
        data={"spec": "synthetic", "options": {"image_size": 16, "split_seed": 0}},
        transform={"name": "blur", "params": {"sigma": 1.5}}, seen_transformed=[0, 2],
        seed=7, metrics={"test": {"clean_accuracy": 0.5, "within_accuracy": None}},
        training={"lr": 1e-3},
    )  # fmt: skip
    args.update(overrides)
    return checkpoint.save(path, **args)


def test_round_trip_rebuilds_the_same_network(tmp_path):
    path = make_checkpoint(tmp_path / "ckpt.pt")
    raw = torch.load(path, weights_only=True)  # plain data: the strict loader accepts it
    assert raw["format"] == checkpoint.FORMAT
    ckpt = checkpoint.load(path)
    assert ckpt["arch"]["name"] == "convnet-small" and ckpt["seen_transformed"] == [0, 2]
    assert ckpt["transform"] == {"name": "blur", "params": {"sigma": 1.5}}
    assert ckpt["input"] == {"image_size": 16, "channels": 3, "standardize": "per-image"}
    assert checkpoint.standardization(ckpt) == "per-image"
    model = checkpoint.build_model(ckpt)
    assert not model.training
    torch.manual_seed(0)
    reference = models.build("convnet-small", 4, 3, 16, width=4, hidden=8).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def test_save_is_atomic_and_refuses_objects(tmp_path):
    path = make_checkpoint(tmp_path / "ckpt.pt")
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"metrics.*'when'.*PosixPath"):
        make_checkpoint(path, metrics={"when": Path("/tmp")})
    assert path.read_bytes() == before  # the old checkpoint is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary left behind
    with pytest.raises(ValueError, match="unknown architecture"):
        make_checkpoint(tmp_path / "x.pt", arch="vgg")


def _write_dict(path: Path, ckpt: dict) -> Path:
    torch.save(ckpt, path)
    return path


@pytest.fixture
def good(tmp_path) -> tuple[Path, dict]:
    path = make_checkpoint(tmp_path / "good.pt")
    return path, torch.load(path, weights_only=True)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ValueError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "nope.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty file"):
        checkpoint.load(tmp_path / "empty.pt")


def test_truncated_checkpoint(tmp_path, good):
    path, _ = good
    data = path.read_bytes()
    for keep in (len(data) // 3, len(data) - 30):
        (tmp_path / "cut.pt").write_bytes(data[:keep])
        with pytest.raises(ValueError, match="corrupt or truncated") as info:
            checkpoint.load(tmp_path / "cut.pt")
        assert "\n" not in str(info.value)


def test_garbage_and_plain_pickle_files(tmp_path):
    (tmp_path / "noise.pt").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        checkpoint.load(tmp_path / "noise.pt")
    with open(tmp_path / "legacy.pt", "wb") as handle:
        pickle.dump({"format": checkpoint.FORMAT}, handle)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        checkpoint.load(tmp_path / "legacy.pt")


def test_corrupt_weights_are_detected(tmp_path, good):
    _, ckpt = good
    name = next(iter(ckpt["state_dict"]))
    ckpt["state_dict"][name] = ckpt["state_dict"][name].clone()
    ckpt["state_dict"][name].view(-1)[0] += 1.0  # one weight changed, hash not updated
    with pytest.raises(ValueError, match="SHA-256 does not match"):
        checkpoint.load(_write_dict(tmp_path / "flip.pt", ckpt))
    # a corrupted byte inside the zip member holding the tensors
    path = make_checkpoint(tmp_path / "bytes.pt")
    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)
    raw = bytearray(path.read_bytes())
    offset = member.header_offset + 30 + len(member.filename) + len(member.extra) + 8
    raw[offset] ^= 0xFF
    (tmp_path / "bytes.pt").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        checkpoint.load(tmp_path / "bytes.pt")


def test_pickled_objects_are_refused_without_running_them(tmp_path, good, capsys):
    _, ckpt = good
    ckpt["metrics"]["payload"] = NotPlainData()
    path = _write_dict(tmp_path / "evil.pt", ckpt)
    with pytest.raises(ValueError, match="holds pickled Python objects"):
        checkpoint.load(path)
    assert "must never run" not in capsys.readouterr().out


def test_unknown_architecture_and_foreign_dicts(tmp_path, good):
    _, ckpt = good
    ckpt["arch"]["name"] = "vgg11"
    with pytest.raises(ValueError, match=r"unknown architecture 'vgg11'; known: .*resnet18"):
        checkpoint.load(_write_dict(tmp_path / "vgg.pt", ckpt))
    with pytest.raises(ValueError, match="not an invfast checkpoint"):
        checkpoint.load(_write_dict(tmp_path / "sd.pt", {"fc.weight": torch.zeros(2, 2)}))
    with pytest.raises(ValueError, match="not an invfast checkpoint"):
        checkpoint.load(_write_dict(tmp_path / "list.pt", [1, 2, 3]))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("format_version", 99, "newer than this invfast"),
        ("seen_transformed", [0, 9], "seen_transformed"),
        ("classes", ["a"], "classes"),
        ("transform", {"name": "blur"}, "transform"),
        ("seed", "zero", "seed"),
        ("state_dict", {}, "state_dict"),
    ],
)
def test_invalid_fields(tmp_path, good, field, value, message):
    _, ckpt = good
    ckpt[field] = value
    with pytest.raises(ValueError, match=message):
        checkpoint.load(_write_dict(tmp_path / "bad.pt", ckpt))


def test_weights_that_do_not_fit_the_architecture(tmp_path, good):
    _, ckpt = good
    ckpt["arch"]["kwargs"] = {"width": 8, "hidden": 8}  # state dict is for width 4
    path = _write_dict(tmp_path / "shape.pt", ckpt)
    loaded = checkpoint.load(path)
    with pytest.raises(ValueError, match=r"do not fit architecture 'convnet-small'.*wrong shape"):
        checkpoint.build_model(loaded)
    del ckpt["state_dict"]["classifier.fc5.bias"]
    ckpt["arch"]["kwargs"] = {"width": 4, "hidden": 8}
    ckpt["state_dict_sha256"] = checkpoint.state_dict_sha256(ckpt["state_dict"])
    with pytest.raises(ValueError, match=r"missing \['classifier.fc5.bias'\]"):
        checkpoint.build_model(checkpoint.load(_write_dict(tmp_path / "missing.pt", ckpt)))


def test_non_finite_weights_are_refused(tmp_path, good):
    _, ckpt = good
    name = next(iter(ckpt["state_dict"]))
    ckpt["state_dict"][name] = torch.full_like(ckpt["state_dict"][name], float("nan"))
    ckpt["state_dict_sha256"] = checkpoint.state_dict_sha256(ckpt["state_dict"])
    with pytest.raises(ValueError, match="not finite"):
        checkpoint.load(_write_dict(tmp_path / "nan.pt", ckpt))


# ------------------------------------------------------------ checkpoint → data → input


@pytest.mark.parametrize(
    "standardize",
    ["per-image", {"mean": [101.3, 77.0, 12.5], "std": [30.7, 3.1, 64.0]}],
    ids=["per-image", "fixed"],
)
def test_preprocess_is_the_kernels_arithmetic_bit_for_bit(tmp_path, standardize):
    from invfast import kernels
    from invfast.kernels import reference

    path = make_checkpoint(tmp_path / "c.pt", standardize=standardize)
    ckpt = checkpoint.load(path)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5, 3, 16, 16), generator=gen, dtype=torch.uint8)
    got = checkpoint.preprocess(ckpt)(x)
    spec = checkpoint.standardization(ckpt)
    if not isinstance(spec, str):
        spec = (torch.tensor(spec[0]), torch.tensor(spec[1]))
    for backend in ("cpu", "reference"):
        want = kernels.image_transform(x, "identity", {}, standardize=spec, backend=backend)
        assert torch.equal(got, want), backend
    if not isinstance(spec, str):  # (x − mean) · float32(1 / std), not (x − mean) / std
        inv = (1.0 / spec[1].double()).float().view(1, 3, 1, 1)
        assert torch.equal(got, (x.float() - spec[0].view(1, 3, 1, 1)) * inv)
    assert torch.equal(got, reference.image_transform(x, "identity", {}, standardize=spec))


def test_evaluation_data_reproduces_the_recorded_protocol(tmp_path):
    recipe = {"spec": "synthetic", "options": {"image_size": 12, "synthetic_classes": 5,
              "synthetic_per_class": 6, "pad_to": 16, "leave_out": [2]}}  # fmt: skip
    path = make_checkpoint(tmp_path / "c.pt", data=recipe)
    dataset, images = checkpoint.evaluation_data(checkpoint.load(path))
    assert dataset.options["pad_to"] == 16 and dataset.options["leave_out"] == [2]
    assert images.image_size == 16 and dataset.num_classes == 4
    assert set(images.labels.tolist()) == {0, 1, 2, 3}
    assert int(images.images[:, :, :2].amax()) == 0  # the zero frame of the padding
    # an old P3 checkpoint recorded the protocol outside the data options
    legacy = {"spec": "synthetic", "options": {"image_size": 12, "synthetic_classes": 5,
              "synthetic_per_class": 6}}  # fmt: skip
    old = make_checkpoint(tmp_path / "old.pt", data=legacy,
                          extra={"p3": {"protocol": True, "left_out": [2]}})  # fmt: skip
    _, again = checkpoint.evaluation_data(checkpoint.load(old))
    assert torch.equal(again.images, images.images) and torch.equal(again.labels, images.labels)


def test_evaluation_data_refuses_images_the_model_cannot_take(tmp_path):
    recipe = {"spec": "synthetic", "options": {"image_size": 20}}
    path = make_checkpoint(tmp_path / "c.pt", data=recipe)
    with pytest.raises(ValueError, match="classifier takes 3×16×16"):
        checkpoint.evaluation_data(checkpoint.load(path))

"""invfast.core.data: every loader on files the tests make, the split rule, batches with ids."""

from __future__ import annotations

import gzip
import hashlib
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from invfast.core import data
from invfast.core.data import _download

# ---- helpers: write IDX files ---------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    assert array.dtype == np.uint8
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    raw = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def small_digits(n: int, size: int = 6, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    y = (np.arange(n) % classes).astype(np.uint8)
    return x, y


def write_mnist_folder(folder: Path, gz: bool, n_train=12, n_test=6) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    x, y = small_digits(n_train, seed=1)
    xt, yt = small_digits(n_test, seed=2)
    files = {}
    for stem, array in (
        ("train-images-idx3-ubyte", x), ("train-labels-idx1-ubyte", y),
        ("t10k-images-idx3-ubyte", xt), ("t10k-labels-idx1-ubyte", yt),
    ):  # fmt: skip
        files[stem] = write_idx(folder / stem, array, gz)
    return {"x": x, "y": y, "x_test": xt, "y_test": yt, "files": files}


# ---- synthetic -------------------------------------------------------------------------


def test_synthetic_is_deterministic_and_seeded():
    a = data.load("synthetic", synthetic_classes=10, synthetic_per_class=6, image_size=16)
    b = data.load("synthetic", synthetic_classes=10, synthetic_per_class=6, image_size=16)
    c = data.load(
        "synthetic", synthetic_classes=10, synthetic_per_class=6, image_size=16, synthetic_seed=1
    )
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.ids, b.test.ids)
    assert not torch.equal(a.train.images, c.train.images)
    assert a.train.images.dtype == torch.uint8 and a.train.images.shape[1:] == (3, 16, 16)
    assert a.num_classes == 10 and len(set(a.classes)) == 10


def test_synthetic_classes_are_distinct_and_vary_within():
    ds = data.load("synthetic", synthetic_per_class=40, image_size=24)
    assert ds.num_classes >= 10
    x = ds.train.images.float()
    labels = ds.train.labels
    # within-class variation: images of one class differ a lot from each other
    first = x[labels == 0]
    assert (first[0] - first[1]).abs().mean() > 20
    # classes are separable by shape: a nearest-centroid classifier on grey-level
    # foreground masks is far above chance (colours are random, so use local contrast)
    grey = x.mean(1)
    contrast = (grey - grey.mean((1, 2), keepdim=True)).abs()
    contrast = contrast / contrast.flatten(1).amax(1).clamp_min(1)[:, None, None]
    centroids = torch.stack([contrast[labels == c].mean(0) for c in range(ds.num_classes)])
    test_grey = ds.test.images.float().mean(1)
    test_c = (test_grey - test_grey.mean((1, 2), keepdim=True)).abs()
    test_c = test_c / test_c.flatten(1).amax(1).clamp_min(1)[:, None, None]
    distances = (test_c[:, None] - centroids[None]).square().flatten(2).sum(2)
    accuracy = (distances.argmin(1) == ds.test.labels).float().mean()
    assert accuracy > 3.0 / ds.num_classes


def test_synthetic_ids_unique_and_split_per_class():
    ds = data.load("synthetic", synthetic_classes=12, synthetic_per_class=10, image_size=8)
    ids = torch.cat([ds.train.ids, ds.test.ids])
    assert len(torch.unique(ids)) == len(ids) == 120
    assert torch.equal(ds.test.class_counts(12), torch.full((12,), 2))  # round(0.2 * 10)
    other = data.load(
        "synthetic", synthetic_classes=12, synthetic_per_class=10, image_size=8, split_seed=5
    )
    assert not torch.equal(ds.test.ids, other.test.ids)


# ---- the split rule --------------------------------------------------------------------


def test_split_per_class_rule():
    labels = torch.tensor([0] * 10 + [1] * 2 + [2] * 1 + [3] * 7)
    kept, held = data.split_per_class(labels, 0.3, seed=3)
    assert len(set(kept.tolist()) & set(held.tolist())) == 0
    assert sorted(kept.tolist() + held.tolist()) == list(range(len(labels)))
    counts = torch.bincount(labels[held], minlength=4).tolist()
    assert counts == [3, 1, 0, 2]  # round(0.3 n), at least 1 and never all when n >= 2
    again = data.split_per_class(labels, 0.3, seed=3)
    assert torch.equal(again[1], held)
    assert any(
        not torch.equal(data.split_per_class(labels, 0.3, seed=s)[1], held) for s in range(4, 9)
    )
    # a class's split does not depend on the other classes
    only_zero = data.split_per_class(labels[:10], 0.3, seed=3)[1]
    assert torch.equal(only_zero, held[labels[held] == 0])
    with pytest.raises(ValueError, match="fraction"):
        data.split_per_class(labels, 1.0, seed=0)


# ---- IDX -------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_keeps_official_split(tmp_path, gz):
    made = write_mnist_folder(tmp_path / "m", gz)
    ds = data.load(f"idx:{tmp_path / 'm'}")
    assert ds.train.images.shape == (12, 1, 6, 6) and ds.test.images.shape == (6, 1, 6, 6)
    assert np.array_equal(ds.train.images[:, 0].numpy(), made["x"])
    assert np.array_equal(ds.test.labels.numpy(), made["y_test"])
    assert ds.train.ids.tolist() == list(range(12)) and ds.test.ids.tolist() == list(range(12, 18))


def test_idx_single_file_is_split_per_class(tmp_path):
    x, y = small_digits(30)
    images = write_idx(tmp_path / "my-images-idx3-ubyte", x, gz=True)
    write_idx(tmp_path / "my-labels-idx1-ubyte", y, gz=True)
    ds = data.load(f"idx:{images}", test_fraction=0.2)
    assert len(ds.train) + len(ds.test) == 30
    assert ds.test.class_counts(3).tolist() == [2, 2, 2]
    for split in (ds.train, ds.test):
        assert np.array_equal(split.images[:, 0].numpy(), x[split.ids.numpy()])


def test_idx_corrupt_files_are_refused(tmp_path):
    made = write_mnist_folder(tmp_path / "m", gz=False)
    path = made["files"]["train-images-idx3-ubyte"]
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        data.load(f"idx:{tmp_path / 'm'}")
    path.write_bytes(b"\x01\x02\x03\x04garbage")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.load(f"idx:{tmp_path / 'm'}")
    (tmp_path / "bad-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    (tmp_path / "bad-labels-idx1-ubyte.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="gzip"):
        data.load(f"idx:{tmp_path / 'bad-images-idx3-ubyte.gz'}")
    with pytest.raises(ValueError, match="missing"):
        data.load(f"idx:{tmp_path}")


# ---- npz -------------------------------------------------------------------------------


def test_npz_grey_and_rgb(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 5, 7, 3), dtype=np.uint8)  # non-square: centre crop to 5
    y = np.array([7, 3] * 10)
    np.savez(tmp_path / "rgb.npz", x=x, y=y)
    ds = data.load(f"npz:{tmp_path / 'rgb.npz'}")
    assert ds.classes == ["3", "7"] and ds.channels == 3 and ds.image_size == 5
    for split in (ds.train, ds.test):
        expected = torch.from_numpy(x[split.ids.numpy()]).permute(0, 3, 1, 2)[:, :, :, 1:6]
        assert torch.equal(split.images, expected)
        assert torch.equal(split.labels, torch.from_numpy((y[split.ids.numpy()] == 7) * 1))
    grey = data.load(f"npz:{tmp_path / 'rgb.npz'}", channels=1)
    assert grey.channels == 1

    np.savez(tmp_path / "grey.npz", x=x[..., 0], y=y, x_test=x[:4, ..., 0], y_test=y[:4])
    ds = data.load(f"npz:{tmp_path / 'grey.npz'}", image_size=4)
    assert len(ds.train) == 20 and len(ds.test) == 4 and ds.train.images.shape[1:] == (1, 4, 4)


def test_npz_bad_arrays_are_refused(tmp_path):
    np.savez(tmp_path / "f.npz", x=np.zeros((4, 3, 3), np.float32), y=np.arange(4))
    with pytest.raises(ValueError, match="uint8"):
        data.load(f"npz:{tmp_path / 'f.npz'}")
    np.savez(tmp_path / "n.npz", images=np.zeros((4, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="needs arrays 'x' and 'y'"):
        data.load(f"npz:{tmp_path / 'n.npz'}")
    np.savez(tmp_path / "l.npz", x=np.zeros((4, 3, 3), np.uint8), y=np.arange(3))
    with pytest.raises(ValueError, match="shape"):
        data.load(f"npz:{tmp_path / 'l.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable npz"):
        data.load(f"npz:{tmp_path / 'junk.npz'}")


# ---- image folders ---------------------------------------------------------------------


def make_image_folder(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog", "emu"]):
        (root / name).mkdir(parents=True)
        for i in range(5):
            h, w = (10, 14) if i % 2 else (12, 12)
            noise = rng.integers(-10, 11, (h, w, 3))
            # a flat colour whose red channel tells the class, plus noise
            array = (np.array([40 * c + 20, 128, 200]) + noise).astype(np.uint8)
            suffix = ".png" if i % 3 else ".jpg"
            Image.fromarray(array).save(root / name / f"img{i}{suffix}")
    (root / "cat" / "notes.txt").write_text("not an image")


def test_image_folder_decodes_resizes_and_batches(tmp_path):
    make_image_folder(tmp_path / "faces")
    ds = data.load(f"imagefolder:{tmp_path / 'faces'}", image_size=8, test_fraction=0.4)
    assert ds.classes == ["cat", "dog", "emu"]
    assert isinstance(ds.train, data.FileImageSet)
    assert len(ds.train) == 9 and len(ds.test) == 6
    batches = list(data.loader(ds.train, 4))
    assert [len(b.labels) for b in batches] == [4, 4, 1]
    batch = batches[0]
    assert batch.images.dtype == torch.uint8 and batch.images.shape == (4, 3, 8, 8)
    red = batch.images[:, 0].float().mean((1, 2))
    assert torch.allclose(red, 40.0 * batch.labels.float() + 20, atol=8)  # JPEG is lossy
    grey = data.load(f"imagefolder:{tmp_path / 'faces'}", image_size=8, channels=1)
    assert grey.train[0][0].shape == (1, 8, 8)
    default = data.load(f"imagefolder:{tmp_path / 'faces'}")
    assert default.image_size == 12  # the first image's shorter side


def test_image_folder_with_worker_processes(tmp_path):
    make_image_folder(tmp_path / "f")
    ds = data.load(f"imagefolder:{tmp_path / 'f'}", image_size=6)
    serial = list(data.loader(ds.test, 2))
    parallel = list(data.loader(ds.test, 2, workers=2))
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a.images, b.images) and torch.equal(a.ids, b.ids)


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="no such directory"):
        data.load(f"imagefolder:{tmp_path / 'missing'}")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds no images"):
        data.load(f"imagefolder:{tmp_path / 'empty'}")
    (tmp_path / "bad" / "a").mkdir(parents=True)
    (tmp_path / "bad" / "a" / "x.png").write_bytes(b"not a png")
    (tmp_path / "bad" / "a" / "y.png").write_bytes(b"not a png")
    ds = data.load(f"imagefolder:{tmp_path / 'bad'}", image_size=4)
    with pytest.raises(ValueError, match="cannot decode image"):
        list(data.loader(ds.train, 2))


# ---- mnist / fashion-mnist downloads (a local file:// mirror, never the network) --------


@pytest.fixture
def mnist_mirror(tmp_path, monkeypatch):
    made = write_mnist_folder(tmp_path / "mirror", gz=True)
    checksums = {
        path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in made["files"].values()
    }
    monkeypatch.setitem(_download.FILES, "mnist", checksums)
    return tmp_path / "mirror", made


def test_mnist_downloads_verifies_and_caches(tmp_path, mnist_mirror):
    mirror, made = mnist_mirror
    cache = tmp_path / "cache"
    ds = data.load("mnist", cache_dir=cache, mirror=mirror.as_uri())
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(_download.FILES["mnist"])
    assert np.array_equal(ds.train.images[:, 0].numpy(), made["x"])
    assert ds.classes == [str(d) for d in range(10)]
    for path in mirror.iterdir():  # second time: served from the cache
        path.unlink()
    again = data.load("mnist", cache_dir=cache, mirror=mirror.as_uri())
    assert torch.equal(again.test.images, ds.test.images)
    assert "mnist" not in data.load("synthetic", synthetic_per_class=2, image_size=8).spec


def test_mnist_checksum_mismatch_is_refused(tmp_path, mnist_mirror, monkeypatch):
    mirror, _ = mnist_mirror
    bad = dict(_download.FILES["mnist"])
    bad["t10k-labels-idx1-ubyte.gz"] = "0" * 32
    monkeypatch.setitem(_download.FILES, "mnist", bad)
    with pytest.raises(ValueError, match="checksum mismatch"):
        data.load("mnist", cache_dir=tmp_path / "c", mirror=mirror.as_uri())
    assert not (tmp_path / "c" / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()  # no partial
    # a corrupt file already in the cache is refused, not reused
    target = tmp_path / "c" / "mnist" / "train-images-idx3-ubyte.gz"
    target.write_bytes(b"tampered")
    with pytest.raises(ValueError, match=r"checksum mismatch.*delete it"):
        data.load("mnist", cache_dir=tmp_path / "c", mirror=mirror.as_uri())


def test_offline_download_is_one_clear_error(tmp_path):
    # port 9 on localhost refuses the connection at once: no traffic leaves the machine
    with pytest.raises(OSError, match=r"cannot download fashion-mnist.*offline") as info:
        data.load("fashion-mnist", cache_dir=tmp_path, mirror="http://127.0.0.1:9/")
    assert "\n" not in str(info.value)
    missing = tmp_path / "nothing"
    with pytest.raises(OSError, match="cannot download mnist"):
        data.load("mnist", cache_dir=tmp_path, mirror=missing.as_uri())


# ---- digits (scikit-learn, optional) ---------------------------------------------------


def test_digits_without_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ValueError, match=r"scikit-learn.*invfast\[digits\]"):
        data.load("digits")


def test_digits_conversion(monkeypatch):
    images = np.tile(np.arange(17, dtype=np.float64)[:, None, None], (1, 8, 8))[[0, 8, 16] * 4]
    fake = types.ModuleType("sklearn.datasets")
    fake.load_digits = lambda: types.SimpleNamespace(images=images, target=np.arange(12) % 3)
    monkeypatch.setitem(sys.modules, "sklearn", types.ModuleType("sklearn"))
    monkeypatch.setitem(sys.modules, "sklearn.datasets", fake)
    ds = data.load("digits", test_fraction=0.25)
    assert ds.channels == 1 and ds.image_size == 8 and ds.num_classes == 3
    everything = torch.cat([ds.train.images, ds.test.images])
    assert sorted(torch.unique(everything).tolist()) == [0, 128, 255]  # 0, 8, 16 of 16


# ---- loader, sampler, bad specs --------------------------------------------------------


def test_loader_batches_carry_ids_and_shuffle_by_epoch():
    ds = data.load("synthetic", synthetic_classes=4, synthetic_per_class=10, image_size=8)
    batches = data.loader(ds.train, 5, shuffle=True, seed=1)
    first = torch.cat([b.ids for b in batches])
    again = torch.cat([b.ids for b in batches])
    batches.sampler.set_epoch(1)
    second = torch.cat([b.ids for b in batches])
    assert torch.equal(first, again) and not torch.equal(first, second)
    assert sorted(first.tolist()) == sorted(ds.train.ids.tolist())
    for batch in data.loader(ds.train, 7, shuffle=True):
        position = {int(i): k for k, i in enumerate(ds.train.ids)}
        for image, label, image_id in zip(batch.images, batch.labels, batch.ids, strict=True):
            k = position[int(image_id)]
            assert torch.equal(image, ds.train.images[k]) and label == ds.train.labels[k]


@pytest.mark.parametrize("n", [9, 10, 1])
def test_sampler_shards(n):
    shards = [
        list(data.EpochSampler(n, shuffle=True, seed=2, rank=r, world_size=3)) for r in range(3)
    ]
    assert sorted(i for s in shards for i in s) == list(range(n))  # evaluation: a partition
    padded = [
        list(data.EpochSampler(n, shuffle=True, seed=2, rank=r, world_size=3, pad=True))
        for r in range(3)
    ]
    assert len({len(p) for p in padded}) == 1 and {i for p in padded for i in p} == set(range(n))


def test_bad_specs_and_options():
    with pytest.raises(ValueError, match="unknown data source 'cifar'"):
        data.load("cifar")
    with pytest.raises(ValueError, match="needs a path"):
        data.load("npz:")
    with pytest.raises(ValueError, match="takes no path"):
        data.load("mnist:/tmp")
    with pytest.raises(ValueError, match="synthetic_classes"):
        data.load("synthetic", synthetic_classes=99)
    with pytest.raises(ValueError, match="image_size"):
        data.load("synthetic", image_size=0)
    with pytest.raises(ValueError, match="test_fraction"):
        data.load("synthetic", test_fraction=1.5)
    with pytest.raises(ValueError, match="batch_size"):
        data.loader(data.load("synthetic", synthetic_per_class=2, image_size=8).train, 0)


def test_recipe_reproduces_the_dataset():
    ds = data.load("synthetic", synthetic_classes=5, synthetic_per_class=8, image_size=12,
                   split_seed=4, max_per_class=5)  # fmt: skip
    recipe = ds.recipe()
    again = data.load(recipe["spec"], **recipe["options"])
    assert torch.equal(again.train.images, ds.train.images)
    assert torch.equal(again.test.ids, ds.test.ids)
    assert ds.train.class_counts(5).max() <= 5

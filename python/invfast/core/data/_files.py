"""Readers for image files on disk: IDX (MNIST format), npz archives, image folders."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

# IDX type codes (http://yann.lecun.com/exdb/mnist/ file format)
_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """One IDX file (gzipped when its name ends in .gz) as a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (gzip.BadGzipFile, EOFError) as exc:
        raise ValueError(f"{path}: not a readable gzip file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX header says shape {shape} ({expected} bytes) but the file holds "
            f"{len(raw) - header} bytes of data (truncated or corrupt)"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise ValueError(f"{images}: expected uint8 images [N, H, W], got {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{labels}: expected {len(x)} labels, got shape {y.shape}")
    return x, y


def read_idx_dataset(path: Path) -> dict[str, np.ndarray]:
    """``idx:PATH``: a directory with the four MNIST-named files (official train/test
    split), or one images file whose labels file has the same name with ``images-idx3``
    replaced by ``labels-idx1`` (split per class later)."""
    if path.is_dir():
        found = {key: _find(path, stem) for key, stem in IDX_FILES.items()}
        missing = [IDX_FILES[k] for k, v in found.items() if v is None]
        if missing:
            raise ValueError(f"idx:{path}: missing {', '.join(missing)} (.gz or not)")
        x, y = read_idx_pair(found["train_images"], found["train_labels"])
        xt, yt = read_idx_pair(found["test_images"], found["test_labels"])
        return {"x": x, "y": y, "x_test": xt, "y_test": yt}
    if not path.is_file():
        raise ValueError(f"idx:{path}: no such file or directory")
    if "images-idx3" not in path.name:
        raise ValueError(f"idx:{path}: expected a directory or a '*images-idx3*' file")
    labels = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
    if not labels.is_file():
        raise ValueError(f"idx:{path}: labels file {labels.name} not found beside it")
    x, y = read_idx_pair(path, labels)
    return {"x": x, "y": y}


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """``npz:PATH``: arrays ``x`` uint8 [N, H, W] or [N, H, W, C] and ``y`` int [N];
    optional ``x_test`` / ``y_test`` give an explicit test split."""
    if not path.is_file():
        raise ValueError(f"npz:{path}: no such file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"npz:{path}: not a readable npz archive ({exc})") from None
    with archive:
        keys = set(archive.files)
        if not {"x", "y"} <= keys:
            raise ValueError(f"npz:{path}: needs arrays 'x' and 'y', found {sorted(keys)}")
        out = {"x": archive["x"], "y": archive["y"]}
        if ("x_test" in keys) != ("y_test" in keys):
            raise ValueError(f"npz:{path}: 'x_test' and 'y_test' must come together")
        if "x_test" in keys:
            out["x_test"], out["y_test"] = archive["x_test"], archive["y_test"]
    for xk, yk in (("x", "y"), ("x_test", "y_test")):
        if xk not in out:
            continue
        x, y = out[xk], out[yk]
        if x.dtype != np.uint8 or x.ndim not in (3, 4):
            raise ValueError(
                f"npz:{path}: {xk} must be uint8 [N,H,W] or [N,H,W,C], got {x.dtype} {x.shape}"
            )
        if x.ndim == 4 and x.shape[3] not in (1, 3):
            raise ValueError(f"npz:{path}: {xk} must have 1 or 3 channels last, got {x.shape}")
        if not np.issubdtype(y.dtype, np.integer) or y.shape != (len(x),):
            raise ValueError(
                f"npz:{path}: {yk} must be integers of shape ({len(x)},), got {y.dtype} {y.shape}"
            )
    return out


def list_image_folder(path: Path) -> tuple[list[str], list[Path], list[int]]:
    """Class names (sorted sub-folder names), image files (sorted within a class), labels."""
    if not path.is_dir():
        raise ValueError(f"imagefolder:{path}: no such directory")
    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"imagefolder:{path}: no class sub-folders")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = sorted(
            p for p in (path / name).rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )  # fmt: skip
        if not found:
            raise ValueError(f"imagefolder:{path}: class folder {name!r} holds no images")
        files += found
        labels += [label] * len(found)
    return classes, files, labels


def decode_image(path: Path, channels: int, size: int | None) -> torch.Tensor:
    """uint8 [C, H, W]; with ``size``: shorter side resized to ``size`` (bilinear,
    anti-aliased), then the centre ``size`` × ``size`` crop."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL comes with matplotlib
        raise ValueError("imagefolder needs Pillow (installed with matplotlib)") from None
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB" if channels == 3 else "L"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot decode image ({exc})") from None
    x = torch.from_numpy(array.copy())
    x = x.permute(2, 0, 1) if x.dim() == 3 else x[None]
    if size is not None and tuple(x.shape[1:]) != (size, size):
        x = resize_center_crop(x[None], size)[0]
    return x


def resize_center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [B, C, H, W] → uint8 [B, C, size, size]: shorter side to ``size``, centre crop."""
    h, w = x.shape[2], x.shape[3]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    y = torch.nn.functional.interpolate(
        x.float(), size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False
    )
    top, left = (new_h - size) // 2, (new_w - size) // 2
    y = y[:, :, top : top + size, left : left + size]
    return y.round().clamp(0, 255).to(torch.uint8)

"""MNIST and Fashion-MNIST: download into a cache folder once, verify the published MD5s."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

# file name -> MD5 of the published gzip file (the files' identity; torchvision uses these)
FILES = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}

CLASSES = {
    "mnist": [str(d) for d in range(10)],
    "fashion-mnist": [
        "t-shirt", "trouser", "pullover", "dress", "coat",
        "sandal", "shirt", "sneaker", "bag", "ankle-boot",
    ],
}  # fmt: skip


def default_cache_dir() -> Path:
    """``$INVFAST_DATA`` if set, else ``$XDG_CACHE_HOME/invfast`` (``~/.cache/invfast``)."""
    if os.environ.get("INVFAST_DATA"):
        return Path(os.environ["INVFAST_DATA"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "invfast"


def md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, target: Path, expected_md5: str, timeout: float) -> None:
    """Download ``url`` to ``target`` atomically; ValueError when the MD5 differs."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
        got = md5(tmp)
        if got != expected_md5:
            raise ValueError(f"{url}: checksum mismatch (md5 {got}, expected {expected_md5})")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_files(
    name: str, cache_dir: Path | None = None, mirror: str | None = None, timeout: float = 30.0
) -> Path:
    """The folder holding the four verified files of ``name``, downloading what is missing.

    ``mirror`` (or ``$INVFAST_MNIST_MIRROR``) replaces the built-in base URLs, e.g. a local
    ``file://`` copy. A file present in the cache with a wrong MD5 is refused, not reused.
    """
    folder = (cache_dir or default_cache_dir()) / name
    mirror = mirror or os.environ.get("INVFAST_MNIST_MIRROR")
    bases = (mirror,) if mirror else MIRRORS[name]
    for file_name, expected in FILES[name].items():
        target = folder / file_name
        if target.is_file():
            if md5(target) != expected:
                raise ValueError(
                    f"{target}: checksum mismatch (corrupt download?); delete it to fetch again"
                )
            continue
        network_errors, checksum_errors = [], []
        for base in bases:
            url = base.rstrip("/") + "/" + file_name
            try:
                _fetch(url, target, expected, timeout)
                break
            except ValueError as exc:
                checksum_errors.append(str(exc))
            except OSError as exc:  # URLError and HTTPError are OSErrors
                network_errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
        else:
            if checksum_errors:
                raise ValueError(checksum_errors[0])
            raise OSError(
                f"cannot download {name} ({'; '.join(network_errors)}); offline? put the four "
                f"{name} .gz files in {folder} or pass a mirror"
            )
    return folder

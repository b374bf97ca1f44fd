"""Output files and folders that appear whole or not at all.

Every file invfast writes goes through :func:`atomic_path`: it is written to a temporary
file in the target's folder, flushed to disk and renamed over the target, so a reader
sees the old file or the complete new one, never a half-written one. Every output folder
goes through :func:`output_folder`: the command fills a temporary sibling folder, which
replaces the target only once everything in it is written; an error, Ctrl-C or a full
disk leave the previous output as it was. Files get the usual mode (0666 less the umask,
0644 by default), folders 0777 less the umask.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
FOLDER_MODE = 0o777 & ~_UMASK


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot sync a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends normally, the file
    written there is synced and renamed to ``path``. On an exception it is removed and
    ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode())


def json_ready(value: object) -> object:
    """A copy of ``value`` that strict JSON can hold: NaN and ±inf become None (JSON null,
    "undefined" in every invfast file), tuples become lists, keys become strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def write_json(path: str | os.PathLike, payload: Mapping) -> Path:
    """Write ``payload`` as strict, indented JSON atomically (NaN and inf as null)."""
    text = json.dumps(json_ready(payload), indent=2, allow_nan=False) + "\n"
    return write_text(path, text)


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_folder(
    out: str | os.PathLike, *, overwrite: bool, inputs: Iterable[str | os.PathLike] = ()
) -> Path:
    """``out`` as a Path, checked before any work: refused when it is a file, when it
    exists (unless ``overwrite``), when it is, contains or lies inside one of ``inputs``,
    and when its parent folder cannot be created or written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if out.exists() and not overwrite:
        raise ValueError(f"--out {out} exists; pass --overwrite to replace it")
    resolved = out.resolve()
    for item in inputs:
        source = Path(item).resolve()
        if _is_within(source, resolved) or _is_within(resolved, source):
            raise ValueError(
                f"--out {out} would replace the command's own input {item}; choose another folder"
            )
    parent = resolved.parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: no permission to write in {existing}")
    return out


@contextlib.contextmanager
def output_folder(
    out: str | os.PathLike, *, overwrite: bool, inputs: Iterable[str | os.PathLike] = ()
) -> Iterator[Path]:
    """Yield a temporary folder beside ``out`` to write a command's results into. When the
    block ends normally it becomes ``out`` (an old ``out`` is replaced at that moment,
    with ``overwrite``); on an exception it is removed and ``out`` is left as it was."""
    inputs = list(inputs)
    out = check_output_folder(out, overwrite=overwrite, inputs=inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        os.chmod(tmp, FOLDER_MODE)
        yield tmp
        install_folder(tmp, out, overwrite=overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def install_folder(tmp: Path, out: Path, *, overwrite: bool) -> None:
    """Rename the finished folder ``tmp`` to ``out``; an existing ``out`` (allowed only
    with ``overwrite``) is moved aside first and deleted once ``tmp`` is in place."""
    if not out.exists():
        try:
            os.rename(tmp, out)
        except OSError as exc:  # another process created ``out`` meanwhile
            raise ValueError(f"--out {out} was created by another process meanwhile") from exc
        _fsync_folder(out.parent)
        return
    if not overwrite:
        raise ValueError(f"--out {out} was created by another process meanwhile")
    trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    try:
        os.replace(out, trash / "old")
        os.replace(tmp, out)
        _fsync_folder(out.parent)
    finally:
        shutil.rmtree(trash, ignore_errors=True)

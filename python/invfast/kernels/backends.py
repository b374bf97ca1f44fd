"""Which kernel backends exist on this machine, and which one an op call uses.

``reference`` (pure PyTorch) is always there; ``cpu`` when ``invfast._C`` imported;
``cuda`` when ``invfast._cuda`` imported and a CUDA device answers. ``resolve`` picks
CUDA kernel → CPU kernel → reference by the tensors' device, or checks a forced choice.
"""

from __future__ import annotations

import functools
import importlib
import logging
from dataclasses import dataclass
from types import ModuleType

import torch

BACKENDS = ("reference", "cpu", "cuda")
_log = logging.getLogger("invfast")
_announced: set[str] = set()


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    detail: str  # device name or build details when available, the reason when not


@functools.cache
def _import(name: str) -> tuple[ModuleType | None, str]:
    try:
        return importlib.import_module(f"invfast.{name}"), ""
    except ImportError as exc:
        return None, str(exc)


def cpu_module() -> ModuleType | None:
    return _import("_C")[0]


def cuda_module() -> ModuleType | None:
    return _import("_cuda")[0]


@functools.cache
def cuda_device_count() -> tuple[int, str]:
    """(number of devices the invfast CUDA module sees, reason when zero)."""
    module, error = _import("_cuda")
    if module is None:
        return 0, _cuda_missing_reason(error)
    count, reason = module.device_status()
    if count == 0:
        return 0, f"CUDA module built, but {reason}"
    return count, ""


def _cuda_missing_reason(import_error: str) -> str:
    cpu = cpu_module()
    if cpu is not None:
        status = cpu.build_info()["cuda_status"]
        if status:
            return status
    return f"CUDA module not importable: {import_error}"


def status() -> list[BackendStatus]:
    """The state of every backend, for ``invfast backends`` and reports."""
    rows = [BackendStatus("reference", True, f"PyTorch {torch.__version__}")]
    cpu, cpu_error = _import("_C")
    if cpu is None:
        rows.append(BackendStatus("cpu", False, f"CPU module not importable: {cpu_error}"))
    else:
        openmp = "OpenMP" if cpu.build_info()["openmp"] else "no OpenMP (single thread)"
        rows.append(BackendStatus("cpu", True, f"{openmp}, {torch.get_num_threads()} threads"))
    count, reason = cuda_device_count()
    if count == 0:
        rows.append(BackendStatus("cuda", False, reason))
    else:
        module = cuda_module()
        names = ", ".join(f"cuda:{i} {module.device_name(i)}" for i in range(count))
        rows.append(BackendStatus("cuda", True, names))
    return rows


def resolve(backend: str | None, device: torch.device, op: str) -> str:
    """The backend that runs ``op`` on tensors of ``device``; ValueError if impossible."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(
            f"{op}: backend must be one of {', '.join(BACKENDS)} or None, got {backend!r}"
        )
    if backend is None:
        if device.type == "cuda" and cuda_device_count()[0] > 0:
            backend = "cuda"
        elif device.type == "cpu" and cpu_module() is not None:
            backend = "cpu"
        else:
            backend = "reference"
    elif backend == "cpu":
        if device.type != "cpu":
            raise ValueError(f"{op}: backend 'cpu' needs CPU tensors, got tensors on {device}")
        if cpu_module() is None:
            raise ValueError(f"{op}: backend 'cpu' is not available: {_import('_C')[1]}")
    elif backend == "cuda":
        if device.type != "cuda":
            raise ValueError(f"{op}: backend 'cuda' needs CUDA tensors, got tensors on {device}")
        count, reason = cuda_device_count()
        if count == 0:
            raise ValueError(f"{op}: backend 'cuda' is not available: {reason}")
    if backend not in _announced:
        _announced.add(backend)
        _log.info("invfast: using the %s backend", backend)
    return backend


def default_backend(device: torch.device | str = "cpu") -> str:
    """The backend ops would choose for tensors on ``device`` (recorded in reports)."""
    return resolve(None, torch.device(device), "default_backend")

"""How tensors reach the compiled modules: CPU buffers and CUDA device pointers.

The extension does not link libtorch. A CPU tensor crosses as a zero-copy NumPy view
(bfloat16 as its int16 bit pattern, with the dtype passed by name); a CUDA tensor as
its device address, with the device index and the caller's current stream.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import torch

from invfast.kernels import backends

DTYPE_NAMES = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.uint8: "uint8",
}


def dtype_name(t: torch.Tensor) -> str:
    return DTYPE_NAMES[t.dtype]


def cpu_buffer(t: torch.Tensor | None) -> np.ndarray | None:
    """Zero-copy NumPy view of a contiguous CPU tensor (None passes through)."""
    if t is None:
        return None
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.detach().numpy()


def cuda_ptr(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def cuda_stream(device: torch.device) -> int:
    return torch.cuda.current_stream(device).cuda_stream


def cuda_device_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def threads() -> int:
    return torch.get_num_threads()


def launch(
    which: str, name: str, device: torch.device, *, returns_status: bool = True, **arguments
) -> int:
    """Call kernel ``name`` of the CPU or CUDA module with keyword ``arguments``.

    Both modules name their parameters alike (``a``, ``rows``, ``neuron_max``, ...).
    Tensors (and None in a tensor's place) cross as CPU buffers or device pointers; they
    must be contiguous (CUDA copies of CPU parameter tensors are made on ``device``
    first). Every other argument passes as it is. Each module's own arguments are added:
    ``threads`` on the CPU; ``status`` (a device flag, when ``returns_status``), ``device``
    and ``stream`` on CUDA. Returns the kernel's activation status bits (0 when
    ``returns_status`` is False).
    """
    if which == "cpu":
        cpu_arguments = {key: _cpu_arg(v) for key, v in arguments.items()}
        result = getattr(cpu(), name)(**cpu_arguments, threads=threads())
        return int(result) if returns_status else 0
    flag = torch.zeros(1, dtype=torch.int32, device=device) if returns_status else None
    # CUDA copies of CPU tensors are freed when this returns: stream-ordered, so the kernel
    # still reads valid memory.
    values = {key: _cuda_arg(v, device) for key, v in arguments.items()}
    if flag is not None:
        values["status"] = flag
    pointers = {key: cuda_ptr(v) if _is_tensor_slot(v) else v for key, v in values.items()}
    getattr(cuda(), name)(**pointers, device=cuda_device_index(device), stream=cuda_stream(device))
    return int(flag.item()) if flag is not None else 0


def compiled(which: str) -> ModuleType:
    """The compiled module of backend ``which`` ("cpu" or "cuda"): its kernels and the
    constants they take (``NEURON_MODES``, ``ABLATE_MODES``, ``STANDARDIZE_MODES``, ...)."""
    return cpu() if which == "cpu" else cuda()


def _is_tensor_slot(v: object) -> bool:
    return v is None or isinstance(v, torch.Tensor)


def _cpu_arg(v: object) -> object:
    # No implicit .contiguous(): a copy of an output would swallow the kernel's writes.
    return cpu_buffer(v) if _is_tensor_slot(v) else v


def _cuda_arg(v: object, device: torch.device) -> object:
    if isinstance(v, torch.Tensor) and v.device != device:
        return v.to(device)  # CPU parameter tables: copied, never an output
    return v


def cpu():
    module = backends.cpu_module()
    assert module is not None, "backends.resolve() guarantees the CPU module"
    return module


def cuda():
    module = backends.cuda_module()
    assert module is not None, "backends.resolve() guarantees the CUDA module"
    return module

"""Fused image transformation (DESIGN.md §4): uint8/float → transform → clamp → standardize.

One kernel launch per batch on the CPU (OpenMP over images) or CUDA (one block per
image); ``invfast.reference.transforms`` is the pure-PyTorch twin. The public entry point
is ``invfast.transforms`` (names, parameters, groups); this module checks tensors and
dispatches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from invfast.kernels import _checks, backends
from invfast.kernels import _launch as _kernels
from invfast.kernels.reference import transforms as ref

IMAGE_DTYPES = (torch.uint8, torch.float32)


def check_images(op: str, x: object) -> torch.Tensor:
    x = _checks.tensor(op, "x", x)
    _checks.dtype(op, "x", x, IMAGE_DTYPES)
    if x.dim() != 4:
        raise ValueError(f"{op}: x must be [B, C, H, W], got shape {tuple(x.shape)}")
    if x.shape[1] < 1 or x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{op}: x must have C, H, W >= 1, got shape {tuple(x.shape)}")
    return x


def check_index(op: str, index: object, batch: int, device: torch.device) -> torch.Tensor:
    if index is None:
        return torch.arange(batch, dtype=torch.int64, device=device)
    index = _checks.tensor(op, "index", index)
    if index.dtype.is_floating_point or index.dtype == torch.bool or index.is_complex():
        raise TypeError(
            f"{op}: index must be an integer tensor (int64 image ids), got {index.dtype}"
        )
    if index.shape != (batch,):
        raise ValueError(
            f"{op}: index must have shape [{batch}] (one id per image), got {tuple(index.shape)}"
        )
    return index.detach().to(device=device, dtype=torch.int64).contiguous()


def check_apply(op: str, apply: object, batch: int, device: torch.device) -> torch.Tensor | None:
    if apply is None:
        return None
    apply = _checks.tensor(op, "apply", apply)
    if apply.dtype != torch.bool:
        raise TypeError(f"{op}: apply must be a bool tensor [B], got {apply.dtype}")
    if apply.shape != (batch,):
        raise ValueError(f"{op}: apply must have shape [{batch}], got {tuple(apply.shape)}")
    return apply.detach().to(device).contiguous()


def check_standardize(
    op: str, standardize: object, channels: int
) -> str | tuple[torch.Tensor, torch.Tensor]:
    """ "none" | "per-image" | (mean, std) with 1 or C finite values each, std > 0 (pixel units)."""
    if standardize is None:
        return "none"
    if isinstance(standardize, str):
        if standardize not in ("none", "per-image"):
            raise ValueError(
                f"{op}: standardize must be 'per-image', 'none' or (mean, std), got {standardize!r}"
            )
        return standardize
    if not isinstance(standardize, Sequence | torch.Tensor) or len(standardize) != 2:
        raise ValueError(
            f"{op}: standardize must be 'per-image', 'none' or a (mean, std) pair "
            f"of per-channel sequences, got {standardize!r}"
        )
    pair = []
    for what, seq in zip(("mean", "std"), standardize, strict=True):
        try:
            values = torch.as_tensor(seq, dtype=torch.float64).reshape(-1).cpu()
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{op}: standardize {what} must be numbers, got {seq!r}") from exc
        if values.numel() == 1:
            values = values.expand(channels)
        if values.numel() != channels:
            raise ValueError(
                f"{op}: standardize {what} needs 1 or C = {channels} values, got {values.numel()}"
            )
        if not bool(torch.isfinite(values).all()):
            raise ValueError(f"{op}: standardize {what} must be finite, got {values.tolist()}")
        pair.append(values)
    if not bool((pair[1] > 0).all()):
        raise ValueError(f"{op}: standardize std must be > 0, got {pair[1].tolist()}")
    return pair[0].to(torch.float32), pair[1].to(torch.float32)


def image_transform(
    x: torch.Tensor,
    name: str,
    params: dict,
    *,
    seed: int = 0,
    index: torch.Tensor | None = None,
    apply: torch.Tensor | None = None,
    standardize="per-image",
    backend: str | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Transform ``x`` [B, C, H, W] (uint8 or float32 in [0, 255]) by transformation ``name``.

    ``params`` are already validated by ``invfast.transforms.get`` (floats or [B] tensors).
    Returns float32 [B, C, H, W] on ``x.device``: transformed (rows where ``apply`` is
    True, all rows when it is None), clamped to [0, 255], standardized. ``out`` (a
    contiguous float32 tensor of x's shape and device, not aliasing x) is written and
    returned instead of a new tensor, so a training loop can reuse one buffer.
    """
    op = f"transform {name}"
    x = check_images(op, x)
    b, c, h, w = x.shape
    index = check_index(op, index, b, x.device)
    apply = check_apply(op, apply, b, x.device)
    std = check_standardize(op, standardize, c)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"{op}: seed must be an int, got {type(seed).__name__}")
    if out is not None:
        out = _checks.tensor(op, "out", out)
        _checks.same_device(op, "out", out, x.device)
        _checks.writable(op, "out", out, torch.float32, x.numel())
        if out.shape != x.shape:
            raise ValueError(f"{op}: out must have shape {tuple(x.shape)}, got {tuple(out.shape)}")
        if x.numel() and out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
            raise ValueError(f"{op}: out must not share memory with x")
    which = backends.resolve(backend, x.device, op)
    x = _checks.readable(x)
    if which == "reference":
        result = ref.image_transform(
            x, name, params, seed=seed, index=index, apply=apply, standardize=std
        )
        return result if out is None else out.copy_(result)

    if out is None:
        out = torch.empty((b, c, h, w), dtype=torch.float32, device=x.device)
    if b == 0:
        return out
    code, table, weights = ref.kernel_plan(name, params, b, c, h, w)
    if isinstance(std, str):
        mode = _kernels.compiled(which).STANDARDIZE_MODES[std]
        mean, inv_std = torch.zeros(c), torch.ones(c)
    else:
        mode = _kernels.compiled(which).STANDARDIZE_MODES["fixed"]
        mean, inv_std = std[0], (1.0 / std[1].double()).float()
    seed %= 1 << 64
    apply_u8 = None if apply is None else apply.to(torch.uint8)
    _kernels.launch(
        which, "image_transform", x.device, x=x, dtype=_kernels.dtype_name(x), batch=b,
        channels=c, height=h, width=w, op=code, table=table.contiguous(),
        weights=weights.contiguous(), taps=weights.shape[1], index=index, apply=apply_u8,
        seed=seed, standardize=mode, mean=mean.contiguous(), inv_std=inv_std.contiguous(),
        out=out, returns_status=False,
    )  # fmt: skip
    return out

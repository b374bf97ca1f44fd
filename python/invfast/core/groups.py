"""The finite groups of P3 (docs/p3.md) acting on images ``[..., H, W]``.

- ``R4``: rotations by k·90°, anticlockwise as displayed (row 0 on top), k = 0..3;
  ``act(x, k) == torch.rot90(x, k, dims=(-2, -1))``. Needs square images.
- ``T3``: cyclic shifts along x (the last axis) by k·W/3 pixels to the right, k = 0..2;
  ``act(x, k) == torch.roll(x, k * W // 3, dims=-1)``. Needs W divisible by 3.

Both are cyclic groups whose elements are the integers ``0..order-1`` (0 is the identity)
with ``compose(a, b) = (a + b) mod order``, defined so that
``act(x, compose(a, b)) == act(act(x, b), a)``. Every element permutes pixels, so an
action commutes with any pixel-wise map (per-image or per-channel standardization,
clamping, uint8 → float) and is orthogonal; the SI argument in ``invfast.learning.metrics`` uses
that. Actions work on any dtype (float or uint8) and device and are exact.
"""

from __future__ import annotations

import torch

__all__ = ["R4", "T3", "Group", "get", "names"]

Element = int | torch.Tensor


class Group:
    """A finite cyclic group of pixel permutations of ``[..., H, W]`` images."""

    name: str = ""
    order: int = 1
    identity: int = 0

    def check_image_shape(self, height: int, width: int) -> None:
        """Raise ValueError when the group cannot act on ``height × width`` images."""

    def _act_one(self, x: torch.Tensor, k: int) -> torch.Tensor:
        raise NotImplementedError

    def elements(self) -> list[int]:
        return list(range(self.order))

    def _check_element(self, k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < self.order:
            raise ValueError(f"{self.name}: element must be an int in [0, {self.order}), got {k!r}")
        return k

    def _check_images(self, x: object, min_dim: int = 2) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name}: x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < min_dim:
            layout = "[..., H, W]" if min_dim == 2 else "[B, ..., H, W]"
            raise ValueError(f"{self.name}: x must be {layout}, got shape {tuple(x.shape)}")
        self.check_image_shape(x.shape[-2], x.shape[-1])
        return x

    def act(self, x: torch.Tensor, element: Element) -> torch.Tensor:
        """``g x`` for one element (an int) or one element per image (a ``[B]`` int tensor,
        x ``[B, ..., H, W]``). Returns a new tensor of x's shape, dtype and device."""
        if isinstance(element, torch.Tensor):
            return self._act_per_sample(self._check_images(x, 3), element)
        x = self._check_images(x)
        return self._act_one(x, self._check_element(element)).contiguous()

    def _act_per_sample(self, x: torch.Tensor, element: torch.Tensor) -> torch.Tensor:
        if element.dtype in (torch.bool,) or element.is_floating_point() or element.is_complex():
            raise TypeError(f"{self.name}: element must be an integer tensor, got {element.dtype}")
        if element.shape != (x.shape[0],):
            raise ValueError(
                f"{self.name}: element must have shape [{x.shape[0]}] (one per image), "
                f"got {tuple(element.shape)}"
            )
        element = element.to(x.device)
        if element.numel() and (int(element.min()) < 0 or int(element.max()) >= self.order):
            raise ValueError(f"{self.name}: elements must lie in [0, {self.order})")
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        for k in range(self.order):
            rows = element == k
            out[rows] = self._act_one(x[rows], k)
        return out

    def inverse(self, element: Element) -> Element:
        if isinstance(element, torch.Tensor):
            return torch.remainder(-element, self.order)
        return (-self._check_element(element)) % self.order

    def compose(self, a: Element, b: Element) -> Element:
        """The element ``a ∘ b`` (apply b first, then a)."""
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            return torch.remainder(torch.as_tensor(a) + torch.as_tensor(b), self.order)
        return (self._check_element(a) + self._check_element(b)) % self.order

    def orbit(self, x: torch.Tensor) -> torch.Tensor:
        """``[order, *x.shape]``: ``g x`` for every element, the identity first."""
        x = self._check_images(x)
        return torch.stack([self._act_one(x, k) for k in range(self.order)])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(order={self.order})"


class _Rotations4(Group):
    name = "R4"
    order = 4

    def check_image_shape(self, height: int, width: int) -> None:
        if height != width:
            raise ValueError(f"R4: rotations need square images, got H×W = {height}×{width}")

    def _act_one(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return torch.rot90(x, k, dims=(-2, -1))


class _CyclicShifts3(Group):
    name = "T3"
    order = 3

    def check_image_shape(self, height: int, width: int) -> None:
        if width % self.order:
            raise ValueError(f"T3: image width must be divisible by 3, got W = {width}")

    def _act_one(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return torch.roll(x, shifts=k * (x.shape[-1] // self.order), dims=-1)


R4: Group = _Rotations4()
T3: Group = _CyclicShifts3()
_GROUPS = {g.name: g for g in (R4, T3)}


def names() -> list[str]:
    return list(_GROUPS)


def get(group: str | Group) -> Group:
    """The group called ``group`` (``"R4"`` or ``"T3"``); a Group passes through."""
    if isinstance(group, Group):
        return group
    if not isinstance(group, str) or group not in _GROUPS:
        raise ValueError(f"group must be one of {', '.join(_GROUPS)}, got {group!r}")
    return _GROUPS[group]

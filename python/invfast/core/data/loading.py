"""Batches of an image set for one process: epochs, shuffling and torchrun shards."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler

from invfast.core.data.sets import Batch, ImageSet, _check_positive


class EpochSampler(Sampler[int]):
    """Indices of one epoch for one process: a permutation seeded by (seed, epoch) when
    ``shuffle``, then this rank's share ``order[rank::world_size]``. With ``pad`` the order
    is extended by wrapping around so that every rank gets the same count (training under
    DDP); without it no index is repeated (evaluation: shards are summed exactly)."""

    def __init__(
        self,
        n: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = False,
    ) -> None:
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % (2**63))
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        if self.pad and self.world_size > 1 and self.n % self.world_size:
            extra = self.world_size - self.n % self.world_size
            order = torch.cat([order, order[:extra].repeat(extra // max(self.n, 1) + 1)[:extra]])
        return order[self.rank :: self.world_size]

    def __iter__(self):
        return iter(self._order().tolist())

    def __len__(self) -> int:
        return len(self._order())


def _passthrough(batch: Batch) -> Batch:
    return batch


def loader(
    images: ImageSet,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    workers: int = 0,
    pin_memory: bool = False,
    rank: int = 0,
    world_size: int = 1,
    pad: bool = False,
) -> DataLoader:
    """A DataLoader of :class:`Batch` (uint8 images, labels, ids). Call
    ``loader.sampler.set_epoch(e)`` before each epoch to reshuffle."""
    _check_positive("batch_size", batch_size)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be a non-negative integer, got {workers!r}")
    sampler = EpochSampler(
        len(images), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, pad=pad
    )
    return DataLoader(
        images,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        collate_fn=_passthrough,
        persistent_workers=workers > 0,
    )

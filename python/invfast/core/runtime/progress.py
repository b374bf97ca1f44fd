"""Progress of long loops: a bar on a terminal, nothing when disabled."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(
    iterable: Iterable[T],
    *,
    desc: str,
    total: int | None = None,
    enabled: bool = True,
    unit: str = "batch",
) -> Iterable[T] | Iterator[T]:
    """``iterable`` with a progress bar on stderr when ``enabled``."""
    if not enabled:
        return iterable
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, file=sys.stderr)

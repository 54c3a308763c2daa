"""Progress bars of the long jobs (training epochs, evaluation, data preparation, the batch job).

tqdm on stderr, shown only when stderr is a terminal (`disable=None`), so logs and Ray workers stay clean.
`TQDM_DISABLE=1` turns them off everywhere: tqdm reads that variable only as a default, which an explicit
`disable=None` would override, so it is checked here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")

_OFF = {"1", "true", "yes", "on"}


def disabled() -> bool | None:
    """tqdm's `disable`: True when TQDM_DISABLE says so, else None (off unless stderr is a terminal)."""
    return True if os.environ.get("TQDM_DISABLE", "").strip().lower() in _OFF else None


def progress(iterable: Iterable[T] | None = None, *, shown: bool = True, **kwargs: Any) -> tqdm[T]:
    """A tqdm bar on stderr, off when stderr is not a terminal, TQDM_DISABLE is set or not `shown` (e.g. on
    the other ranks of a distributed run)."""
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=disabled() if shown else True, **kwargs)

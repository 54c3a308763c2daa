"""The seam between a model's training loop and where it runs (a plain process or a Ray Train worker).

Trainers take a `TrainContext`: they wrap their module with `prepare_model`, train on `shard(n)` of the
examples, and call `report` once per epoch with metrics (loss, samples_per_s, ...). `LocalContext` runs in
the current process; training/ray_jobs.py provides the Ray Train one (DDP, checkpoints, the dashboard).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn


class TrainContext(Protocol):
    world_size: int
    rank: int

    def prepare_model(self, model: nn.Module) -> nn.Module: ...

    def shard(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """A shuffled permutation of this worker's share of range(n) for one epoch."""
        ...

    def report(self, metrics: dict[str, float], model: nn.Module | None = None) -> None: ...


@dataclass
class LocalContext:
    """Single process; `report` logs and keeps the history (and calls `on_report` if given)."""

    world_size: int = 1
    rank: int = 0
    on_report: Callable[[dict[str, float]], None] | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model

    def shard(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(n)

    def report(self, metrics: dict[str, float], model: nn.Module | None = None) -> None:
        self.history.append(dict(metrics))
        if self.on_report is not None:
            self.on_report(metrics)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    inner: Any = getattr(model, "module", model)
    return inner if isinstance(inner, nn.Module) else model


class EpochTimer:
    """Samples per second over one epoch, for `report`."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.samples = 0

    def add(self, n: int) -> None:
        self.samples += n

    def rate(self) -> float:
        return self.samples / max(time.perf_counter() - self.started, 1e-9)


def set_seed(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)

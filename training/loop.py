"""The seam between a model's training loop and where it runs (a plain process or a Ray Train worker), and the
one epoch loop every minibatch-SGD trainer runs.

Trainers take a `TrainContext`: they wrap their module with `prepare_model` and hand it to `EpochLoop.run`,
which trains on `shard(n)` of the examples and calls `report` once per epoch with metrics (loss,
samples_per_s, ...). `LocalContext` runs in the current process; training/ray/context.py provides the Ray
Train one (DDP, checkpoints, the dashboard).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from training.progress import progress

log = logging.getLogger("training.loop")


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
    """Single process; `report` keeps the history (and calls `on_report` if given)."""

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


@dataclass(frozen=True)
class Batch:
    """One minibatch: `idx` the example indices (this worker's shuffled permutation, sliced), `rows` the same
    positions as a slice of the epoch's permutation (for arrays built per epoch in permutation order), `step`
    how many optimiser steps came before it in the run."""

    idx: torch.Tensor
    rows: slice
    step: int


BatchLoss = Callable[[Batch], torch.Tensor]
#: Called once per epoch with this worker's permutation, after sharding and before the first batch (where a
#: trainer draws its per-epoch negatives); returns the loss of one batch.
StartEpoch = Callable[[np.ndarray], BatchLoss]


@dataclass(frozen=True)
class EpochLoop:
    """`epochs` passes over `n` examples in shuffled minibatches of `batch_size`: one optimiser step per batch,
    the mean loss and samples/s reported to the context after each epoch, a log line every `log_every` epochs
    (and after the last), and a progress bar of the epochs on rank 0."""

    name: str
    epochs: int
    batch_size: int
    ctx: TrainContext
    log_every: int = 1

    def run(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, n: int, rng: np.random.Generator, start: StartEpoch
    ) -> None:
        """Trains `model` (the prepared module) in place; the context reports it after each epoch."""
        bar = progress(range(self.epochs), desc=self.name, unit="epoch", shown=self.ctx.rank == 0)
        steps = 0
        for epoch in bar:
            model.train()
            timer = EpochTimer()
            order = self.ctx.shard(n, rng)
            batch_loss = start(order)
            perm = torch.from_numpy(order)
            total = 0.0
            for first in range(0, len(perm), self.batch_size):
                idx = perm[first : first + self.batch_size]
                loss = batch_loss(Batch(idx, slice(first, first + self.batch_size), steps))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                steps += 1
                total += float(loss.detach()) * len(idx)
                timer.add(len(idx))
            mean = total / max(len(perm), 1)
            self.ctx.report({"epoch": epoch + 1, "loss": mean, "samples_per_s": timer.rate()}, model)
            bar.set_postfix(loss=f"{mean:.4f}")
            if (epoch + 1) % self.log_every == 0 or epoch == self.epochs - 1:
                log.info("%s epoch %d/%d loss %.4f", self.name, epoch + 1, self.epochs, mean)


def each_batch(loss: BatchLoss) -> StartEpoch:
    """A `StartEpoch` for trainers without per-epoch preparation."""
    return lambda _order: loss

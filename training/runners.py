"""Where the pipeline's models train: in this process, or each as a Ray Train job."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from training.loop import LocalContext
from training.models.registry import MODELS


class Runner(Protocol):
    def train(self, model: str, inputs: tuple[Any, ...], config: Any) -> nn.Module:
        """Trains `model` (a name of training/models/registry.py) on its trainer's inputs."""
        ...


class LocalRunner:
    """Runs a model's trainer in this process (its epochs logged and shown as a progress bar)."""

    def train(self, model: str, inputs: tuple[Any, ...], config: Any) -> nn.Module:
        trainer = MODELS[model].trainer
        assert trainer is not None, f"{model} has no trainer"
        return trainer(*inputs, config, LocalContext())


@dataclass
class RayRunner:
    """Runs each trainer as a Ray Train job (training/ray/job.py) on a local Ray or the cluster at `address`."""

    workers: int = 1
    address: str | None = None
    storage: Path | None = None  # Ray Train results and checkpoints; shared storage on a multi-node cluster

    def __post_init__(self) -> None:
        from training.ray import job

        self.info = job.connect(self.address, num_cpus=2)

    def train(self, model: str, inputs: tuple[Any, ...], config: Any) -> nn.Module:
        from training.ray import job

        module, _ = job.train_module(model, inputs, config, self.workers, self.storage or job.DEFAULT_STORAGE)
        return module

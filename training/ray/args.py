"""The command line of `python -m training.ray_jobs` (train) and `... bench`, parsed by tyro from dataclasses.

The model's config is `--config.FIELD VALUE` (nested ones `--config.sampling.negatives 4`, tuples as several
values), typed and listed with their defaults by `--help`, which shows the config of `--model` (bpr_mf by
default): `python -m training.ray_jobs --model dlrm --help`. `--epochs N` is short for `--config.epochs N`.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

import tyro

from artifacts.paths import DEFAULT_VAR
from services.common.settings import CommonSettings
from training.models.registry import ModelSpec, lookup, trainable
from training.ray.job import DEFAULT_STORAGE, Scaling

C = TypeVar("C")

DEFAULT_MODEL = "bpr_mf"
DEFAULT_OUT = DEFAULT_VAR / "artifacts"


@dataclass(kw_only=True)
class JobArgs(Generic[C]):
    model: Annotated[str, tyro.conf.arg(help=f"the model to train: {', '.join(trainable())}")] = DEFAULT_MODEL
    epochs: int | None = None
    """epochs (default: the model config's)"""
    address: str | None = None
    """Ray cluster: auto, host:port or ray://host:10001 (default RAY_ADDRESS, else a local Ray)"""
    num_cpus: int = 2
    """CPUs of the local Ray started without an address"""
    feature_repo: Path = dataclasses.field(default_factory=lambda: CommonSettings().feature_repo)
    """the Feast repository (default RECSYS_FEATURE_REPO or features/)"""
    limit: int | None = None
    """train on the most recent N interactions only"""
    config: C
    """the model's config"""

    def model_config(self) -> Any:
        """The config with `--epochs` applied."""
        if self.epochs is None:
            return self.config
        return dataclasses.replace(self.config, epochs=self.epochs)  # type: ignore[type-var]


@dataclass(kw_only=True)
class TrainArgs(JobArgs[C]):
    workers: int = 1
    """Ray Train workers (one process each)"""
    gpu: bool = False
    """one GPU per worker (NCCL)"""
    out: Path = DEFAULT_OUT
    """artifacts folder (default var/artifacts/<model>)"""
    storage_path: Path = DEFAULT_STORAGE
    """Ray Train results and checkpoints"""
    keep_checkpoints: int = 2
    """checkpoints kept per run"""
    report_every: int = 1
    """report (and checkpoint) every N epochs"""

    def scaling(self) -> Scaling:
        return Scaling(self.workers, self.gpu, self.storage_path, self.keep_checkpoints, self.report_every)

    def out_dir(self) -> Path:
        return self.out / self.model if self.out == DEFAULT_OUT else self.out


@dataclass(kw_only=True)
class BenchArgs(JobArgs[C]):
    workers: tuple[int, ...] = (1, 2)
    """Ray worker counts to run"""
    plain_threads: tuple[int, ...] = (1, 2)
    """torch threads of the plain runs"""
    repeats: int = 1
    report_every: int = 1
    """Ray runs: report every N epochs"""
    json_out: Path | None = None
    """also write the JSON here"""


def chosen_model(argv: list[str]) -> ModelSpec:
    """The spec of `--model` in argv (the default model without one); UnknownModel lists the valid names."""
    scan = argparse.ArgumentParser(add_help=False)
    scan.add_argument("--model", default=DEFAULT_MODEL)
    known, _ = scan.parse_known_args(argv)
    return lookup(known.model, trainable())


def parse(kind: type[JobArgs[Any]], argv: list[str], prog: str, description: str) -> Any:
    """`kind` (TrainArgs or BenchArgs) with the config type of the chosen model."""
    spec = chosen_model(argv)
    config_type = type(spec.config)
    return tyro.cli(
        kind[config_type],  # type: ignore[index]
        default=kind(model=spec.name, config=spec.config),
        args=argv,
        prog=prog,
        description=description,
    )

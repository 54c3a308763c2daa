"""What a run's final checkpoint holds, written by rank 0 and read back by the driver.

artifacts/            what the model's `export` wrote (e.g. embeddings.npz) and model.pt (its state_dict)
module.pt             the whole trained module, pickled (when the driver asked for it: the bundle pipeline)
history.json          the per-epoch metrics and the artifact names
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.loop import unwrap

ARTIFACTS = "artifacts"
STATE_DICT = "model.pt"
MODULE_FILE = "module.pt"
HISTORY = "history.json"

#: Writes a trained (unwrapped) module's artifacts into a folder and returns their file names.
Exporter = Callable[[nn.Module, Path], list[str]]


def report_final(
    rank: int, model: nn.Module, metrics: dict[str, Any], history: list[dict[str, float]], export: Exporter | None
) -> None:
    """The last `ray.train.report` of a run: rank 0's carries the final checkpoint, the other ranks' none.
    With `export` the checkpoint holds the exported artifacts, without it the pickled module."""
    import ray.train

    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="final-") as tmp:
        root = Path(tmp)
        (root / ARTIFACTS).mkdir()
        inner = unwrap(model)
        names = export(inner, root / ARTIFACTS) if export is not None else []
        torch.save(inner.state_dict(), root / ARTIFACTS / STATE_DICT)
        if export is None:
            torch.save(inner, root / MODULE_FILE)
        (root / HISTORY).write_text(json.dumps({"epochs": history, "artifacts": [*names, STATE_DICT]}))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


@dataclass
class FinalCheckpoint:
    """The driver's copy of a final checkpoint."""

    history: list[dict[str, float]]
    artifacts: list[Path]  # in a temporary folder of the driver's, which `discard` removes
    module: nn.Module | None

    def discard(self) -> None:
        if self.artifacts:
            shutil.rmtree(self.artifacts[0].parent, ignore_errors=True)


def read_final(checkpoint_dir: Path) -> FinalCheckpoint:
    saved = json.loads((checkpoint_dir / HISTORY).read_text())
    staged = Path(tempfile.mkdtemp(prefix="ray-artifacts-"))
    shutil.copytree(checkpoint_dir / ARTIFACTS, staged, dirs_exist_ok=True)
    module_file = checkpoint_dir / MODULE_FILE
    module = torch.load(module_file, weights_only=False) if module_file.is_file() else None
    return FinalCheckpoint(saved["epochs"], [staged / n for n in saved["artifacts"]], module)

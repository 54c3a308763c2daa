"""Export of the trained ranker: an ONNX file for the bundle and a Triton model repository.

The ONNX model takes the tensors named in artifacts/ranker_signature.py with a dynamic batch dimension and
returns the probability of a positive interaction. The Triton repository (`<bundle_dir>/triton/`) gets one
version directory per bundle (`<model>/<int version>/model.onnx`) next to a config.pbtxt generated from the
feature contract; Kubernetes mounts that folder into Triton (see docs/deployment.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from artifacts import ranker_features as rf
from artifacts.ranker_signature import OUTPUT, input_specs, triton_config
from artifacts.tower_inputs import ITEM_INPUTS, ITEM_OUTPUT


class _Probability(nn.Module):
    """Serving wrapper: logits -> (batch, 1) probabilities."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, sparse: torch.Tensor, genres: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(sparse, genres, dense)).unsqueeze(1)


def export_onnx(model: nn.Module, contract: rf.RankerContract, path: Path) -> Path:
    specs = input_specs(contract)
    example = tuple(
        torch.zeros(2, s.width, dtype=torch.int64 if s.numpy_dtype == "int64" else torch.float32) for s in specs
    )
    wrapper = _Probability(model).eval()
    names = [s.name for s in specs]
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated but handles this static MLP exactly; see the parity test.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper,
            example,
            str(path),
            input_names=names,
            output_names=[OUTPUT],
            dynamic_axes={name: {0: "batch"} for name in [*names, OUTPUT]},
            opset_version=17,
            dynamo=False,
        )
    return path


def publish_to_triton_repository(
    repository: Path, model_name: str, version: int, onnx_path: Path, contract: rf.RankerContract
) -> Path:
    """Adds `version` of `model_name` to a Triton model repository; returns the version directory."""
    model_dir = repository / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir / str(version)
    staged = Path(tempfile.mkdtemp(dir=model_dir, prefix=".staging-"))
    shutil.copyfile(onnx_path, staged / "model.onnx")
    if target.exists():
        shutil.rmtree(target)
    os.replace(staged, target)  # Triton never sees a half-copied version directory
    config = model_dir / "config.pbtxt"
    fd, tmp = tempfile.mkstemp(dir=model_dir, prefix=".config-")
    with os.fdopen(fd, "w") as f:
        f.write(triton_config(model_name, contract))
    os.replace(tmp, config)
    return target


class _ItemTowerContent(nn.Module):
    """Serving wrapper: the item tower on explicit content tensors (not the catalogue buffers), so a service
    can embed an item that was not in the catalogue at training time (id 0 = unknown)."""

    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower

    def forward(
        self, ids: torch.Tensor, genres: torch.Tensor, years: torch.Tensor, titles: torch.Tensor
    ) -> torch.Tensor:
        return self.tower.encode(ids, genres, years, titles)  # type: ignore[operator]


def export_item_tower_onnx(item_tower: nn.Module, n_genres: int, title_tokens: int, path: Path) -> Path:
    """The two-tower model's item tower as ONNX: ids (B,) int64 (catalogue row + 1, 0 = unknown), genres
    (B, n_genres) float32 multi-hot, years (B,) int64 year buckets, titles (B, title_tokens) int64 hashed
    tokens -> item (B, dim) float32; dynamic batch."""
    wrapper = _ItemTowerContent(item_tower).eval()
    b = 2
    example = (
        torch.zeros(b, dtype=torch.int64),
        torch.zeros(b, n_genres, dtype=torch.float32),
        torch.zeros(b, dtype=torch.int64),
        torch.zeros(b, title_tokens, dtype=torch.int64),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            example,
            str(path),
            input_names=list(ITEM_INPUTS),
            output_names=[ITEM_OUTPUT],
            dynamic_axes={name: {0: "batch"} for name in [*ITEM_INPUTS, ITEM_OUTPUT]},
            opset_version=17,
            dynamo=False,
        )
    return path

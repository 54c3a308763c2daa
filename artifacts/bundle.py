"""The model bundle: the versioned set of artifacts training publishes and every service loads.

Layout: <bundle_dir>/<version>/manifest.json plus one file per component, and <bundle_dir>/CURRENT naming
the version to serve. Publishing writes the version folder under a temporary name, renames it into place,
then replaces CURRENT atomically, so a reader never sees a half-written bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class BundleError(Exception):
    """A bundle is missing, unreadable or does not match what its reader expects (a failed precondition)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# The components of a bundle: training writes each under its name, the services read them by it.
RETRIEVAL_COMPONENT = "retrieval"  # user/item vectors, ids, popularity, seen items
RETRIEVAL_CONTRACT = {"kind": "inner_product_embeddings", "version": 1}
INDEX_COMPONENT = "item_index"  # the Faiss index over the retrieval item vectors
QUERY_TOWER_COMPONENT = "query_tower"  # the two-tower's query tower (ONNX)
ITEM_TOWER_COMPONENT = "item_tower"  # the two-tower's item tower (ONNX), for items added at run time
SEGMENTS_COMPONENT = "segments"  # k-means user segments and their popular items
RANKER_COMPONENT = "ranker"  # DLRM or Wide & Deep (ONNX) and its feature vocabularies
GRAPH_COMPONENT = "graph"  # LightGCN user and item embeddings
# Item-to-item weights (EASE) aligned with the retrieval items: affinity(u, j) = sum over u's history i of W[i, j].
AFFINITY_COMPONENT = "item_affinity"
AFFINITY_CONTRACT = {"kind": "item_item_weights", "version": 1}

MANIFEST = "manifest.json"
CURRENT = "CURRENT"
#: Bumped when the bundle layout changes in a way older services cannot read.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Manifest:
    version: str
    format_version: int
    created_at: str
    git_commit: str
    dataset: str
    data_time_range: tuple[str, str]
    #: component name -> {"file": ..., "contract": {...}}
    components: dict[str, dict[str, Any]]
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        start, end = data.get("data_time_range", ("", ""))
        return cls(
            version=data["version"],
            format_version=int(data["format_version"]),
            created_at=data["created_at"],
            git_commit=data.get("git_commit", ""),
            dataset=data.get("dataset", ""),
            data_time_range=(str(start), str(end)),
            components=data["components"],
            metrics=data.get("metrics", {}),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "format_version": self.format_version,
            "created_at": self.created_at,
            "git_commit": self.git_commit,
            "dataset": self.dataset,
            "data_time_range": list(self.data_time_range),
            "components": self.components,
            "metrics": self.metrics,
        }


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: Manifest

    @property
    def version(self) -> str:
        return self.manifest.version

    def component(self, name: str, expected_contract: dict[str, Any] | None = None) -> Path:
        """The file of a component, after checking that its contract holds what the caller feeds it."""
        entry = self.manifest.components.get(name)
        if entry is None:
            raise BundleError(f"bundle {self.version} has no component {name!r}")
        contract = entry.get("contract", {})
        for key, want in (expected_contract or {}).items():
            if contract.get(key) != want:
                raise BundleError(
                    f"bundle {self.version} component {name!r} has {key}={contract.get(key)!r}; "
                    f"this service feeds it {key}={want!r}"
                )
        return self.path / entry["file"]

    def contract(self, name: str) -> dict[str, Any]:
        return dict(self.manifest.components[name].get("contract", {}))

    def load_arrays(
        self, name: str, expected_contract: dict[str, Any] | None = None, keys: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """The arrays of an .npz component; with `keys`, only those are read from disk."""
        with np.load(self.component(name, expected_contract), allow_pickle=False) as data:
            return {key: data[key] for key in (keys if keys is not None else data.files)}


def load_current(bundle_dir: Path) -> Bundle:
    """Loads the bundle CURRENT points at; raises BundleError with what to do when there is none."""
    pointer = bundle_dir / CURRENT
    if not pointer.is_file():
        raise BundleError(f"no model bundle published in {bundle_dir}; run `make train` first")
    version = pointer.read_text().strip()
    return load_version(bundle_dir, version)


def load_version(bundle_dir: Path, version: str) -> Bundle:
    path = bundle_dir / version
    try:
        manifest = Manifest.from_json(json.loads((path / MANIFEST).read_text()))
    except (OSError, KeyError, ValueError) as exc:
        raise BundleError(f"bundle {version} in {bundle_dir} is unreadable: {exc}") from exc
    if manifest.format_version != FORMAT_VERSION:
        raise BundleError(f"bundle {version} has format {manifest.format_version}; this service reads {FORMAT_VERSION}")
    return Bundle(path=path, manifest=manifest)


def publish(bundle_dir: Path, staged: Path, manifest: Manifest) -> Bundle:
    """Moves a staged folder of component files into place as `manifest.version` and points CURRENT at it."""
    bundle_dir.mkdir(parents=True, exist_ok=True)
    (staged / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2, sort_keys=True))
    target = bundle_dir / manifest.version
    if target.exists():
        shutil.rmtree(target)
    os.replace(staged, target)
    fd, tmp = tempfile.mkstemp(dir=bundle_dir, prefix=".current-")
    with os.fdopen(fd, "w") as f:
        f.write(manifest.version + "\n")
    os.replace(tmp, bundle_dir / CURRENT)
    return load_version(bundle_dir, manifest.version)

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from artifacts import bundle as fmt
from artifacts.bundle import BundleError


def _manifest(version: str, dim: int = 4) -> fmt.Manifest:
    return fmt.Manifest(
        version=version,
        format_version=fmt.FORMAT_VERSION,
        created_at="2026-01-01T00:00:00+00:00",
        git_commit="abc",
        dataset="test",
        data_time_range=("a", "b"),
        components={"retrieval": {"file": "r.npz", "contract": {"kind": "inner_product_embeddings", "dim": dim}}},
    )


def _stage(tmp: Path, name: str) -> Path:
    staged = tmp / name
    staged.mkdir()
    np.savez(staged / "r.npz", x=np.arange(3))
    return staged


def test_publish_points_current_at_the_new_version(tmp_path: Path) -> None:
    bundles = tmp_path / "bundles"
    fmt.publish(bundles, _stage(tmp_path, "s1"), _manifest("v1"))
    fmt.publish(bundles, _stage(tmp_path, "s2"), _manifest("v2"))
    current = fmt.load_current(bundles)
    assert current.version == "v2"
    assert current.load_arrays("retrieval")["x"].tolist() == [0, 1, 2]
    assert fmt.load_version(bundles, "v1").version == "v1"


def test_contract_mismatch_is_refused(tmp_path: Path) -> None:
    b = fmt.publish(tmp_path / "bundles", _stage(tmp_path, "s"), _manifest("v1", dim=4))
    with pytest.raises(BundleError, match="dim=4; this service feeds it dim=8"):
        b.component("retrieval", {"dim": 8})
    with pytest.raises(BundleError, match="no component 'ranker'"):
        b.component("ranker")


def test_missing_bundle_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="make train"):
        fmt.load_current(tmp_path)

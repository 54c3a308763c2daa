"""Where a source checkout keeps what it builds: `var/` under the repository root (data, feature store, bundles)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VAR = REPO_ROOT / "var"

"""Regenerates the Python gRPC code under recsys/ from protos/ (run: `make protos`).

With --check, generates into a scratch folder and exits non-zero if the committed code differs.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"


def generate(out_dir: Path) -> list[Path]:
    """Generates *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for every proto; returns them relative to out_dir."""
    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    generated = sorted(p.relative_to(out_dir) for p in out_dir.rglob("*_pb2*.py*"))
    # Packages need __init__.py so that `recsys.gateway.v1` imports as a regular package.
    for rel in generated:
        for parent in rel.parents:
            if parent != Path("."):
                (out_dir / parent / "__init__.py").touch()
    return generated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        generated = generate(tmp_dir)
        stale = [
            str(rel)
            for rel in generated
            if not (ROOT / rel).exists() or not filecmp.cmp(tmp_dir / rel, ROOT / rel, shallow=False)
        ]
        if args.check:
            if stale:
                print("generated code is stale; run `make protos`:\n  " + "\n  ".join(stale), file=sys.stderr)
                return 1
            print(f"generated code is up to date ({len(generated)} files)")
            return 0
        for rel in generated:
            (ROOT / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tmp_dir / rel, ROOT / rel)
            for parent in rel.parents:
                if parent != Path("."):
                    (ROOT / parent / "__init__.py").touch()
        print(f"wrote {len(generated)} files ({len(stale)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

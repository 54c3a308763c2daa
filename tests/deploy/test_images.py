"""Static checks of the Dockerfiles in deploy/k8s/docker (no image is built here)."""

from __future__ import annotations

import re
from pathlib import Path

import grimp
import pytest
import yaml

from .helpers import CHART_DIR, DOCKER_DIR

SERVICES = {"gateway": 50051, "candidate": 50052, "ranking": 50053, "rerank": 50054}
IMAGES = [*SERVICES, "training"]
#: What every image copies from the repository root context.
CONTEXT_FILES = ("requirements.lock", "pyproject.toml")
#: Copied into every image besides the Python packages its entry point imports.
DATA_DIRS = ("features/", "protos/")
ROOT_PACKAGES = ("recsys", "artifacts", "services", "training", "client", "tools", "cli")


def packages_imported_by(module: str) -> set[str]:
    """The project's root packages `module` (a package) imports, directly or not, itself included."""
    graph = grimp.build_graph(*ROOT_PACKAGES)
    upstream = graph.find_upstream_modules(module, as_package=True)
    return {name.split(".")[0] for name in {module, *upstream}}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        word, _, rest = stripped.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def base_images(dockerfile: Path) -> list[str]:
    """FROM images with ARG defaults substituted; earlier build stages are not images."""
    steps = instructions(dockerfile)
    args = {}
    for word, rest in steps:
        if word == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name] = default
    stages: set[str] = set()
    images = []
    for word, rest in steps:
        if word != "FROM":
            continue
        parts = [p for p in rest.split() if not p.startswith("--")]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), parts[0])
        if image not in stages:
            images.append(image)
        if len(parts) >= 3 and parts[1].upper() == "AS":
            stages.add(parts[2])
    return images


@pytest.fixture(params=IMAGES)
def image(request: pytest.FixtureRequest) -> str:
    return request.param


def dockerfile_of(image: str) -> Path:
    return DOCKER_DIR / f"{image}.Dockerfile"


def test_dockerfile_exists_with_ignore_file(image: str) -> None:
    assert dockerfile_of(image).is_file()
    ignore = DOCKER_DIR / f"{image}.Dockerfile.dockerignore"
    assert ignore.is_file(), "BuildKit reads <name>.Dockerfile.dockerignore next to the Dockerfile"
    patterns = ignore.read_text().split()
    assert "**" in patterns and "!requirements.lock" in patterns


def test_base_images_are_pinned(image: str) -> None:
    bases = base_images(dockerfile_of(image))
    assert bases
    for base in bases:
        assert "$" not in base, f"unresolved base image {base}"
        name = base.split("@", 1)[0]
        assert ":" in name.rsplit("/", 1)[-1] or "@sha256:" in base, f"{base} has no tag"
        tag = name.rsplit(":", 1)[-1]
        assert tag != "latest" and re.search(r"\d", tag), f"{base} is not pinned to a version"
    if image == "training":
        assert bases == ["rayproject/ray:2.60.0-py311-cpu"]
    else:
        assert all(re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", b) for b in bases), bases


def test_runs_as_fixed_non_root_user(image: str) -> None:
    users = [rest for word, rest in instructions(dockerfile_of(image)) if word == "USER"]
    assert users, "no USER instruction"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) > 0, f"final USER {users[-1]!r} must be a numeric non-root UID"
    assert not group or (group.isdigit()), f"group of USER {users[-1]!r} must be numeric"
    # The chart's pod security context expects the same UID.
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    chart_key = "training" if image == "training" else image
    assert values[chart_key]["podSecurity"]["runAsUser"] == int(user)


def test_installs_from_the_lock_file(image: str) -> None:
    steps = instructions(dockerfile_of(image))
    copies = " ".join(rest for word, rest in steps if word == "COPY")
    entry = "training" if image == "training" else f"services.{image}"
    packages = packages_imported_by(entry)
    for path in (*CONTEXT_FILES, *DATA_DIRS, *(f"{p}/" for p in packages)):
        assert path in copies, f"{path} is not copied"
    # An image holds no package its entry point does not import (a serving image has no training code).
    for package in set(ROOT_PACKAGES) - packages:
        assert f"{package}/" not in copies.split(), f"{package}/ is copied but {entry} never imports it"
    runs = [rest for word, rest in steps if word == "RUN"]
    assert any("pip install --no-cache-dir -r requirements.lock" in r for r in runs)
    assert any("pip install --no-cache-dir --no-deps ." in r for r in runs)
    # The bundle is mounted at run time, never copied into the image.
    assert "bundles" not in copies and "var/" not in copies


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_images_start_the_service(service: str) -> None:
    image = service
    steps = instructions(dockerfile_of(image))
    entrypoints = [rest for word, rest in steps if word == "ENTRYPOINT"]
    assert entrypoints[-1] == f'["python", "-m", "services.{image}"]'
    exposed = [rest for word, rest in steps if word == "EXPOSE"]
    assert exposed == [str(SERVICES[image])]
    env = " ".join(rest for word, rest in steps if word == "ENV")
    assert f"RECSYS_{image.upper()}_HOST=0.0.0.0" in env
    assert "RECSYS_BUNDLE_DIR=/var/lib/recsys/bundles" in env

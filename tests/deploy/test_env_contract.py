"""Every RECSYS_* and OTEL_* variable the chart sets must be something the deployed code reads.

Settings classes ignore unknown variables, so a name the chart sets but no service reads would be dropped
silently. The readers are:
- the pydantic settings classes (env prefix + field name), TlsSettings (RECSYS_TLS_*) included;
- services/common/telemetry.py, which reads OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER, OTEL_SERVICE_NAME,
  RECSYS_METRICS_PORT and RECSYS_TRACES_FILE from os.environ (found in its source, so a rename there fails here);
- the OpenTelemetry SDK itself, for the standard OTEL_* names it defines (the OTLP endpoint, resource attributes).
Names waiting for their implementation are listed in PENDING with the reason; the list must shrink when that
work lands (a pending name that has become a real field fails the test).
"""

from __future__ import annotations

import ast
import inspect
import re
from typing import Any

import opentelemetry.sdk.environment_variables as otel_sdk_env
from pydantic_settings import BaseSettings

from services.candidate.settings import CandidateSettings
from services.common import telemetry
from services.common.security import TlsSettings
from services.common.settings import CommonSettings
from services.gateway.settings import GatewaySettings
from services.ranking.settings import RankingSettings
from services.rerank.settings import RerankSettings

from .helpers import Render, pod_templates

PENDING: dict[str, str] = {}

SETTINGS_CLASSES: list[type[BaseSettings]] = [
    CommonSettings, TlsSettings, GatewaySettings, CandidateSettings, RankingSettings, RerankSettings,
]  # fmt: skip


def _nested_settings(cls: type[BaseSettings]) -> dict[str, type[BaseSettings]]:
    """Fields of `cls` that are settings classes of their own (read with their own env prefix)."""
    return {
        name: field.annotation
        for name, field in cls.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings)
    }


def settings_env_names() -> set[str]:
    names: set[str] = set()
    for cls in SETTINGS_CLASSES:
        prefix = str(cls.model_config.get("env_prefix", ""))
        nested = _nested_settings(cls)
        names |= {(prefix + field).upper() for field in cls.model_fields if field not in nested}
    return names


def telemetry_env_names() -> set[str]:
    """Names services/common/telemetry.py reads: os.environ.get("X"...), os.environ["X"], os.getenv("X")."""
    tree = ast.parse(inspect.getsource(telemetry))
    names = set()
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            target = ast.unparse(node.func)
            if target in {"os.environ.get", "os.getenv"}:
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            names.add(key.value)
    return names


def otel_sdk_env_names() -> set[str]:
    return {name for name in dir(otel_sdk_env) if name.startswith("OTEL_")}


def supported_exporters(function: Any) -> set[str]:
    """Exporter names a telemetry function accepts (`name == "..."` branches)."""
    return set(re.findall(r'name == "(\w+)"', inspect.getsource(function)))


def _env(render: Render, pattern: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Variable name -> (where, EnvVar) over every container of every pod the render creates (Ray pods too)."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for obj in render.objects:
        for where, template in pod_templates(obj):
            spec = template["spec"]
            for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
                for env in container.get("env", []):
                    if re.match(pattern, env["name"]):
                        found[env["name"]] = (f"{obj['kind']}/{obj['metadata']['name']}[{where}]", env)
    return found


def test_settings_classes_cover_nested_settings() -> None:
    """A nested settings class (CommonSettings.tls -> TlsSettings) reads its own prefix: it must be listed."""
    for cls in SETTINGS_CLASSES:
        for name, nested in _nested_settings(cls).items():
            assert nested in SETTINGS_CLASSES, f"{cls.__name__}.{name}: add {nested.__name__} to SETTINGS_CLASSES"
    assert {"RECSYS_TLS_CERT_FILE", "RECSYS_TLS_REQUIRE_CLIENT_CERT"} <= settings_env_names()


def test_telemetry_reads_what_the_chart_relies_on() -> None:
    read = telemetry_env_names()
    assert {"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_SERVICE_NAME", "RECSYS_METRICS_PORT"} <= read
    assert "prometheus" in supported_exporters(telemetry.configure_metrics)
    assert "otlp" in supported_exporters(telemetry._exporters_from_env)


def test_chart_sets_only_settings_the_services_read(render: Render) -> None:
    known = settings_env_names() | telemetry_env_names() | set(PENDING)
    unknown = {name: where for name, (where, _) in _env(render, r"RECSYS_").items() if name not in known}
    assert not unknown, f"the chart sets variables no service reads: {unknown}"


def test_chart_sets_only_otel_variables_that_are_read(render: Render) -> None:
    known = telemetry_env_names() | otel_sdk_env_names()
    found = _env(render, r"OTEL_")
    unknown = {name: where for name, (where, _) in found.items() if name not in known}
    assert not unknown, f"the chart sets OTEL_* variables nothing reads: {unknown}"
    for name, function in (
        ("OTEL_TRACES_EXPORTER", telemetry._exporters_from_env),
        ("OTEL_METRICS_EXPORTER", telemetry.configure_metrics),
    ):
        if name in found:
            value = found[name][1]["value"]
            supported = supported_exporters(function) | {"none"}
            assert set(value.split(",")) <= supported, f"{name}={value!r} is not one of {sorted(supported)}"


def test_pending_names_are_still_pending() -> None:
    implemented = set(PENDING) & (settings_env_names() | telemetry_env_names())
    assert not implemented, f"now implemented; remove from PENDING: {sorted(implemented)}"

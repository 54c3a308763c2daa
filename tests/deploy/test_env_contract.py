"""Every RECSYS_* variable the chart sets must be a settings field some service reads.

Settings classes ignore unknown variables, so a name the chart sets but no service reads would be dropped
silently. Names waiting for their implementation are listed in PENDING with the reason; the list must shrink
when that work lands (a pending name that has become a real field fails the test).
"""

from __future__ import annotations

from typing import Any

from pydantic_settings import BaseSettings

from services.candidate.settings import CandidateSettings
from services.common.settings import CommonSettings
from services.gateway.settings import GatewaySettings
from services.ranking.settings import RankingSettings
from services.rerank.settings import RerankSettings

from .helpers import Render

PENDING = {}


def settings_env_names() -> set[str]:
    names: set[str] = set()
    classes: list[type[BaseSettings]] = [
        CommonSettings, GatewaySettings, CandidateSettings, RankingSettings, RerankSettings,
    ]  # fmt: skip
    for cls in classes:
        prefix = str(cls.model_config.get("env_prefix", ""))
        names |= {(prefix + field).upper() for field in cls.model_fields}
    return names


def _recsys_env(render: Render) -> dict[str, str]:
    """RECSYS_* name -> where it is set, over every container of the render."""
    found: dict[str, str] = {}
    for obj in render.objects:
        spec: Any = obj.get("spec", {})
        template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
        if not template:
            continue
        for container in template["spec"].get("containers", []):
            for env in container.get("env", []):
                if env["name"].startswith("RECSYS_"):
                    found[env["name"]] = f"{obj['kind']}/{obj['metadata']['name']}"
    return found


def test_chart_sets_only_settings_the_services_read(render: Render) -> None:
    known = settings_env_names()
    unknown = {name: where for name, where in _recsys_env(render).items() if name not in known | set(PENDING)}
    assert not unknown, f"the chart sets variables no service reads: {unknown}"


def test_pending_names_are_still_pending() -> None:
    implemented = set(PENDING) & settings_env_names()
    assert not implemented, f"now implemented; remove from PENDING: {sorted(implemented)}"

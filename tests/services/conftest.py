"""Each service as a real grpc.aio server on port 0, in this process, over the real bundle and Feast repo."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from artifacts.bundle import Bundle
from services.candidate.servicer import CandidateApp
from services.candidate.settings import CandidateSettings
from services.common.server import RunningServer, start_and_load
from services.common.settings import CommonSettings
from services.gateway.servicer import GatewayApp
from services.gateway.settings import GatewaySettings
from services.ranking.servicer import RankingApp
from services.ranking.settings import RankingSettings
from services.rerank.servicer import RerankApp
from services.rerank.settings import RerankSettings


@dataclass
class Servers:
    candidate: RunningServer
    ranking: RunningServer
    rerank: RunningServer

    def address(self, name: str) -> str:
        return f"127.0.0.1:{getattr(self, name).port}"


@pytest_asyncio.fixture(scope="session")
async def stage_servers(bundle: Bundle, common_settings: CommonSettings) -> AsyncIterator[Servers]:
    servers = Servers(
        candidate=await start_and_load(CandidateApp(CandidateSettings(port=0), common_settings)),
        ranking=await start_and_load(RankingApp(RankingSettings(port=0), common_settings)),
        rerank=await start_and_load(RerankApp(RerankSettings(port=0), common_settings)),
    )
    yield servers
    for server in (servers.candidate, servers.ranking, servers.rerank):
        await server.stop(0)


def gateway_settings(servers: Servers, tmp: Path, **overrides: object) -> GatewaySettings:
    fields: dict[str, object] = {
        "port": 0,
        "candidate_address": servers.address("candidate"),
        "ranking_address": servers.address("ranking"),
        "rerank_address": servers.address("rerank"),
        "event_log_path": tmp / "events.db",
        # The shared online store under var/feast is read by every test: only tests on a private copy push.
        "push_features": False,
    }
    return GatewaySettings(**{**fields, **overrides})  # type: ignore[arg-type]


@pytest_asyncio.fixture(scope="session")
async def gateway_server(
    stage_servers: Servers, common_settings: CommonSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    app = GatewayApp(gateway_settings(stage_servers, tmp_path_factory.mktemp("gw")), common_settings)
    server = await start_and_load(app)
    yield server
    await server.stop(0)


@pytest_asyncio.fixture(scope="session")
async def channel_to(stage_servers: Servers) -> AsyncIterator[dict[str, grpc.aio.Channel]]:
    channels = {
        name: grpc.aio.insecure_channel(stage_servers.address(name)) for name in ("candidate", "ranking", "rerank")
    }
    yield channels
    for channel in channels.values():
        await channel.close()

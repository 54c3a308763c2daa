"""The `recsys` command against a real gateway in this process (port 0, over the real stages): readable and
JSON answers with the shared options before or after the command, feedback, health and a precise status."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner, Result

from cli.app import app

runner = CliRunner()


@pytest.fixture(scope="module")
def address(gateway_server) -> str:  # type: ignore[no-untyped-def]
    return f"127.0.0.1:{gateway_server.port}"


async def _recsys(*argv: str) -> Result:
    # In a thread: the servers answer on this thread's event loop, which must keep running meanwhile.
    return await asyncio.to_thread(runner.invoke, app, list(argv))


async def test_recommend_as_a_table_and_as_json_either_way(address: str) -> None:
    table = await _recsys("--address", address, "recommend", "--user", "196", "--count", "5")
    assert table.exit_code == 0, table.stderr
    assert table.stdout.startswith("Recommendations for user 196") and table.stdout.count("\n") >= 6
    before = await _recsys("--address", address, "--json", "recommend", "--user", "196", "--count", "3")
    after = await _recsys("recommend", "--user", "196", "--count", "3", "--json", "--address", address)
    ids = [[item["item_id"] for item in json.loads(result.stdout)["items"]] for result in (before, after)]
    assert len(ids[0]) == 3 and ids[0] == ids[1]
    diverse = await _recsys(
        "recommend", "--user", "196", "--count", "5", "--diversity", "0.8", "--diversity-method", "calibrated",
        "--genre", "Comedy", "--address", address, "--json",
    )  # fmt: skip
    answer = json.loads(diverse.stdout)
    assert len(answer["items"]) == 5 and not answer.get("degraded_stages")
    assert all("Comedy" in item["info"]["genres"] for item in answer["items"])


async def test_similar_feedback_and_health(address: str) -> None:
    similar = await _recsys("similar", "--item", "50", "--count", "3", "--address", address)
    assert similar.exit_code == 0 and similar.stdout.startswith("Items similar to 50")
    argv = ("feedback", "--user", "899", "--item", "50", "--type", "view", "--event-id", "cli-live-1")
    first = await _recsys(*argv, "--address", address)
    assert first.exit_code == 0 and "accepted 1 event(s), 0 already recorded" in first.stdout, first.stderr
    again = await _recsys("--address", address, "--json", *argv)
    assert json.loads(again.stdout)["duplicates"] == 1
    health = await _recsys("health", "--address", address)
    assert health.exit_code == 0 and health.stdout.strip() == "SERVING"


async def test_a_refused_request_is_one_line_with_its_status(address: str) -> None:
    bad = await _recsys("recommend", "--user", "196", "--count", "0", "--address", address)
    assert bad.exit_code == 1 and bad.stdout == ""
    [line] = bad.stderr.strip().splitlines()
    assert line.startswith("error: INVALID_ARGUMENT: count must be at least 1") and line.endswith(f"(from {address})")

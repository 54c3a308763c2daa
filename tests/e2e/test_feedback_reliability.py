"""No acknowledged feedback is lost and none is stored twice while the gateway process is SIGKILLed and
restarted under load: concurrent clients retry UNAVAILABLE and connection errors with the same event ids,
and at the end PostgreSQL holds exactly the acknowledged events.

The load and the checks are `tools.bench.feedback`'s; `recsys bench sigkill` runs the same scenario at full
length (20 clients, 60 s) and `recsys bench ingestion` measures the ingestion rate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.bench.feedback import gateway_only, sigkill_under_load
from tools.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def gateway(bundle, postgres_dsn: str, pg_schema: str, tmp_path: Path) -> Iterator[Stack]:
    """The gateway process alone (Recommend is not exercised), writing feedback to a fresh schema."""
    with gateway_only(postgres_dsn, pg_schema, tmp_path / "logs") as stack:
        yield stack


async def test_no_acknowledged_event_is_lost_or_duplicated_across_sigkill(
    gateway: Stack, postgres_dsn: str, pg_schema: str
) -> None:
    result = await sigkill_under_load(gateway, postgres_dsn, pg_schema, clients=12, seconds=20)
    assert result["sigkills"] >= 2 and result["retries"] > 0, f"killed under load, clients had to retry: {result}"
    assert result["acknowledged"] > 0 and result["exactly_the_acknowledged"], result
    assert (result["lost"], result["duplicates"], result["stored_unacknowledged"]) == (0, 0, 0), result
    print(f"\n{result}")

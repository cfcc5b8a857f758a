"""Provider circuit breakers in PostgreSQL: five transient failures in a row open it, deliveries
then wait (never fail, never skip) until a probe, a success closes it; /health shows it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import delete

from leadrelay.core.db import Database
from leadrelay.outreach import circuit
from leadrelay.outreach.channels.base import SendResult
from leadrelay.outreach.models import ProviderCircuit

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DOWN = SendResult("transient", None, "connection refused")
REFUSED = SendResult("permanent", None, "550 5.1.1 user unknown")
SENT = SendResult("sent", "id-1", "ok")


@pytest.fixture
async def provider(db: Database) -> AsyncIterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    async with db.session() as session:
        await session.execute(delete(ProviderCircuit).where(ProviderCircuit.provider == name))


async def test_the_circuit_opens_waits_probes_and_closes(db: Database, provider: str) -> None:
    async with db.session() as session:
        for n in range(circuit.FAILURES_TO_OPEN - 1):
            state = await circuit.record(session, provider, DOWN, NOW + timedelta(seconds=n))
            assert state is not None
            assert state.state == "closed"
        # A recipient's refusal says nothing about the provider.
        assert await circuit.record(session, provider, REFUSED, NOW) is None
        opened = await circuit.record(session, provider, DOWN, NOW)
        assert opened is not None
        assert opened.state == "open"
        assert opened.opened_until == NOW + circuit.FIRST_OPEN
        assert await circuit.wait_until(session, provider, NOW) == NOW + circuit.FIRST_OPEN
        # Once the wait is over, one delivery goes through as the probe.
        later = NOW + circuit.FIRST_OPEN
        assert await circuit.wait_until(session, provider, later) is None
        again = await circuit.record(session, provider, DOWN, later)
        assert again is not None
        assert again.opened_until == later + circuit.FIRST_OPEN * 2  # twice as long
        closed = await circuit.record(session, provider, SENT, later)
        assert closed is not None
        assert closed.state == "closed"
        assert closed.consecutive_failures == 0
        assert await circuit.wait_until(session, provider, later) is None


async def test_health_shows_an_open_circuit(
    db: Database, provider: str, client: httpx.AsyncClient
) -> None:
    async with db.session() as session:
        for _ in range(circuit.FAILURES_TO_OPEN):
            await circuit.record(session, provider, DOWN, datetime.now(UTC))
    health = (await client.get("/health")).json()
    assert health["providers"][provider]["state"] == "open"
    assert health["providers"][provider]["last_error"] == "connection refused"
    assert health["status"] == "degraded"


async def test_dry_run_is_never_guarded(db: Database) -> None:
    async with db.session() as session:
        assert await circuit.record(session, "dryrun", DOWN, NOW) is None
        assert await circuit.wait_until(session, "dryrun", NOW) is None

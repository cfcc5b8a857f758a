"""A circuit breaker per provider, kept in PostgreSQL so every worker sees the same state.

After `FAILURES_TO_OPEN` transient failures in a row (timeouts, 5xx, throttling) the circuit
opens: messages for that provider wait (they are not failed and not skipped) until
`opened_until`, when one delivery is let through to probe; a success closes it, a failure opens
it again for twice as long (up to `MAX_OPEN`). Permanent, per-recipient refusals say nothing
about the provider's health and are not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.outreach.channels.base import SendResult
from leadrelay.outreach.models import ProviderCircuit

FAILURES_TO_OPEN = 5
FIRST_OPEN = timedelta(seconds=30)
MAX_OPEN = timedelta(minutes=15)
UNGUARDED = frozenset({"dryrun", "none"})  # nothing to protect


@dataclass(frozen=True, slots=True)
class CircuitView:
    provider: str
    state: str
    consecutive_failures: int
    opened_until: datetime | None
    last_error: str | None


async def wait_until(session: AsyncSession, provider: str, now: datetime) -> datetime | None:
    """When an open circuit lets the next delivery through; None: go ahead (closed, or open
    long enough for this delivery to be the probe)."""
    if provider in UNGUARDED:
        return None
    until = await session.scalar(
        select(ProviderCircuit.opened_until).where(
            ProviderCircuit.provider == provider, ProviderCircuit.state == "open"
        )
    )
    return until if until is not None and until > now else None


async def record(
    session: AsyncSession, provider: str, result: SendResult, now: datetime
) -> CircuitView | None:
    """Count the answer: a success closes the circuit, a transient failure may open it."""
    return await record_many(session, provider, [result], now)


async def record_many(
    session: AsyncSession, provider: str, results: Sequence[SendResult], now: datetime
) -> CircuitView | None:
    """Count a chunk's answers in the order they came: the state recording them one by one
    would leave, with one read when the provider is healthy and every answer a success."""
    counted = [r for r in results if r.status != "permanent"]
    if provider in UNGUARDED or not counted:
        return None
    if all(r.status == "sent" for r in counted):
        # The common case, a healthy provider: a plain read, no lock and no write, so concurrent
        # deliveries do not queue behind one row.
        healthy = await session.scalar(
            select(ProviderCircuit.provider).where(
                ProviderCircuit.provider == provider,
                ProviderCircuit.state == "closed",
                ProviderCircuit.consecutive_failures == 0,
            )
        )
        if healthy is not None:
            return None
    current = await _locked(session, provider, now)
    if current is None:  # inserted above or by a racing worker: one of them holds
        return None
    for result in counted:
        _count(current, result, now)
    current.updated_at = now
    return view(current)


async def _locked(session: AsyncSession, provider: str, now: datetime) -> ProviderCircuit | None:
    """The provider's row FOR UPDATE, created closed on its first answer."""
    current = await session.scalar(
        select(ProviderCircuit).where(ProviderCircuit.provider == provider).with_for_update()
    )
    if current is None:
        await session.execute(
            insert(ProviderCircuit)
            .values(provider=provider, state="closed", consecutive_failures=0, updated_at=now)
            .on_conflict_do_nothing(index_elements=["provider"])
        )
        current = await session.scalar(
            select(ProviderCircuit).where(ProviderCircuit.provider == provider).with_for_update()
        )
    return current


def _count(current: ProviderCircuit, result: SendResult, now: datetime) -> None:
    if result.status == "sent":
        current.state, current.consecutive_failures, current.opened_until = "closed", 0, None
        return
    current.consecutive_failures += 1
    current.last_error = result.detail[:500]
    if current.consecutive_failures >= FAILURES_TO_OPEN:
        # Every failure beyond the threshold doubles the wait: a provider that stays down
        # is probed less and less often.
        extra = current.consecutive_failures - FAILURES_TO_OPEN
        current.state = "open"
        current.opened_until = now + min(FIRST_OPEN * 2**extra, MAX_OPEN)


def view(row: ProviderCircuit) -> CircuitView:
    return CircuitView(
        row.provider, row.state, row.consecutive_failures, row.opened_until, row.last_error
    )


async def all_circuits(session: AsyncSession) -> list[CircuitView]:
    rows = await session.scalars(select(ProviderCircuit).order_by(ProviderCircuit.provider))
    return [view(row) for row in rows]

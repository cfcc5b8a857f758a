"""Domain events through a transactional outbox.

`emit` writes the event row and defers its dispatch job in the caller's transaction: the event
exists if and only if the change committed. The job runs the internal handlers registered with
`on_event` (the outbound-webhook fan-out is one of them) and marks the event dispatched.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import DateTime, String, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from leadrelay.core.clock import utcnow
from leadrelay.core.db import Base, any_uuid, raw_connection
from leadrelay.core.jobs import defer, job_app, retry_strategy, runtime
from leadrelay.core.logging import correlation_id_var, get_logger
from leadrelay.core.models import CreatedAt, TenantOwned, UUIDPk

log = get_logger("leadrelay.events")

DISPATCH_TASK = "events.dispatch"


class OutboxEvent(TenantOwned, Base):
    __tablename__ = "outbox_events"

    id: Mapped[UUIDPk]
    type: Mapped[str] = mapped_column(String(100), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[CreatedAt]
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


Handler = Callable[[AsyncSession, OutboxEvent], Awaitable[None]]
_handlers: dict[str, list[Handler]] = {}


def on_event(event_type: str) -> Callable[[Handler], Handler]:
    """Register an internal handler; "*" receives every event. Handlers must be idempotent:
    a retried dispatch runs them again."""

    def register(handler: Handler) -> Handler:
        _handlers.setdefault(event_type, []).append(handler)
        return handler

    return register


def handlers_for(event_type: str) -> list[Handler]:
    return [*_handlers.get(event_type, []), *_handlers.get("*", [])]


async def emit(
    session: AsyncSession, tenant_id: uuid.UUID, event_type: str, payload: dict[str, Any]
) -> OutboxEvent:
    event = OutboxEvent(
        tenant_id=tenant_id,
        type=event_type,
        payload=payload,
        correlation_id=correlation_id_var.get(),
    )
    session.add(event)
    await session.flush()
    await defer(session, DISPATCH_TASK, tenant_id=str(tenant_id), event_id=str(event.id))
    return event


_INSERT_EVENTS = (
    "INSERT INTO outbox_events (tenant_id, correlation_id, id, type, payload) "
    "SELECT %s, %s, id, type, payload FROM unnest(%b::uuid[], %b::text[], %b::jsonb[]) "
    "AS t(id, type, payload)"
)


async def emit_many(
    session: AsyncSession, tenant_id: uuid.UUID, events: list[tuple[str, dict[str, Any]]]
) -> list[uuid.UUID]:
    """Emit a chunk of events (bulk paths): one insert and one dispatch job for all of them."""
    if not events:
        return []
    ids = [uuid.uuid4() for _ in events]
    # One set-based statement on the session's connection: the ORM's multi-row insert compiles
    # a placeholder per value, which cost more than writing the rows.
    await session.flush()
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(
            _INSERT_EVENTS,
            (
                tenant_id,
                correlation_id_var.get(),
                ids,
                [event_type for event_type, _ in events],
                [Jsonb(payload) for _, payload in events],
            ),
        )
    await defer(session, DISPATCH_TASK, tenant_id=str(tenant_id), event_ids=[str(i) for i in ids])
    return ids


async def dispatch_events(
    session: AsyncSession, event_ids: list[uuid.UUID], *, now: datetime
) -> int:
    """Run every handler once for each event not yet dispatched; returns how many ran. The
    events are locked together, so a retried or concurrent dispatch skips what is done."""
    events = await session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.id == any_uuid(event_ids), OutboxEvent.dispatched_at.is_(None))
        .order_by(OutboxEvent.created_at, OutboxEvent.id)
        .with_for_update(skip_locked=True)
    )
    done: list[uuid.UUID] = []
    for event in events:
        for handler in handlers_for(event.type):
            await handler(session, event)
        done.append(event.id)
    if done:
        # One statement for the chunk: the unit of work would send an UPDATE per event.
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == any_uuid(done))
            .values(dispatched_at=now)
            .execution_options(synchronize_session=False)
        )
        log.info("events.dispatched", count=len(done))
    return len(done)


async def dispatch_event(session: AsyncSession, event_id: uuid.UUID, *, now: datetime) -> bool:
    """Run every handler for the event once; returns False if it was already dispatched."""
    return await dispatch_events(session, [event_id], now=now) == 1


@job_app.task(name=DISPATCH_TASK, retry=retry_strategy())
async def dispatch_task(
    *,
    tenant_id: str,
    event_id: str | None = None,
    event_ids: list[str] | None = None,
    correlation_id: str | None = None,
) -> None:
    """One event (`emit`) or a chunk of them (`emit_many`)."""
    ids = [uuid.UUID(i) for i in ([event_id] if event_id else []) + (event_ids or [])]
    async with runtime().db.session(uuid.UUID(tenant_id)) as session:
        await dispatch_events(session, ids, now=utcnow())

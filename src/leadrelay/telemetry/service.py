"""Provider events into the database: placed on their message, de-duplicated, the message's
state moved forward, the address suppressed when the event says so.

A webhook names no tenant. The narrow `telemetry_find_messages` look-up places each event by
our message id (SendGrid and Mailgun echo it back) or by the provider's; every event it places
is then stored and applied inside that tenant's own session, under its row-level security.
An event it cannot place yet — Twilio can report a message before the send that created it
has recorded Twilio's id — waits in `unmatched_delivery_events`, and `claim_unmatched` applies
it when the message learns its provider id.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.core.db import Database, raw_connection, set_tenant
from leadrelay.identity.models import Role
from leadrelay.identity.service import Principal
from leadrelay.outreach import campaigns, suppression
from leadrelay.outreach.models import SuppressionReason
from leadrelay.telemetry.events import DeliveryEvent, EventKind, Provider
from leadrelay.telemetry.state import DeliveryState, advance, suppression_for

_FIND = (
    "SELECT id, tenant_id, provider_message_id FROM telemetry_find_messages(%s::uuid[], %s::text[])"
)
_KEEP_UNMATCHED = (
    "INSERT INTO unmatched_delivery_events (provider, provider_event_id, provider_message_id, "
    "our_message_id, kind, event, received_at) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::jsonb[], %s::timestamptz[]) "
    "ON CONFLICT (provider, provider_event_id) DO NOTHING RETURNING provider_event_id"
)
_CLAIM_UNMATCHED = (
    "DELETE FROM unmatched_delivery_events WHERE provider_message_id = %s "
    "OR our_message_id = %s RETURNING event"
)
_STORE = (
    "INSERT INTO delivery_events (tenant_id, message_id, provider, kind, provider_event_id, "
    "occurred_at, received_at, bounce, reason, error_code, applied, raw) "
    "SELECT %s, message_id, provider, kind, provider_event_id, occurred_at, %s, bounce, "
    "reason, error_code, false, raw "
    "FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::timestamptz[], "
    "%s::text[], %s::text[], %s::text[], %s::jsonb[]) "
    "AS t(message_id, provider, kind, provider_event_id, occurred_at, bounce, reason, "
    "error_code, raw) "
    "ON CONFLICT (tenant_id, provider, provider_event_id) DO NOTHING "
    "RETURNING id, provider, provider_event_id"
)
_LOCK_MESSAGES = (
    "SELECT id, lead_id, channel, recipient, delivery_status, delivery_rank, "
    "delivery_updated_at, delivered_at, opened_at, clicked_at "
    "FROM messages WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE"
)
_MOVE_MESSAGES = (
    "UPDATE messages AS m SET delivery_status = t.status, delivery_rank = t.rank, "
    "delivery_updated_at = t.updated_at, delivered_at = t.delivered_at, "
    "opened_at = t.opened_at, clicked_at = t.clicked_at "
    "FROM unnest(%s::uuid[], %s::text[], %s::smallint[], %s::timestamptz[], "
    "%s::timestamptz[], %s::timestamptz[], %s::timestamptz[]) "
    "AS t(id, status, rank, updated_at, delivered_at, opened_at, clicked_at) WHERE m.id = t.id"
)
_MARK_APPLIED = "UPDATE delivery_events SET applied = true WHERE id = ANY(%s::uuid[])"

# What a campaign member stops for (a click or an open is interest, not a reason to stop).
_STOPS_CAMPAIGNS = frozenset({EventKind.UNSUBSCRIBED, EventKind.COMPLAINED})


@dataclass(frozen=True, slots=True)
class Receipt:
    """What became of a webhook's events."""

    stored: int = 0  # new events placed on their message
    duplicates: int = 0  # seen before (a provider retry), ignored
    unmatched: int = 0  # no message yet: kept for later matching
    moved: int = 0  # events that moved a message's state forward
    suppressed: int = 0  # addresses barred by these events

    def __add__(self, other: Receipt) -> Receipt:
        return Receipt(
            self.stored + other.stored,
            self.duplicates + other.duplicates,
            self.unmatched + other.unmatched,
            self.moved + other.moved,
            self.suppressed + other.suppressed,
        )

    def as_json(self) -> dict[str, int]:
        return {
            "stored": self.stored,
            "duplicates": self.duplicates,
            "unmatched": self.unmatched,
            "moved": self.moved,
            "suppressed": self.suppressed,
        }


def _uuid(value: str | None) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None  # not ours: someone else's custom argument, matched by provider id


def _named_ids(events: Sequence[DeliveryEvent]) -> tuple[list[uuid.UUID], list[str]]:
    """The message ids the events name: ours (echoed back) and the provider's."""
    our_ids = sorted({u for e in events if (u := _uuid(e.our_message_id)) is not None})
    provider_ids = sorted({e.provider_message_id for e in events if e.provider_message_id})
    return our_ids, provider_ids


def event_json(event: DeliveryEvent) -> dict[str, Any]:
    """The normalized event as JSON, to keep while it waits for its message."""
    return {
        "provider": event.provider.value,
        "kind": event.kind.value,
        "provider_message_id": event.provider_message_id,
        "our_message_id": event.our_message_id,
        "recipient": event.recipient,
        "occurred_at": event.occurred_at.isoformat(),
        "provider_event_id": event.provider_event_id,
        "bounce": event.bounce,
        "reason": event.reason,
        "error_code": event.error_code,
        "raw": dict(event.raw),
    }


def event_from_json(data: Mapping[str, Any]) -> DeliveryEvent:
    return DeliveryEvent(
        provider=Provider(data["provider"]),
        kind=EventKind(data["kind"]),
        provider_message_id=data.get("provider_message_id"),
        our_message_id=data.get("our_message_id"),
        recipient=data.get("recipient"),
        occurred_at=datetime.fromisoformat(data["occurred_at"]),
        provider_event_id=data["provider_event_id"],
        bounce=data.get("bounce"),
        reason=data.get("reason"),
        error_code=data.get("error_code"),
        raw=data.get("raw") or {},
    )


async def receive(
    db: Database, events: Sequence[DeliveryEvent], *, keys: str, now: datetime
) -> Receipt:
    """Place, store and apply a webhook's events, in one transaction."""
    if not events:
        return Receipt()
    our_ids, provider_ids = _named_ids(events)
    placed: dict[uuid.UUID, list[tuple[uuid.UUID, DeliveryEvent]]] = defaultdict(list)
    waiting: list[DeliveryEvent] = []
    async with db.session() as session:
        connection = await raw_connection(session)
        async with connection.cursor() as cursor:
            await cursor.execute(_FIND, (our_ids, provider_ids))
            found = await cursor.fetchall()
        by_id = {row[0]: row[1] for row in found}
        by_provider_id = {row[2]: (row[0], row[1]) for row in found if row[2]}
        for event in events:
            message_id = _uuid(event.our_message_id)
            if message_id is not None and message_id in by_id:
                placed[by_id[message_id]].append((message_id, event))
            elif event.provider_message_id in by_provider_id:
                message_id, tenant_id = by_provider_id[event.provider_message_id]
                placed[tenant_id].append((message_id, event))
            else:
                waiting.append(event)
        receipt = await _keep_unmatched(session, waiting, now=now)
        # The same transaction, bound to each tenant in turn: one commit per webhook (a
        # provider retries the whole body if anything fails, and every step is idempotent).
        for tenant_id, items in placed.items():
            await set_tenant(session, tenant_id)
            receipt += await apply(session, tenant_id, items, keys=keys, now=now)
    return receipt


_FIND_IN_TENANT = (
    "SELECT id, provider_message_id FROM messages "
    "WHERE id = ANY(%s::uuid[]) OR provider_message_id = ANY(%s::text[])"
)


async def receive_for_tenant(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    events: Sequence[DeliveryEvent],
    *,
    keys: str,
    now: datetime,
) -> Receipt:
    """Events that came through one tenant's own signed endpoint (a WhatsApp Cloud source):
    placed among that tenant's messages only, so that a tenant's endpoint can never touch
    another tenant's. One that matches none is counted, not kept: nothing but this tenant
    could claim it, and we send no WhatsApp message that would."""
    if not events:
        return Receipt()
    our_ids, provider_ids = _named_ids(events)
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(_FIND_IN_TENANT, (our_ids, provider_ids))
        found = await cursor.fetchall()
    ids = {row[0] for row in found}
    by_provider_id = {row[1]: row[0] for row in found if row[1]}
    items: list[tuple[uuid.UUID, DeliveryEvent]] = []
    for event in events:
        message_id = _uuid(event.our_message_id)
        if message_id is None or message_id not in ids:
            message_id = by_provider_id.get(event.provider_message_id or "")
        if message_id is not None:
            items.append((message_id, event))
    receipt = await apply(session, tenant_id, items, keys=keys, now=now)
    return receipt + Receipt(unmatched=len(events) - len(items))


async def _keep_unmatched(
    session: AsyncSession, events: Sequence[DeliveryEvent], *, now: datetime
) -> Receipt:
    if not events:
        return Receipt()
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(
            _KEEP_UNMATCHED,
            (
                [e.provider.value for e in events],
                [e.provider_event_id for e in events],
                [e.provider_message_id for e in events],
                [e.our_message_id for e in events],
                [e.kind.value for e in events],
                [Jsonb(event_json(e)) for e in events],
                [now] * len(events),
            ),
        )
        kept = len(await cursor.fetchall())
    return Receipt(unmatched=kept, duplicates=len(events) - kept)


async def claim_unmatched(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    message_id: uuid.UUID,
    provider_message_id: str | None,
    *,
    keys: str,
    now: datetime,
) -> Receipt:
    """Apply the events that arrived before this message's provider id was known (called as
    the send records it, in the same transaction)."""
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(_CLAIM_UNMATCHED, (provider_message_id or "", str(message_id)))
        rows = await cursor.fetchall()
    if not rows:
        return Receipt()
    items = [(message_id, event_from_json(row[0])) for row in rows]
    return await apply(session, tenant_id, items, keys=keys, now=now)


async def apply(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    items: Sequence[tuple[uuid.UUID, DeliveryEvent]],
    *,
    keys: str,
    now: datetime,
) -> Receipt:
    """Store the events of one tenant (a provider retry is stored once) and apply the new
    ones: each message's state moves forward, addresses are suppressed when an event says so."""
    if not items:
        return Receipt()
    await session.flush()
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(
            _STORE,
            (
                tenant_id,
                now,
                [m for m, _ in items],
                [e.provider.value for _, e in items],
                [e.kind.value for _, e in items],
                [e.provider_event_id for _, e in items],
                [e.occurred_at for _, e in items],
                [e.bounce for _, e in items],
                [e.reason for _, e in items],
                [e.error_code for _, e in items],
                [Jsonb(dict(e.raw)) for _, e in items],
            ),
        )
        new = {(row[1], row[2]): row[0] for row in await cursor.fetchall()}
        fresh: dict[uuid.UUID, list[tuple[uuid.UUID, DeliveryEvent]]] = defaultdict(list)
        for message_id, event in items:
            row_id = new.pop((event.provider.value, event.provider_event_id), None)
            if row_id is not None:  # popped: the same event twice in one body counts once
                fresh[message_id].append((row_id, event))
        stored = sum(len(v) for v in fresh.values())
        if not fresh:
            return Receipt(duplicates=len(items))
        await cursor.execute(_LOCK_MESSAGES, (sorted(fresh),))
        messages = {row[0]: row for row in await cursor.fetchall()}
        moved_rows: list[uuid.UUID] = []
        changed: list[tuple[uuid.UUID, DeliveryState]] = []
        effects: list[tuple[Any, DeliveryEvent, SuppressionReason | None]] = []
        for message_id, events in fresh.items():
            row = messages.get(message_id)
            if row is None:
                continue  # erased between placing and locking: the events stay as history
            before = DeliveryState(*row[4:10])
            state = before
            for row_id, event in sorted(events, key=lambda pair: pair[1].occurred_at):
                state, moved = advance(state, event)
                if moved:
                    moved_rows.append(row_id)
                reason = suppression_for(event)
                if reason is not None or event.kind in _STOPS_CAMPAIGNS:
                    effects.append((row, event, reason))
            if state != before:
                changed.append((message_id, state))
        if changed:
            await cursor.execute(
                _MOVE_MESSAGES,
                (
                    [m for m, _ in changed],
                    [s.status for _, s in changed],
                    [s.rank for _, s in changed],
                    [s.updated_at for _, s in changed],
                    [s.delivered_at for _, s in changed],
                    [s.opened_at for _, s in changed],
                    [s.clicked_at for _, s in changed],
                ),
            )
        if moved_rows:
            await cursor.execute(_MARK_APPLIED, (moved_rows,))
    suppressed = await _apply_effects(session, tenant_id, effects, keys=keys, now=now)
    return Receipt(
        stored=stored,
        duplicates=len(items) - stored,
        moved=len(moved_rows),
        suppressed=suppressed,
    )


async def _apply_effects(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    effects: Sequence[tuple[Any, DeliveryEvent, SuppressionReason | None]],
    *,
    keys: str,
    now: datetime,
) -> int:
    suppressed = 0
    for row, event, reason in effects:
        _, lead_id, channel, recipient = row[0], row[1], row[2], row[3]
        if reason is not None:
            actor = Principal(
                tenant_id,
                "system",
                None,
                f"webhook:{event.provider.value}",
                Role.OWNER,
                frozenset(),
            )
            email = channel == "email"
            await suppression.suppress(
                session,
                actor,
                keys=keys,
                kind="email" if email else "phone",
                normalized=recipient.casefold() if email else recipient,
                reason=reason,
                source=f"{event.provider.value} {event.kind.value}",
                note=event.reason or event.error_code,
                now=now,
            )
            suppressed += 1
        if event.kind in _STOPS_CAMPAIGNS or reason is SuppressionReason.OPTED_OUT:
            await campaigns.stop_for_lead(session, lead_id, event.kind.value, now=now)
    return suppressed

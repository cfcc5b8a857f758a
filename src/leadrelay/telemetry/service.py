"""Provider events into the database: placed on their message, de-duplicated, the message's
state moved forward, the address suppressed when the event says so.

A webhook names no tenant. The narrow `telemetry_find_messages` look-up places each event by
our message id (SendGrid and Mailgun echo it back) or by the provider's; every event it places
is then stored and applied inside that tenant's own session, under its row-level security.
An event it cannot place yet — Twilio can report a message before the send that created it
has recorded Twilio's id — waits in `unmatched_delivery_events`, and `claim_unmatched` applies
it when the message learns its provider id.

`receive_batch` does this for the events of several webhooks at once, in one transaction, and
says what became of each webhook's events (`telemetry.batcher` gathers concurrent webhooks
into one such call). Per tenant it costs a fixed handful of statements whatever the number of
events: lock the messages named, store the new events (their `applied` flag already known),
write back the messages whose state changed.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from psycopg.types.json import Json
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.core.db import Database, json_bytes, raw_connection
from leadrelay.identity.models import Role
from leadrelay.identity.service import Principal
from leadrelay.outreach import campaigns, suppression
from leadrelay.outreach.models import SuppressionReason
from leadrelay.telemetry.events import DeliveryEvent, EventKind, Provider
from leadrelay.telemetry.state import DeliveryState, advance, suppression_for

_FIND = (
    "SELECT id, tenant_id, provider_message_id FROM telemetry_find_messages(%b::uuid[], %b::text[])"
)
_KEEP_UNMATCHED = (
    "INSERT INTO unmatched_delivery_events (provider, provider_event_id, provider_message_id, "
    "our_message_id, kind, event, received_at) "
    "SELECT provider, provider_event_id, provider_message_id, our_message_id, kind, event, %s "
    "FROM json_to_recordset(%s::json) AS t(provider text, provider_event_id text, "
    "provider_message_id text, our_message_id text, kind text, event jsonb) "
    "ON CONFLICT (provider, provider_event_id) DO NOTHING RETURNING provider, provider_event_id"
)
_CLAIM_UNMATCHED = (
    "DELETE FROM unmatched_delivery_events WHERE provider_message_id = %s "
    "OR our_message_id = %s RETURNING event"
)
# The rows travel as one JSON array (`json_to_recordset`): one parameter that orjson writes in
# a few microseconds a row, where eleven typed arrays cost psycopg several times that.
# `applied` is known before the insert: the events are folded into the locked state first
# (see `_apply`). A repeat of a stored event conflicts on its 16-byte key (generated from
# provider and event id) and is left out.
_STORE = (
    "INSERT INTO delivery_events (tenant_id, message_id, provider, kind, provider_event_id, "
    "occurred_at, received_at, bounce, reason, error_code, applied, raw) "
    "SELECT %s, message_id, provider, kind, provider_event_id, occurred_at, %s, "
    "bounce, reason, error_code, applied, raw "
    "FROM json_to_recordset(%s::json) AS t(message_id uuid, provider text, kind text, "
    "provider_event_id text, occurred_at timestamptz, bounce text, "
    "reason text, error_code text, applied boolean, raw jsonb) "
    "ON CONFLICT (tenant_id, event_key) DO NOTHING "
    "RETURNING provider, provider_event_id"
)
_LOCK_MESSAGES = (
    "SELECT id, lead_id, channel, recipient, delivery_status, delivery_rank, "
    "delivery_updated_at, delivered_at, opened_at, clicked_at "
    "FROM messages WHERE id = ANY(%b::uuid[]) ORDER BY id FOR UPDATE"
)
_MOVE_MESSAGES = (
    "UPDATE messages AS m SET delivery_status = t.status, delivery_rank = t.rank, "
    "delivery_updated_at = t.updated_at, delivered_at = t.delivered_at, "
    "opened_at = t.opened_at, clicked_at = t.clicked_at "
    "FROM json_to_recordset(%s::json) AS t(id uuid, status text, rank smallint, "
    "updated_at timestamptz, delivered_at timestamptz, opened_at timestamptz, "
    "clicked_at timestamptz) WHERE m.id = t.id"
)
# `core.db.set_tenant`, on the raw connection the batch already holds.
_SET_TENANT = "SELECT set_config('app.tenant_id', %s, true)"

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


# What became of one event (summed into each webhook's receipt).
_DUPLICATE = Receipt(duplicates=1)
_UNMATCHED = Receipt(unmatched=1)
_STORED = Receipt(stored=1)
_STORED_MOVED = Receipt(stored=1, moved=1)


def has_effects(events: Sequence[DeliveryEvent]) -> bool:
    """Whether applying these events may suppress an address or stop a campaign — work that
    is audited and emits events under the request's correlation id."""
    return any(
        event.kind in _STOPS_CAMPAIGNS or suppression_for(event) is not None for event in events
    )


def _total(outcomes: Sequence[Receipt]) -> Receipt:
    stored = duplicates = unmatched = moved = suppressed = 0
    for outcome in outcomes:
        stored += outcome.stored
        duplicates += outcome.duplicates
        unmatched += outcome.unmatched
        moved += outcome.moved
        suppressed += outcome.suppressed
    return Receipt(stored, duplicates, unmatched, moved, suppressed)


def event_key(provider: str, provider_event_id: str) -> uuid.UUID:
    """The event's identity across provider retries, as `delivery_events` de-duplicates it
    (its generated `event_key`, migration 0021): the MD5 of `provider:provider_event_id`. A
    short fixed key keeps the unique index small where the provider's own id may run to 300
    characters; a digest for de-duplication, not for security."""
    digest = hashlib.md5(f"{provider}:{provider_event_id}".encode(), usedforsecurity=False)
    return uuid.UUID(bytes=digest.digest())


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
    async with db.session() as session:
        return (await receive_batch(session, [events], keys=keys, now=now))[0]


async def receive_batch(
    session: AsyncSession,
    webhooks: Sequence[Sequence[DeliveryEvent]],
    *,
    keys: str,
    now: datetime,
) -> list[Receipt]:
    """Place, store and apply the events of several webhooks in the session's transaction
    (bound to no tenant: it is bound to each in turn): a receipt per webhook, in order. An
    event that two of them carry (a provider retrying while the first delivery is still
    being written) is stored once, for the first; the others count it as a duplicate, as they
    would have a moment later. The caller commits (a provider retries the whole body if
    anything fails, and every step is idempotent)."""
    events = [event for webhook in webhooks for event in webhook]
    if not events:
        return [Receipt() for _ in webhooks]
    outcomes: list[Receipt] = [_DUPLICATE] * len(events)
    connection = await raw_connection(session)
    placed, waiting = await _place(connection, events)
    if waiting:
        kept = await _keep_unmatched(session, [events[i] for i in waiting], now=now)
        for index, outcome in zip(waiting, kept, strict=True):
            outcomes[index] = outcome
    # Tenants in a fixed order, so that two concurrent batches lock alike.
    for tenant_id in sorted(placed):
        indexes = placed[tenant_id]
        applied = await _apply(
            session,
            tenant_id,
            [(message_id, events[i]) for i, message_id in indexes],
            keys=keys,
            now=now,
            bind_tenant=True,
        )
        for (index, _), outcome in zip(indexes, applied, strict=True):
            outcomes[index] = outcome
    receipts: list[Receipt] = []
    start = 0
    for webhook in webhooks:
        receipts.append(_total(outcomes[start : start + len(webhook)]))
        start += len(webhook)
    return receipts


async def _place(
    connection: Any, events: Sequence[DeliveryEvent]
) -> tuple[dict[uuid.UUID, list[tuple[int, uuid.UUID]]], list[int]]:
    """Each event's tenant and message (by index into `events`), and the events placed on
    none. Our id, when echoed back, places an event; the provider's id places the others.
    The look-up asks for provider ids only where our id cannot place the event, a second
    look-up covering the rare id of ours that names no message."""
    ours = [_uuid(event.our_message_id) for event in events]
    by_id: dict[uuid.UUID, uuid.UUID] = {}
    by_provider_id: dict[str, tuple[uuid.UUID, uuid.UUID]] = {}

    async def look_up(our_ids: list[uuid.UUID], provider_ids: list[str]) -> None:
        # In a pipeline: the transaction's BEGIN goes in the same round trip.
        async with connection.pipeline(), connection.cursor() as cursor:
            await cursor.execute(_FIND, (our_ids, provider_ids), binary=True)
            found = await cursor.fetchall()
        for message_id, tenant_id, provider_message_id in found:
            by_id[message_id] = tenant_id
            if provider_message_id:
                by_provider_id[provider_message_id] = (message_id, tenant_id)

    # Sets, not sorted: the order is the look-up's own business (sorting UUIDs costs Python).
    our_ids = list({u for u in ours if u is not None})
    provider_ids = list(
        {
            event.provider_message_id
            for event, our in zip(events, ours, strict=True)
            if our is None and event.provider_message_id
        }
    )
    await look_up(our_ids, provider_ids)
    missing = list(
        {
            event.provider_message_id
            for event, our in zip(events, ours, strict=True)
            if our is not None
            and our not in by_id
            and event.provider_message_id
            and event.provider_message_id not in by_provider_id
        }
    )
    if missing:
        await look_up([], missing)
    placed: dict[uuid.UUID, list[tuple[int, uuid.UUID]]] = defaultdict(list)
    waiting: list[int] = []
    for index, (event, our) in enumerate(zip(events, ours, strict=True)):
        if our is not None and our in by_id:
            placed[by_id[our]].append((index, our))
        elif event.provider_message_id in by_provider_id:
            message_id, tenant_id = by_provider_id[event.provider_message_id]
            placed[tenant_id].append((index, message_id))
        else:
            waiting.append(index)
    return placed, waiting


_FIND_IN_TENANT = (
    "SELECT id, provider_message_id FROM messages "
    "WHERE id = ANY(%b::uuid[]) OR provider_message_id = ANY(%b::text[])"
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
) -> list[Receipt]:
    """Keep events no message claims yet; what became of each (a retry of one kept already,
    or a repeat within `events`, is a duplicate)."""
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(
            _KEEP_UNMATCHED,
            (
                now,
                Json(
                    [
                        {
                            "provider": e.provider.value,
                            "provider_event_id": e.provider_event_id,
                            "provider_message_id": e.provider_message_id,
                            "our_message_id": e.our_message_id,
                            "kind": e.kind.value,
                            "event": _embedded(event_json(e)),
                        }
                        for e in events
                    ]
                ),
            ),
            binary=True,
        )
        kept = {(row[0], row[1]) for row in await cursor.fetchall()}
    outcomes: list[Receipt] = []
    for event in events:
        key = (event.provider.value, event.provider_event_id)
        if key in kept:
            kept.discard(key)  # the first of the repeats is the one kept
            outcomes.append(_UNMATCHED)
        else:
            outcomes.append(_DUPLICATE)
    return outcomes


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
    ones: each message's state moves forward, addresses are suppressed when an event says so.
    The session is bound to `tenant_id`."""
    if not items:
        return Receipt()
    return _total(await _apply(session, tenant_id, items, keys=keys, now=now))


@dataclass(slots=True)
class _Fold:
    """Events folded into their locked messages' states."""

    applied: dict[int, bool]  # item index: whether the event moved its message's state
    changed: list[tuple[uuid.UUID, DeliveryState]]  # messages whose state is not as it was


def _fold(
    items: Sequence[tuple[uuid.UUID, DeliveryEvent]],
    by_message: Mapping[uuid.UUID, Sequence[int]],
    messages: Mapping[uuid.UUID, Any],
) -> _Fold:
    """Each message's events, oldest first, folded into its state as it was locked."""
    fold = _Fold({}, [])
    for message_id, indexes in by_message.items():
        before = DeliveryState(*messages[message_id][4:10])
        state = before
        for index in sorted(indexes, key=lambda i: items[i][1].occurred_at):
            state, fold.applied[index] = advance(state, items[index][1])
        if state != before:
            fold.changed.append((message_id, state))
    return fold


async def _apply(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    items: Sequence[tuple[uuid.UUID, DeliveryEvent]],
    *,
    keys: str,
    now: datetime,
    bind_tenant: bool = False,
) -> list[Receipt]:
    """`apply`, saying what became of each item; with `bind_tenant`, binds the transaction to
    `tenant_id` first (in the same round trip as the lock).

    The messages are locked first and the events folded into their states before anything
    is stored, so that each row goes in once, `applied` already set. Folding in an event that
    turns out to be stored already changes nothing — the state has held it since it was first
    applied, ranks only rise and milestones only move earlier — so the state is that of the
    new events alone, as if the repeats had been left out. Should a repeat ever be found,
    the new events are folded again on their own and that fold is what is written: the
    guarantee does not rest on the argument. Only new events count as moved, and only they
    suppress or stop campaigns."""
    await session.flush()
    outcomes: list[Receipt] = [_DUPLICATE] * len(items)
    # A repeat within the call (the same event twice in one body) is a duplicate of the first.
    firsts: dict[tuple[str, str], int] = {}
    for index, (_, event) in enumerate(items):
        firsts.setdefault((event.provider.value, event.provider_event_id), index)
    by_message: dict[uuid.UUID, list[int]] = defaultdict(list)
    for index in firsts.values():
        by_message[items[index][0]].append(index)

    # Statements whose results are not needed before the next are pipelined: bind + lock in
    # one round trip, store + write back in another.
    connection = await raw_connection(session)
    async with connection.pipeline(), connection.cursor() as cursor:
        if bind_tenant:
            await cursor.execute(_SET_TENANT, (str(tenant_id),))
        # The statement locks in id order (ORDER BY id): two batches never wait on each other
        # crosswise.
        await cursor.execute(_LOCK_MESSAGES, (list(by_message),), binary=True)
        messages = {row[0]: row for row in await cursor.fetchall()}
    for message_id in [m for m in by_message if m not in messages]:
        # Erased between placing and locking: nothing to apply the events to, and nothing
        # kept of a person who asked to be forgotten.
        for index in by_message.pop(message_id):
            outcomes[index] = _UNMATCHED
    if not by_message:
        return outcomes
    fold = _fold(items, by_message, messages)
    to_store = list(fold.applied)
    stored_events = [items[i][1] for i in to_store]
    rows = [
        {
            "message_id": items[i][0],
            "provider": e.provider.value,
            "kind": e.kind.value,
            "provider_event_id": e.provider_event_id,
            "occurred_at": e.occurred_at,
            "bounce": e.bounce,
            "reason": e.reason,
            "error_code": e.error_code,
            "applied": fold.applied[i],
            "raw": e.raw,
        }
        for i, e in zip(to_store, stored_events, strict=True)
    ]
    async with connection.pipeline(), connection.cursor() as cursor:
        await cursor.execute(_STORE, (tenant_id, now, _rows_json(rows)), binary=True)
        if fold.changed:
            # Sent before the new rows are known: folding in a stored event changes nothing,
            # so these states are right whichever rows turn out new (and checked below).
            async with connection.cursor() as move:
                await move.execute(_MOVE_MESSAGES, (_states_json(fold.changed),))
        new = {(row[0], row[1]) for row in await cursor.fetchall()}
    fresh = [
        i for i in to_store if (items[i][1].provider.value, items[i][1].provider_event_id) in new
    ]
    if len(fresh) < len(to_store):
        fold = await _refold(connection, tenant_id, items, fresh, messages, fold)
    for index in fresh:
        outcomes[index] = _STORED_MOVED if fold.applied[index] else _STORED
    effects = [
        (index, messages[items[index][0]], reason)
        for index in fresh  # in the fold's order: by message, oldest first
        if (reason := suppression_for(items[index][1])) is not None
        or items[index][1].kind in _STOPS_CAMPAIGNS
    ]
    if effects:
        suppressed = await _apply_effects(
            session,
            tenant_id,
            [(row, items[index][1], reason) for index, row, reason in effects],
            keys=keys,
            now=now,
        )
        for (index, _, _), did in zip(effects, suppressed, strict=True):
            if did:
                outcomes[index] = outcomes[index] + Receipt(suppressed=1)
    return outcomes


def _rows_json(rows: list[dict[str, Any]]) -> Json:
    """The rows as one JSON document, their `raw` (the provider's own JSON) as is. Should
    orjson refuse a raw value (an integer beyond 64 bits …), each raw is written as before
    instead (`core.db.json_bytes`)."""
    try:
        return Json(orjson.Fragment(orjson.dumps(rows, option=orjson.OPT_NON_STR_KEYS)))
    except TypeError:  # orjson.JSONEncodeError
        return Json([{**row, "raw": _embedded(row["raw"])} for row in rows])


def _embedded(value: Mapping[str, Any]) -> orjson.Fragment:
    """A provider's own JSON, written as before (`core.db.json_bytes`: orjson, or the standard
    library for what orjson refuses) and embedded as is in the rows' document."""
    return orjson.Fragment(json_bytes(value if isinstance(value, dict) else dict(value)))


def _states_json(changed: Sequence[tuple[uuid.UUID, DeliveryState]]) -> Json:
    return Json(
        [
            {
                "id": message_id,
                "status": state.status,
                "rank": state.rank,
                "updated_at": state.updated_at,
                "delivered_at": state.delivered_at,
                "opened_at": state.opened_at,
                "clicked_at": state.clicked_at,
            }
            for message_id, state in changed
        ]
    )


_FIX_APPLIED = (
    "UPDATE delivery_events AS d SET applied = t.applied "
    "FROM unnest(%b::uuid[], %b::bool[]) AS t(event_key, applied) "
    "WHERE d.tenant_id = %s AND d.event_key = t.event_key"
)


async def _refold(
    connection: Any,
    tenant_id: uuid.UUID,
    items: Sequence[tuple[uuid.UUID, DeliveryEvent]],
    fresh: Sequence[int],
    messages: Mapping[uuid.UUID, Any],
    guessed: _Fold,
) -> _Fold:
    """Some events were stored already: fold the new ones alone and write what that fold
    says wherever the fold of them all said otherwise (it should nowhere)."""
    by_message: dict[uuid.UUID, list[int]] = defaultdict(list)
    for index in fresh:
        by_message[items[index][0]].append(index)
    fold = _fold(items, by_message, messages)
    wrong = [i for i in fresh if fold.applied[i] != guessed.applied[i]]
    before = {m: DeliveryState(*row[4:10]) for m, row in messages.items()}
    written, right = dict(guessed.changed), dict(fold.changed)
    differ = [
        (m, right.get(m, before[m]))
        for m in written.keys() | right.keys()
        if written.get(m, before[m]) != right.get(m, before[m])
    ]
    async with connection.cursor() as cursor:
        if wrong:
            await cursor.execute(
                _FIX_APPLIED,
                (
                    [
                        event_key(items[i][1].provider.value, items[i][1].provider_event_id)
                        for i in wrong
                    ],
                    [fold.applied[i] for i in wrong],
                    tenant_id,
                ),
                binary=True,
            )
        if differ:
            await cursor.execute(_MOVE_MESSAGES, (_states_json(differ),))
    return fold


async def _apply_effects(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    effects: Sequence[tuple[Any, DeliveryEvent, SuppressionReason | None]],
    *,
    keys: str,
    now: datetime,
) -> list[bool]:
    """Suppress and stop campaigns as the events say; whether each event suppressed."""
    suppressed: list[bool] = []
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
        suppressed.append(reason is not None)
        if event.kind in _STOPS_CAMPAIGNS or reason is SuppressionReason.OPTED_OUT:
            await campaigns.stop_for_lead(session, lead_id, event.kind.value, now=now)
    return suppressed

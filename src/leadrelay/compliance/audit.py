"""The append-only, hash-chained audit trail (one chain per tenant).

Each link's hash covers its predecessor's hash and the link's canonical content, so a changed,
removed or reordered row breaks every hash after it. The database refuses UPDATE, DELETE and
TRUNCATE on `audit_events`; `verify_chain` proves the rest. Rows hold ids and hashes, never raw
personal data.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.compliance.models import AuditEvent, AuditHead
from leadrelay.core.db import raw_connection
from leadrelay.core.logging import correlation_id_var, request_id_var

GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEntry:
    action: str
    actor_type: str = "system"
    actor_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


# One encoder for every link: json.dumps() with these options builds a new JSONEncoder per
# call. The output is byte-for-byte what json.dumps(..., sort_keys=True, separators=(",", ":"),
# default=str) gives, so existing chains still verify.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def _timestamp(occurred_at: datetime) -> str:
    return occurred_at.astimezone(UTC).isoformat(timespec="microseconds")


def _canonical_json(tenant: str, seq: int, occurred_at: str, entry: dict[str, Any]) -> bytes:
    content = {"tenant_id": tenant, "seq": seq, "occurred_at": occurred_at, **entry}
    return _CANONICAL_JSON.encode(content).encode()


def _canonical(
    tenant_id: uuid.UUID, seq: int, occurred_at: datetime, entry: dict[str, Any]
) -> bytes:
    return _canonical_json(str(tenant_id), seq, _timestamp(occurred_at), entry)


def link_hash(prev_hash: str, canonical: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical).hexdigest()


CONTENT_FIELDS = (
    "actor_type",
    "actor_id",
    "action",
    "target_type",
    "target_id",
    "correlation_id",
    "request_id",
    "data",
)


def _row_content(row: AuditEvent) -> dict[str, Any]:
    return {key: getattr(row, key) for key in CONTENT_FIELDS}


_LOCK_HEAD = "SELECT seq, hash FROM audit_heads WHERE tenant_id = %s FOR UPDATE"
_CREATE_HEAD = (
    "INSERT INTO audit_heads (tenant_id, seq, hash, checkpoint_seq, checkpoint_hash) "
    "VALUES (%s, 0, %s, 0, %s) ON CONFLICT (tenant_id) DO NOTHING"
)
_INSERT_LINK = (
    "INSERT INTO audit_events (tenant_id, seq, occurred_at, actor_type, actor_id, action, "
    "target_type, target_id, correlation_id, request_id, data, prev_hash, hash) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
# Several links in one statement: `executemany` would run an INSERT per link, each paying
# PostgreSQL's per-statement cost (a 500-lead routing chunk spent more on its audit than on
# the assignments it audits).
_INSERT_LINKS = (
    "INSERT INTO audit_events (tenant_id, seq, occurred_at, actor_type, actor_id, action, "
    "target_type, target_id, correlation_id, request_id, data, prev_hash, hash) "
    "SELECT %s, seq, %s, actor_type, actor_id, action, target_type, target_id, %s, %s, data, "
    "prev_hash, hash FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], "
    "%b::text[], %b::jsonb[], %b::text[], %b::text[]) "
    "AS t(seq, actor_type, actor_id, action, target_type, target_id, data, prev_hash, hash)"
)
_MOVE_HEAD = "UPDATE audit_heads SET seq = %s, hash = %s WHERE tenant_id = %s"


async def _lock_head(cursor: Any, tenant_id: uuid.UUID) -> tuple[int, str]:
    """Lock the tenant's chain head FOR UPDATE and return its (seq, hash); the first append of
    a tenant creates the head at genesis. Once the head exists this is one statement."""
    await cursor.execute(_LOCK_HEAD, (tenant_id,))
    head = await cursor.fetchone()
    if head is None:
        await cursor.execute(_CREATE_HEAD, (tenant_id, GENESIS_HASH, GENESIS_HASH))
        await cursor.execute(_LOCK_HEAD, (tenant_id,))
        head = await cursor.fetchone()
    if head is None:  # inserted just above; only a concurrent tenant deletion gets here
        raise RuntimeError(f"audit head for tenant {tenant_id} vanished")
    return int(head[0]), str(head[1])


async def lock_chain(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Take the tenant's chain head now, as the next append would, and hold it to the end of
    the transaction. For a path that takes a per-tenant lock of its own and audits under it
    while other paths audit first and take that lock after: taking the head first gives every
    path one order (see docs/architecture.md, "Lock order"), so two of them never wait for
    each other in a circle. Taking it again later in the same transaction costs nothing."""
    await session.flush()
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await _lock_head(cursor, tenant_id)


async def append_events(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    entries: Sequence[AuditEntry],
    *,
    now: datetime,
) -> list[str]:
    """Append links to the tenant's chain in the session's transaction; returns their hashes.

    Holds the chain head FOR UPDATE until the caller's transaction ends, so concurrent appends
    queue up instead of forking the chain. It speaks psycopg directly on the session's own
    connection (three statements for any number of links): the audit trail sits on every
    mutating path, and the ORM's per-row bookkeeping cost more than the insert itself.
    """
    if not entries:
        return []
    await session.flush()  # pending ORM rows first, so statement order stays as written
    connection = await raw_connection(session)
    hashes: list[str] = []
    columns: list[list[Any]] = [[] for _ in range(9)]
    seqs, actor_types, actor_ids, actions, target_types, target_ids, data, prevs, links = columns
    correlation_id = correlation_id_var.get()
    request_id = request_id_var.get()
    tenant, occurred_at = str(tenant_id), _timestamp(now)  # the same for every link
    async with connection.cursor() as cursor:
        seq, prev = await _lock_head(cursor, tenant_id)
        for entry in entries:
            seq += 1
            content = {  # exactly CONTENT_FIELDS
                "actor_type": entry.actor_type,
                "actor_id": entry.actor_id,
                "action": entry.action,
                "target_type": entry.target_type,
                "target_id": entry.target_id,
                "correlation_id": correlation_id,
                "request_id": request_id,
                "data": entry.data,
            }
            link = link_hash(prev, _canonical_json(tenant, seq, occurred_at, content))
            seqs.append(seq)
            actor_types.append(entry.actor_type)
            actor_ids.append(entry.actor_id)
            actions.append(entry.action)
            target_types.append(entry.target_type)
            target_ids.append(entry.target_id)
            data.append(Jsonb(entry.data))
            prevs.append(prev)
            links.append(link)
            hashes.append(link)
            prev = link
        if len(entries) == 1:
            await cursor.execute(
                _INSERT_LINK,
                (tenant_id, seqs[0], now, actor_types[0], actor_ids[0], actions[0],
                 target_types[0], target_ids[0], correlation_id, request_id, data[0],
                 prevs[0], links[0]),
            )  # fmt: skip
        else:
            await cursor.execute(
                _INSERT_LINKS, (tenant_id, now, correlation_id, request_id, *columns)
            )
        await cursor.execute(_MOVE_HEAD, (seq, prev, tenant_id))
    return hashes


async def record(
    session: AsyncSession, tenant_id: uuid.UUID, entry: AuditEntry, *, now: datetime
) -> str:
    return (await append_events(session, tenant_id, [entry], now=now))[0]


@dataclass(frozen=True, slots=True)
class ChainReport:
    tenant_id: uuid.UUID
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None


async def verify_chain(session: AsyncSession, tenant_id: uuid.UUID) -> ChainReport:
    """Recompute the tenant's chain from its checkpoint to its head.

    Detects a changed row (hash mismatch), a removed row (gap in `seq` or broken link), a
    reordered row (insertion order disagrees with `seq`) and a cut tail (head disagrees).
    """
    head = await session.scalar(select(AuditHead).where(AuditHead.tenant_id == tenant_id))
    if head is None:
        return ChainReport(tenant_id, ok=True, checked=0)
    expected_seq, prev = head.checkpoint_seq, head.checkpoint_hash
    last_id = 0
    checked = 0
    result = await session.stream_scalars(
        select(AuditEvent)
        .where(AuditEvent.tenant_id == tenant_id, AuditEvent.seq > head.checkpoint_seq)
        .order_by(AuditEvent.seq)
        .execution_options(yield_per=2000)
    )

    def bad(seq: int, reason: str) -> ChainReport:
        return ChainReport(tenant_id, ok=False, checked=checked, first_bad_seq=seq, reason=reason)

    async for row in result:
        expected_seq += 1
        if row.seq != expected_seq:
            return bad(expected_seq, f"link {expected_seq} is missing")
        if row.id <= last_id:
            return bad(row.seq, f"link {row.seq} is out of order")
        if row.prev_hash != prev:
            return bad(row.seq, f"link {row.seq} does not follow link {row.seq - 1}")
        computed = link_hash(
            prev, _canonical(tenant_id, row.seq, row.occurred_at, _row_content(row))
        )
        if computed != row.hash:
            return bad(row.seq, f"link {row.seq} was changed")
        prev, last_id = row.hash, row.id
        checked += 1
    if expected_seq != head.seq or prev != head.hash:
        return bad(expected_seq + 1, f"chain ends at {expected_seq}, head says {head.seq}")
    return ChainReport(tenant_id, ok=True, checked=checked)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    action: str | None = None
    actor_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    correlation_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _filtered(query: Any, filters: AuditFilter) -> Any:
    if filters.action:
        query = query.where(AuditEvent.action == filters.action)
    if filters.actor_id:
        query = query.where(AuditEvent.actor_id == filters.actor_id)
    if filters.target_type:
        query = query.where(AuditEvent.target_type == filters.target_type)
    if filters.target_id:
        query = query.where(AuditEvent.target_id == filters.target_id)
    if filters.correlation_id:
        query = query.where(AuditEvent.correlation_id == filters.correlation_id)
    if filters.since:
        query = query.where(AuditEvent.occurred_at >= filters.since)
    if filters.until:
        query = query.where(AuditEvent.occurred_at < filters.until)
    return query


async def list_events(
    session: AsyncSession, filters: AuditFilter, *, limit: int = 100, before_seq: int | None = None
) -> list[AuditEvent]:
    """Newest first; RLS keeps it to the session's tenant."""
    query = _filtered(select(AuditEvent), filters)
    if before_seq is not None:
        query = query.where(AuditEvent.seq < before_seq)
    rows = await session.scalars(query.order_by(AuditEvent.seq.desc()).limit(limit))
    return list(rows)


CSV_COLUMNS = (
    "seq",
    "occurred_at",
    "actor_type",
    "actor_id",
    "action",
    "target_type",
    "target_id",
    "correlation_id",
    "request_id",
    "data",
    "prev_hash",
    "hash",
)


def neutralize_cell(value: str) -> str:
    """Spreadsheet formula injection: a cell starting with = + - @ (or tab/CR) is quoted."""
    return "'" + value if value[:1] in {"=", "+", "-", "@", "\t", "\r"} else value


async def export_csv(session: AsyncSession, filters: AuditFilter) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    result = await session.stream_scalars(
        _filtered(select(AuditEvent), filters)
        .order_by(AuditEvent.seq)
        .execution_options(yield_per=1000)
    )
    async for row in result:
        values = [getattr(row, column) for column in CSV_COLUMNS]
        values[CSV_COLUMNS.index("occurred_at")] = row.occurred_at.isoformat()
        values[CSV_COLUMNS.index("data")] = json.dumps(row.data, sort_keys=True)
        writer.writerow([neutralize_cell("" if v is None else str(v)) for v in values])
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()

"""CRM outcomes into the database: matched to leads, idempotent per (source, external id),
and the CRM connection that brings them (HubSpot deals, synced by a job).

Every connector hands over `crm.outcomes.OutcomeRecord`s; this module is the one place that
matches them to leads (by our lead id, else by a contact e-mail), stores them — a re-import
updates, never duplicates — and closes the lead's assignment, freeing the rep's capacity.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.compliance.audit import AuditEntry, append_events
from leadrelay.core.db import raw_connection
from leadrelay.core.security import SecretBox
from leadrelay.crm.outcomes import OutcomeRecord
from leadrelay.routing import service as routing
from leadrelay.scoring.models import CrmConnection

SYNC_TASK = "crm.sync_hubspot"

_MATCH_EMAILS = (
    "SELECT DISTINCT ON (email) email, id FROM leads "
    "WHERE status = 'new' AND email = ANY(%b::text[]) ORDER BY email, created_at, id"
)
_KNOWN_LEADS = "SELECT id FROM leads WHERE id = ANY(%b::uuid[])"
_UPSERT = (
    "INSERT INTO lead_outcomes (tenant_id, source, external_id, label, amount, currency, "
    "closed_at, lead_id, created_at, updated_at) "
    "SELECT %s, source, external_id, label, amount, currency, closed_at, lead_id, %s, %s "
    "FROM unnest(%b::text[], %b::text[], %b::text[], %b::numeric[], %b::text[], "
    "%b::timestamptz[], %b::uuid[]) "
    "AS t(source, external_id, label, amount, currency, closed_at, lead_id) "
    "ON CONFLICT (tenant_id, source, external_id) DO UPDATE SET label = excluded.label, "
    "amount = excluded.amount, currency = excluded.currency, closed_at = excluded.closed_at, "
    "lead_id = coalesce(excluded.lead_id, lead_outcomes.lead_id), updated_at = excluded.updated_at "
    "RETURNING external_id, source, (xmax = 0) AS inserted"
)


@dataclass(frozen=True, slots=True)
class OutcomeResult:
    external_id: str
    status: str  # recorded | updated
    lead_id: uuid.UUID | None  # None: no lead matched (kept; shown as unmatched)


async def record_outcomes(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    records: Sequence[OutcomeRecord],
    *,
    now: datetime,
    actor_type: str = "system",
    actor_id: str | None = None,
) -> list[OutcomeResult]:
    """Store a chunk of outcomes (the last one wins when a chunk repeats an external id)."""
    unique = list({(r.source, r.external_id): r for r in records}.values())
    if not unique:
        return []
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        named = [r.lead_id for r in unique if r.lead_id is not None]
        known: set[uuid.UUID] = set()
        if named:
            await cursor.execute(_KNOWN_LEADS, (named,))
            known = {row[0] for row in await cursor.fetchall()}
        emails = sorted({e for r in unique if r.lead_id is None for e in r.emails})
        by_email: dict[str, uuid.UUID] = {}
        if emails:
            await cursor.execute(_MATCH_EMAILS, (emails,))
            by_email = {email: lead_id for email, lead_id in await cursor.fetchall()}
        leads: list[uuid.UUID | None] = []
        for record in unique:
            if record.lead_id is not None:
                leads.append(record.lead_id if record.lead_id in known else None)
            else:
                leads.append(next((by_email[e] for e in record.emails if e in by_email), None))
        await cursor.execute(
            _UPSERT,
            (
                tenant_id,
                now,
                now,
                [r.source for r in unique],
                [r.external_id for r in unique],
                [r.label.value for r in unique],
                [r.amount for r in unique],
                [r.currency for r in unique],
                [r.closed_at for r in unique],
                leads,
            ),
        )
        inserted = {(source, ext): flag for ext, source, flag in await cursor.fetchall()}
    # An outcome ends the lead's assignment: the rep's capacity counts open leads only.
    await routing.close_for_leads(session, [lead for lead in leads if lead is not None], now=now)
    results = [
        OutcomeResult(
            r.external_id,
            "recorded" if inserted.get((r.source, r.external_id)) else "updated",
            lead,
        )
        for r, lead in zip(unique, leads, strict=True)
    ]
    counts: dict[str, Any] = {
        "recorded": sum(1 for r in results if r.status == "recorded"),
        "updated": sum(1 for r in results if r.status == "updated"),
        "unmatched": sum(1 for r in results if r.lead_id is None),
        "sources": sorted({r.source for r in unique}),
    }
    await append_events(
        session,
        tenant_id,
        [
            AuditEntry(
                "outcomes.recorded",
                actor_type=actor_type,
                actor_id=actor_id,
                target_type="tenant",
                target_id=str(tenant_id),
                data=counts,
            )
        ],
        now=now,
    )
    return results


# --- the CRM connection --------------------------------------------------------------------


async def get_connection(session: AsyncSession, kind: str = "hubspot") -> CrmConnection | None:
    return await session.scalar(select(CrmConnection).where(CrmConnection.kind == kind))


async def save_connection(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    box: SecretBox,
    *,
    access_token: str,
    base_url: str,
    stage_labels: dict[str, str],
) -> CrmConnection:
    connection = await get_connection(session)
    if connection is None:
        connection = CrmConnection(tenant_id=tenant_id, kind="hubspot")
        session.add(connection)
    connection.base_url = base_url
    connection.token_encrypted = box.encrypt(access_token)
    connection.stage_labels = stage_labels
    await session.flush()
    return connection

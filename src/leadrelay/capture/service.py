"""Reading leads: lists with filters, and the detail with provenance and external ids."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.capture.models import (
    ExternalId,
    FieldObservation,
    Lead,
    LeadObservation,
    LeadStatus,
)
from leadrelay.core.errors import NotFound
from leadrelay.identity.service import Principal


class LeadNotFound(NotFound):
    """The lead does not exist."""


@dataclass(frozen=True, slots=True)
class LeadFilter:
    status: LeadStatus | None = None
    source_id: uuid.UUID | None = None
    flag: str | None = None
    q: str | None = None
    min_score: int | None = None  # by the active ICP version
    max_score: int | None = None
    owner: uuid.UUID | None = None  # the rep the lead is currently assigned to
    unassigned: bool = False  # never routed, or waiting in the work queue


async def list_leads(
    session: AsyncSession, filters: LeadFilter, *, limit: int = 50, after: uuid.UUID | None = None
) -> list[Lead]:
    """Newest first, keyset-paginated by (created_at, id)."""
    query = select(Lead)
    if filters.status is not None:
        query = query.where(Lead.status == filters.status)
    if filters.source_id is not None:
        query = query.where(Lead.source_id == filters.source_id)
    if filters.flag:
        query = query.where(Lead.flags.contains([filters.flag]))
    if filters.q:
        pattern = f"%{filters.q.strip().lower()}%"
        query = query.where(
            or_(
                Lead.email.ilike(pattern),
                Lead.full_name.ilike(pattern),
                Lead.company.ilike(pattern),
                Lead.phone_e164.ilike(pattern),
            )
        )
    if filters.min_score is not None or filters.max_score is not None:
        # Scores live with scoring; the lead list only asks which leads fall in the range.
        query = query.where(
            text(
                "EXISTS (SELECT 1 FROM lead_scores s JOIN icp_versions v ON v.id = s.version_id "
                "WHERE s.lead_id = leads.id AND v.status = 'active' "
                "AND s.score BETWEEN :min_score AND :max_score)"
            ).bindparams(
                min_score=filters.min_score if filters.min_score is not None else 0,
                max_score=filters.max_score if filters.max_score is not None else 100,
            )
        )
    if filters.owner is not None:
        query = query.where(
            text(
                "EXISTS (SELECT 1 FROM lead_assignments a WHERE a.lead_id = leads.id "
                "AND a.status = 'assigned' AND a.rep_id = :owner)"
            ).bindparams(owner=filters.owner)
        )
    if filters.unassigned:
        query = query.where(
            text(
                "NOT EXISTS (SELECT 1 FROM lead_assignments a WHERE a.lead_id = leads.id "
                "AND a.status = 'assigned')"
            )
        )
    if after is not None:
        anchor = await session.get(Lead, after)
        if anchor is not None:
            query = query.where(
                (Lead.created_at < anchor.created_at)
                | ((Lead.created_at == anchor.created_at) & (Lead.id < anchor.id))
            )
    query = query.order_by(Lead.created_at.desc(), Lead.id.desc()).limit(limit)
    return list(await session.scalars(query))


@dataclass(frozen=True, slots=True)
class LeadRecord:
    lead: Lead
    provenance: list[FieldObservation]
    external_ids: list[ExternalId]
    merged: list[uuid.UUID]


async def access_lead(session: AsyncSession, actor: Principal, lead_id: uuid.UUID) -> LeadRecord:
    lead = await session.get(Lead, lead_id)
    if lead is None or lead.tenant_id != actor.tenant_id:
        raise LeadNotFound()
    family = [lead.id, *await merged_into(session, lead.id)]
    provenance = [
        item
        for observation in await session.scalars(
            select(LeadObservation)
            .where(LeadObservation.lead_id.in_(family))
            .order_by(LeadObservation.observed_at, LeadObservation.id)
        )
        for item in observation.field_observations()
    ]
    external_ids = list(
        await session.scalars(
            select(ExternalId).where(ExternalId.lead_id.in_(family)).order_by(ExternalId.id)
        )
    )
    return LeadRecord(lead, provenance, external_ids, family[1:])


async def merged_into(session: AsyncSession, lead_id: uuid.UUID) -> list[uuid.UUID]:
    return list(await session.scalars(select(Lead.id).where(Lead.merged_into_id == lead_id)))


# Flags that forbid contact, whatever the channel (outreach and compliance add their own
# suppression checks on top: opt-outs by address, DNC registries).
NO_CONTACT_FLAGS = frozenset({"opted_out", "do_not_contact", "erased"})


async def contact_blockers(session: AsyncSession, lead_id: uuid.UUID) -> list[str]:
    """Why this lead may not be contacted now (empty: it may)."""
    lead = await session.get(Lead, lead_id)
    if lead is None:
        return ["lead_not_found"]
    reasons = []
    if lead.status != LeadStatus.NEW:
        reasons.append(f"lead_{lead.status}")
    reasons += sorted(NO_CONTACT_FLAGS.intersection(lead.flags or ()))
    return reasons

"""Fuzzy deduplication in PostgreSQL and Python: blocking finds candidates (same e-mail, phone or
domain, or a company name close by pg_trgm — a name alone is too common to block on), the
explainable pair scorer (`matching.score_pair`) decides, clusters of sure matches merge into
their oldest lead, likely matches wait in a review queue. Every merge records what it changed
so it can be previewed before and undone after."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.capture.dedup_models import LeadMerge, MatchReview, ReviewStatus
from leadrelay.capture.intake import STORED_FIELDS
from leadrelay.capture.matching import (
    B2B_LEAD_CONFIG,
    Decision,
    PairScore,
    cluster,
    conflicting_clusters,
    score_pair,
    survivor,
)
from leadrelay.capture.models import Lead, LeadStatus
from leadrelay.compliance.audit import AuditEntry, append_events
from leadrelay.core.db import any_uuid, raw_connection
from leadrelay.core.errors import Conflict, NotFound
from leadrelay.core.events import emit_many

# A merge fills the survivor's empty stored fields from the merged lead.
MERGE_FIELDS = STORED_FIELDS
MATCH_FIELDS = ("email", "phone_e164", "full_name", "company", "domain", "city")
CANDIDATES_PER_KEY = 12
# Company names must be close (trigram similarity >= 0.6), not merely related, to be scored.
MAX_COMPANY_DISTANCE = 0.4

# One index-backed probe per blocking key (e-mail, phone, domain: b-tree; company: the nearest
# names by pg_trgm distance on a GiST index, kept when similarity >= 1 - MAX_COMPANY_DISTANCE),
# each capped, so a lead costs a few index look-ups whatever the size of the tenant. Companies
# are compared only when one side has no domain: with both domains known, the domain decides.
_CANDIDATES = text(
    """
    SELECT n.id AS lead_id, c.id AS candidate_id
    FROM leads n
    CROSS JOIN LATERAL (
        (SELECT l.id FROM leads l WHERE n.email IS NOT NULL AND l.email = n.email
            AND l.status = 'new' AND l.id <> n.id LIMIT :per_key)
        UNION
        (SELECT l.id FROM leads l WHERE n.phone_e164 IS NOT NULL AND l.phone_e164 = n.phone_e164
            AND l.status = 'new' AND l.id <> n.id LIMIT :per_key)
        UNION
        (SELECT l.id FROM leads l WHERE n.domain IS NOT NULL AND l.domain = n.domain
            AND l.status = 'new' AND l.id <> n.id LIMIT :per_key)
        UNION
        (SELECT k.id FROM (SELECT l.id, l.company_key <-> n.company_key AS distance
            FROM leads l WHERE n.company_key IS NOT NULL AND n.domain IS NULL
            AND l.status = 'new' AND l.id <> n.id
            ORDER BY distance LIMIT :per_key) k WHERE k.distance <= :max_distance)
        UNION
        (SELECT k.id FROM (SELECT l.id, l.company_key <-> n.company_key AS distance
            FROM leads l WHERE n.company_key IS NOT NULL AND n.domain IS NOT NULL
            AND l.domain IS NULL AND l.status = 'new' AND l.id <> n.id
            ORDER BY distance LIMIT :per_key) k WHERE k.distance <= :max_distance)
    ) c
    WHERE n.id = ANY(:ids) AND n.status = 'new'
    """
)


class MergeRefused(Conflict):
    """These leads cannot be merged."""

    code = "merge-refused"


class MergeNotFound(NotFound):
    """The merge does not exist."""


class ReviewNotFound(NotFound):
    """The review does not exist."""


def as_record(lead: Lead) -> dict[str, str | None]:
    record: dict[str, str | None] = {name: getattr(lead, name) for name in MATCH_FIELDS}
    record["created_at"] = lead.created_at.isoformat()
    return record


def score_leads(a: Lead, b: Lead) -> PairScore:
    return score_pair(as_record(a), as_record(b), B2B_LEAD_CONFIG)


def _contributions(score: PairScore) -> list[dict[str, Any]]:
    return [
        {"field": c.field, "level": str(c.level), "weight": round(c.weight, 3)}
        for c in score.contributions
    ]


@dataclass(slots=True)
class DedupReport:
    compared: int = 0
    merged: list[uuid.UUID] = field(default_factory=list)
    reviews: int = 0


async def dedup_leads(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    lead_ids: Sequence[uuid.UUID],
    *,
    now: datetime,
    actor_type: str = "system",
    actor_id: str | None = None,
) -> DedupReport:
    """Match these leads against the tenant's live leads. Sure matches merge (each cluster into
    its oldest lead, so the outcome does not depend on arrival order); likely ones are queued
    for review."""
    report = DedupReport()
    pairs = (
        await session.execute(
            _CANDIDATES,
            {
                "ids": list(lead_ids),
                "per_key": CANDIDATES_PER_KEY,
                "max_distance": MAX_COMPANY_DISTANCE,
            },
        )
    ).all()
    if not pairs:
        return report
    # Scored from plain rows, unlocked: only the leads about to merge are locked, below.
    records = await _match_records(session, {i for pair in pairs for i in pair})
    decisions: list[tuple[uuid.UUID, uuid.UUID, Decision]] = []
    scores: dict[tuple[uuid.UUID, uuid.UUID], PairScore] = {}
    for a, b in {tuple(sorted(pair)) for pair in pairs}:
        if a not in records or b not in records:
            continue  # merged meanwhile
        score = score_pair(records[a], records[b], B2B_LEAD_CONFIG)
        report.compared += 1
        decisions.append((a, b, score.decision))
        scores[(a, b)] = score
    merged_now: set[uuid.UUID] = set()
    clusters = cluster(decisions)
    # A cluster holding two leads the scorer kept apart was chained together through a lead
    # that contradicts no one (a bare switchboard number): a person decides, pair by pair.
    held = conflicting_clusters(clusters, decisions)
    for group in held:
        for (a, b), score in scores.items():
            if a in group and b in group and score.decision == Decision.MERGE:
                report.reviews += await _queue_review(session, tenant_id, a, b, score)
    to_merge = [group for group in clusters if group not in held]
    leads = {
        lead.id: lead
        for lead in await session.scalars(
            # In id order, as every path that locks leads does: two jobs never deadlock.
            select(Lead)
            .where(Lead.id == any_uuid({i for group in to_merge for i in group}))
            .order_by(Lead.id)
            .with_for_update()
        )
    }
    for group in to_merge:
        if any(i not in leads or leads[i].status != LeadStatus.NEW for i in group):
            continue  # another job merged one of them since it was scored
        keep = survivor({i: records[i] for i in group})
        for other in sorted(group - {keep}):
            pair = tuple(sorted((keep, other)))
            pair_score = scores.get((pair[0], pair[1]))
            await merge_leads(
                session,
                leads[keep],
                leads[other],
                reason="auto",
                score=pair_score,
                now=now,
                actor_type=actor_type,
                actor_id=actor_id,
            )
            merged_now.add(other)
            report.merged.append(other)
    for (a, b), score in scores.items():
        if score.decision == Decision.REVIEW and not ({a, b} & merged_now):
            report.reviews += await _queue_review(session, tenant_id, a, b, score)
    return report


_MATCH_RECORDS = (
    "SELECT id, email, phone_e164, full_name, company, domain, city, created_at FROM leads "
    "WHERE id = ANY(%b::uuid[]) AND status = 'new'"
)


async def _match_records(
    session: AsyncSession, ids: set[uuid.UUID]
) -> dict[uuid.UUID, dict[str, str | None]]:
    """`as_record` of each live lead among `ids`, read as plain rows (a chunk's candidates are
    thousands of leads: ORM objects for them cost more than scoring them)."""
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(_MATCH_RECORDS, (list(ids),))
        rows = await cursor.fetchall()
    return {
        lead_id: {
            **dict(zip(MATCH_FIELDS, values, strict=True)),
            "created_at": created_at.isoformat(),
        }
        for lead_id, *values, created_at in rows
    }


async def _queue_review(
    session: AsyncSession, tenant_id: uuid.UUID, a: uuid.UUID, b: uuid.UUID, score: PairScore
) -> int:
    """Queue the pair once (a pair seen again stays a single review); 1 if it was new."""
    inserted = await session.scalar(
        pg_insert(MatchReview)
        .values(
            tenant_id=tenant_id,
            lead_a_id=a,
            lead_b_id=b,
            score=score.score,
            contributions=_contributions(score),
        )
        .on_conflict_do_nothing()
        .returning(MatchReview.id)
    )
    return int(inserted is not None)


def preview(survivor_lead: Lead, merged_lead: Lead) -> dict[str, Any]:
    """The surviving record as a merge would leave it, field by field, with where each value
    comes from. Writes nothing."""
    fields: dict[str, Any] = {}
    for name in MERGE_FIELDS:
        kept, offered = getattr(survivor_lead, name), getattr(merged_lead, name)
        if kept not in (None, ""):
            fields[name] = {"value": kept, "from": "survivor", "other": offered}
        elif offered not in (None, ""):
            fields[name] = {"value": offered, "from": "merged", "other": None}
        else:
            fields[name] = {"value": None, "from": None, "other": None}
    return {
        "survivor_id": str(survivor_lead.id),
        "merged_id": str(merged_lead.id),
        "fields": fields,
        "flags": sorted(set(survivor_lead.flags) | set(merged_lead.flags)),
    }


async def merge_leads(
    session: AsyncSession,
    survivor_lead: Lead,
    merged_lead: Lead,
    *,
    reason: str,
    score: PairScore | None,
    now: datetime,
    actor_type: str,
    actor_id: str | None,
) -> LeadMerge:
    """Fold `merged_lead` into `survivor_lead`: empty fields are filled (never overwritten),
    flags united, leads merged earlier into it follow; its provenance and external ids stay
    attached to it and show on the survivor. Caller holds both rows FOR UPDATE."""
    if survivor_lead.id == merged_lead.id:
        raise MergeRefused("a lead cannot be merged into itself")
    if LeadStatus.MERGED in (survivor_lead.status, merged_lead.status):
        raise MergeRefused("one of these leads was already merged")
    filled: dict[str, Any] = {}
    for name in MERGE_FIELDS:
        if getattr(survivor_lead, name) in (None, "") and getattr(merged_lead, name) not in (
            None,
            "",
        ):
            filled[name] = getattr(merged_lead, name)
            setattr(survivor_lead, name, filled[name])
    added_flags = sorted(set(merged_lead.flags) - set(survivor_lead.flags))
    survivor_lead.flags = sorted(set(survivor_lead.flags) | set(added_flags))
    children = list(
        await session.scalars(
            select(Lead).where(Lead.merged_into_id == merged_lead.id).with_for_update()
        )
    )
    for child in children:
        child.merged_into_id = survivor_lead.id
    merged_lead.status, merged_lead.merged_into_id = LeadStatus.MERGED, survivor_lead.id
    survivor_lead.updated_at = merged_lead.updated_at = now
    merge = LeadMerge(
        tenant_id=survivor_lead.tenant_id,
        survivor_id=survivor_lead.id,
        merged_id=merged_lead.id,
        score=score.score if score else None,
        reason=reason,
        changes={
            "filled": filled,
            "added_flags": added_flags,
            "children": [str(c.id) for c in children],
            "contributions": _contributions(score) if score else [],
        },
        actor_type=actor_type,
        actor_id=actor_id,
        merged_at=now,
    )
    session.add(merge)
    await session.flush()
    await append_events(
        session,
        survivor_lead.tenant_id,
        [
            AuditEntry(
                "lead.merged",
                actor_type=actor_type,
                actor_id=actor_id,
                target_type="lead",
                target_id=str(survivor_lead.id),
                data={
                    "merged_id": str(merged_lead.id),
                    "merge_id": str(merge.id),
                    "reason": reason,
                },
            )
        ],
        now=now,
    )
    await emit_many(
        session,
        survivor_lead.tenant_id,
        [("lead.merged", {"lead_id": str(survivor_lead.id), "merged_id": str(merged_lead.id)})],
    )
    return merge


async def lock_pair(
    session: AsyncSession, first: uuid.UUID, second: uuid.UUID
) -> tuple[Lead, Lead]:
    rows = {
        lead.id: lead
        for lead in await session.scalars(
            select(Lead).where(Lead.id.in_([first, second])).order_by(Lead.id).with_for_update()
        )
    }
    if first not in rows or second not in rows:
        raise NotFound("lead not found")
    return rows[first], rows[second]


async def undo_merge(
    session: AsyncSession,
    merge_id: uuid.UUID,
    *,
    now: datetime,
    actor_type: str,
    actor_id: str | None,
) -> LeadMerge:
    """Restore the merged lead and take back what the merge gave the survivor. A field changed
    since the merge keeps its newer value."""
    merge = await session.scalar(
        select(LeadMerge).where(LeadMerge.id == merge_id).with_for_update()
    )
    if merge is None:
        raise MergeNotFound()
    if merge.undone_at is not None:
        raise MergeRefused("this merge was already undone")
    survivor_lead, merged_lead = await lock_pair(session, merge.survivor_id, merge.merged_id)
    if merged_lead.merged_into_id != survivor_lead.id:
        raise MergeRefused("the merged lead has moved since; undo the later merge first")
    changes: dict[str, Any] = dict(merge.changes)
    for name, value in dict(changes.get("filled", {})).items():
        if getattr(survivor_lead, name) == value:
            setattr(survivor_lead, name, "" if name == "full_name" else None)
    added = set(changes.get("added_flags", []))
    survivor_lead.flags = [f for f in survivor_lead.flags if f not in added]
    children = [uuid.UUID(str(c)) for c in changes.get("children", [])]
    if children:
        for child in await session.scalars(
            select(Lead).where(Lead.id.in_(children), Lead.merged_into_id == survivor_lead.id)
        ):
            child.merged_into_id = merged_lead.id
    merged_lead.status, merged_lead.merged_into_id = LeadStatus.NEW, None
    survivor_lead.updated_at = merged_lead.updated_at = now
    merge.undone_at = now
    await append_events(
        session,
        merge.tenant_id,
        [
            AuditEntry(
                "lead.unmerged",
                actor_type=actor_type,
                actor_id=actor_id,
                target_type="lead",
                target_id=str(survivor_lead.id),
                data={"merged_id": str(merged_lead.id), "merge_id": str(merge.id)},
            )
        ],
        now=now,
    )
    return merge


async def list_reviews(
    session: AsyncSession, *, status: ReviewStatus, limit: int = 100
) -> list[MatchReview]:
    return list(
        await session.scalars(
            select(MatchReview)
            .where(MatchReview.status == status)
            .order_by(MatchReview.score.desc(), MatchReview.created_at)
            .limit(limit)
        )
    )


async def decide_review(
    session: AsyncSession,
    review_id: uuid.UUID,
    *,
    merge: bool,
    now: datetime,
    actor_type: str,
    actor_id: str | None,
) -> tuple[MatchReview, LeadMerge | None]:
    review = await session.scalar(
        select(MatchReview).where(MatchReview.id == review_id).with_for_update()
    )
    if review is None:
        raise ReviewNotFound()
    if review.status != ReviewStatus.OPEN:
        raise Conflict("this pair was already decided")
    done: LeadMerge | None = None
    if merge:
        a, b = await lock_pair(session, review.lead_a_id, review.lead_b_id)
        keep, other = (a, b) if (a.created_at, a.id) <= (b.created_at, b.id) else (b, a)
        done = await merge_leads(
            session,
            keep,
            other,
            reason="review",
            score=None,
            now=now,
            actor_type=actor_type,
            actor_id=actor_id,
        )
    review.status = ReviewStatus.MERGED if merge else ReviewStatus.KEPT_APART
    review.decided_at, review.decided_by = now, actor_id
    return review, done

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from leadrelay.capture import dedup, service
from leadrelay.capture.dedup_models import ReviewStatus
from leadrelay.core.clock import utcnow
from leadrelay.core.schemas import Input
from leadrelay.identity.deps import CanReadLeads, CanWriteLeads, SessionDep

router = APIRouter(prefix="/v1", tags=["deduplication"])


class MergeIn(Input):
    other: uuid.UUID


class MergeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    survivor_id: uuid.UUID
    merged_id: uuid.UUID
    score: float | None
    reason: str
    changes: dict[str, Any]
    merged_at: datetime
    undone_at: datetime | None


class ReviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    lead_a_id: uuid.UUID
    lead_b_id: uuid.UUID
    score: float
    contributions: list[dict[str, Any]]
    status: ReviewStatus
    created_at: datetime
    decided_at: datetime | None


class ReviewDecision(Input):
    decision: Literal["merge", "keep_apart"]


class ReviewResult(BaseModel):
    review: ReviewOut
    merge: MergeOut | None


@router.get("/leads/{lead_id}/merge-preview")
async def merge_preview(
    lead_id: uuid.UUID, other: uuid.UUID, session: SessionDep, actor: CanReadLeads
) -> dict[str, Any]:
    """What the lead would look like after `other` is merged into it; writes nothing."""
    keep = await service.access_lead(session, actor, lead_id)
    gone = await service.access_lead(session, actor, other)
    return dedup.preview(keep.lead, gone.lead)


@router.post("/leads/{lead_id}/merge")
async def merge(
    lead_id: uuid.UUID, body: MergeIn, session: SessionDep, actor: CanWriteLeads
) -> MergeOut:
    """Merge `other` into this lead (this one survives)."""
    await service.access_lead(session, actor, lead_id)
    await service.access_lead(session, actor, body.other)
    keep, gone = await dedup.lock_pair(session, lead_id, body.other)
    done = await dedup.merge_leads(
        session,
        keep,
        gone,
        reason="manual",
        score=dedup.score_leads(keep, gone),
        now=utcnow(),
        actor_type=actor.kind,
        actor_id=str(actor.id) if actor.id else None,
    )
    return MergeOut.model_validate(done)


@router.post("/merges/{merge_id}/undo")
async def undo(merge_id: uuid.UUID, session: SessionDep, actor: CanWriteLeads) -> MergeOut:
    done = await dedup.undo_merge(
        session,
        merge_id,
        now=utcnow(),
        actor_type=actor.kind,
        actor_id=str(actor.id) if actor.id else None,
    )
    return MergeOut.model_validate(done)


@router.get("/dedup/reviews")
async def list_reviews(
    session: SessionDep, _: CanReadLeads, status: ReviewStatus = ReviewStatus.OPEN
) -> list[ReviewOut]:
    return [ReviewOut.model_validate(r) for r in await dedup.list_reviews(session, status=status)]


@router.post("/dedup/reviews/{review_id}")
async def decide(
    review_id: uuid.UUID, body: ReviewDecision, session: SessionDep, actor: CanWriteLeads
) -> ReviewResult:
    review, done = await dedup.decide_review(
        session,
        review_id,
        merge=body.decision == "merge",
        now=utcnow(),
        actor_type=actor.kind,
        actor_id=str(actor.id) if actor.id else None,
    )
    return ReviewResult(
        review=ReviewOut.model_validate(review),
        merge=MergeOut.model_validate(done) if done else None,
    )
